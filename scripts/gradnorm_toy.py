"""GradNorm toy example (SPEC §2.3): prints a JSON summary.

Runs the T-task regression toy with GradNorm and (unless --no_baseline) with
equal weights, and prints the weight trajectory (every --every steps), the
final weights, gradient norms G, max/min G ratios, test loss ratios and
wall time.

  python scripts/gradnorm_toy.py --steps=4000
  python scripts/gradnorm_toy.py --sigmas=48,3,54,16,9,30,52,26,47,81
"""

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

# pylint: disable-next=g-import-not-at-top
from mammojax.objectives import gradnorm_toy


def _summary(result: dict, every: int) -> dict:
  """JSON-ready summary of one `gradnorm_toy.run` result."""
  result = {
      k: np.asarray(v, np.float64) if isinstance(v, np.ndarray) else v
      for k, v in result.items()
  }
  steps = list(range(every - 1, len(result["weights"]), every))
  return dict(
      trajectory=dict(
          step=[s + 1 for s in steps],
          weights=result["weights"][steps].round(4).tolist(),
          G_ratio=result["G_ratio"][steps].round(3).tolist(),
      ),
      final_weights=result["weights"][-1].round(4).tolist(),
      final_G=result["G"][-1].round(3).tolist(),
      final_G_ratio=round(float(result["G_ratio"][-1]), 3),
      max_abs_weight_sum_error=float(
          abs(result["weights"].sum(1) - result["weights"].shape[1]).max()
      ),
      test_loss_ratio=result["test_loss_ratio"].round(4).tolist(),
      task_normalized_test_loss=round(result["task_normalized_test_loss"], 4),
      wall_time_s=round(result["wall_time_s"], 2),
      run_time_s=round(result["run_time_s"], 2),
  )


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
  out["gradnorm"] = _summary(gradnorm_toy.run(config), args.every)
  if not args.no_baseline:
    baseline = gradnorm_toy.ToyConfig(
        **{**vars(config), "use_gradnorm": False}
    )
    out["equal_weights"] = _summary(gradnorm_toy.run(baseline), args.every)
  print(json.dumps(out, indent=1))


if __name__ == "__main__":
  main()
