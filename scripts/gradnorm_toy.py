"""GradNorm's toy example (``mammojax.experiments.gradnorm_toy``): JSON summary.

Runs the T-task regression toy of the GradNorm paper (Chen et al., ICML
2018, section 4) with GradNorm and (unless --no_baseline) with equal
weights, and prints the weight trajectory (every --every steps), the final
weights, gradient norms G, max/min G ratios, test loss ratios and wall time.

  python scripts/gradnorm_toy.py --steps=4000
  python scripts/gradnorm_toy.py --sigmas=48,3,54,16,9,30,52,26,47,81
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

# pylint: disable-next=g-import-not-at-top
from mammojax.experiments import gradnorm_toy


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--sigmas", default="1,100")
  parser.add_argument("--alpha", type=float, default=0.12)
  parser.add_argument("--steps", type=int, default=2000)
  parser.add_argument("--num_train", type=int, default=10_000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--every", type=int, default=250)
  parser.add_argument("--reset_weight_opt_state", action="store_true")
  parser.add_argument("--no_baseline", action="store_true")
  args = parser.parse_args()
  config = gradnorm_toy.ToyConfig(
      sigmas=tuple(float(s) for s in args.sigmas.split(",")),
      alpha=args.alpha,
      num_steps=args.steps,
      num_train=args.num_train,
      seed=args.seed,
      reset_weight_opt_state=args.reset_weight_opt_state,
  )
  out = dict(config=vars(args))
  out.update(gradnorm_toy.compare(config, every=args.every,
                                  baseline=not args.no_baseline))
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
