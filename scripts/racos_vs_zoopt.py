"""RACOS (mammojax) vs zoopt's SRACOS on shifted benchmark functions.

For each function of ``mammojax.objectives.benchmark_functions`` (10-D, box
[-1, 1], budget 2000 by default) runs ``racos.minimize`` and zoopt's
``Opt.min`` (sequential RACOS, default parameters) over the same seeds and
writes ``racos_vs_zoopt.json`` and ``racos_vs_zoopt.md`` (function,
dimension, budget, median best value of each, wall time of each) to
``--out``. Needs the ``test`` extra (zoopt).

  python scripts/racos_vs_zoopt.py --out runs/racos --seeds 5
"""

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from mammojax.objectives import benchmark_functions  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax.objectives import racos  # pylint: disable=g-import-not-at-top,wrong-import-position


def run_zoopt(fn, dim: int, budget: int, seed: int) -> float:
  """zoopt's SRACOS best value (float precision 1e-6, as its docs)."""
  from zoopt import Dimension2, ValueType, Objective, Parameter, Opt  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  space = Dimension2([(ValueType.CONTINUOUS, [-1.0, 1.0], 1e-6)] * dim)
  objective = Objective(lambda sol: fn(np.asarray(sol.get_x())), space)
  return float(Opt.min(objective, Parameter(budget=budget, seed=seed))
               .get_value())


def compare(name: str, *, dim: int, budget: int, seeds) -> dict:
  """One row: both optimisers over ``seeds`` on function ``name``."""
  fn = benchmark_functions.FUNCTIONS[name]
  lower, upper = -np.ones(dim), np.ones(dim)
  start = time.perf_counter()
  ours = [racos.minimize(fn, lower, upper, budget=budget, seed=s)[1]
          for s in seeds]
  ours_time = time.perf_counter() - start
  start = time.perf_counter()
  theirs = [run_zoopt(fn, dim, budget, s) for s in seeds]
  theirs_time = time.perf_counter() - start
  return {
      "function": name, "dimension": dim, "budget": budget,
      "seeds": list(seeds),
      "mammojax_values": ours, "zoopt_values": theirs,
      "mammojax_median": float(np.median(ours)),
      "zoopt_median": float(np.median(theirs)),
      "ratio": float(np.median(ours) / np.median(theirs)),
      "mammojax_seconds": ours_time, "zoopt_seconds": theirs_time,
  }


def markdown(rows) -> str:
  lines = [
      "| function | dim | budget | mammojax median | zoopt median | ratio "
      "| mammojax time (s) | zoopt time (s) |",
      "|---|---|---|---|---|---|---|---|",
  ]
  for r in rows:
    lines.append(
        f"| {r['function']} | {r['dimension']} | {r['budget']} | "
        f"{r['mammojax_median']:.3g} | {r['zoopt_median']:.3g} | "
        f"{r['ratio']:.2f} | {r['mammojax_seconds']:.1f} | "
        f"{r['zoopt_seconds']:.1f} |"
    )
  return "\n".join(lines) + "\n"


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", default="runs/racos_vs_zoopt")
  parser.add_argument("--seeds", type=int, default=5)
  parser.add_argument("--dim", type=int, default=10)
  parser.add_argument("--budget", type=int, default=2000)
  parser.add_argument(
      "--functions", default=",".join(benchmark_functions.FUNCTIONS)
  )
  args = parser.parse_args(argv)
  os.makedirs(args.out, exist_ok=True)
  rows = []
  for name in args.functions.split(","):
    rows.append(compare(name, dim=args.dim, budget=args.budget,
                        seeds=range(args.seeds)))
    print(markdown(rows[-1:]).splitlines()[-1], flush=True)
  with open(os.path.join(args.out, "racos_vs_zoopt.json"), "w") as f:
    json.dump(rows, f, indent=2)
  with open(os.path.join(args.out, "racos_vs_zoopt.md"), "w") as f:
    f.write(markdown(rows))
  print(markdown(rows))
  return rows


if __name__ == "__main__":
  main()
