"""The generated clusters' statistics beside CBIS-DDSM's.

  python scripts/measure_cluster_statistics.py [--num-images 4000]
      [--seed 0] [--builder-config default] [--out results.json]
      [--markdown table.md]

Plans (does not render) the first `--num-images` images of the synthetic
stream with the generator config of a `synthetic_calcifications` builder
config (`default`: the CBIS-DDSM statistics; `independent`: the generator
before issue 15; `balanced`) and compares their clusters with the stored
CBIS-DDSM statistics (`mammojax/data/synthetic/cbis_ddsm_calc_statistics
.json`, estimated by `scripts/estimate_calc_statistics.py`), counting as in
the CSVs (one row per cluster and view, each morphology of a mixed cluster):

* the 5 x 5 P(distribution | morphology) of both with the total variation
  distance per morphology row (goal <= 0.05 for every row with >= 50 real
  cases);
* Cramer's V of both joint tables; the fraction of mixed clusters and the
  mixing-pair frequencies; the subtlety histogram; clusters per image.

Prints a markdown table and writes the numbers as JSON (`--out`).
"""

import argparse
import dataclasses
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
# pylint: disable=g-import-not-at-top
from mammojax.data import synthetic
from mammojax.data.builders import calcification_graphs
from mammojax.data.synthetic import planning
from mammojax.data.synthetic import statistics


def generator_config(builder_config: str) -> synthetic.SyntheticConfig:
  """The generator config of a `synthetic_calcifications` builder config."""
  configs = calcification_graphs.SyntheticCalcifications.builder_configs
  if builder_config not in configs:
    raise ValueError(f"--builder-config={builder_config!r}; expected one of "
                     f"{sorted(configs)}")
  return synthetic.SyntheticConfig(
      **dict(configs[builder_config].generator_overrides))


def measure(config: synthetic.SyntheticConfig, num_images: int,
            seed: int = 0, progress: bool = False) -> dict:
  """Plans `num_images` images and compares them with CBIS-DDSM."""
  clusters, per_image = [], []
  for image in planning.planned_clusters(config, num_images, seed, progress):
    clusters.extend(image)
    per_image.append(len(image))
  generated = statistics.cluster_statistics(clusters, per_image)
  real = statistics.load_statistics("cbis_ddsm")
  out = statistics.compare(real, generated)
  out["generated"] = generated
  return out


def markdown(result: dict, title: str) -> str:
  """The comparison as markdown tables."""
  ms, ds = result["morphologies"], result["distributions"]
  lines = [f"**{title}**", "",
           "| P(distribution \\| morphology) | " + " | ".join(ds)
           + " | cases | TV |",
           "|---|" + "---:|" * (len(ds) + 2)]
  for i, m in enumerate(ms):
    real = " | ".join(f"{v:.3f}" for v in result["real_conditional"][i])
    gen = " | ".join(f"{v:.3f}" for v in result["generated_conditional"][i])
    check = "" if result["tv_rows_checked"][i] else " (< 50 real)"
    lines.append(f"| {m}, CBIS-DDSM | {real} | "
                 f"{result['real_row_cases'][i]} | |")
    lines.append(f"| {m}, generated | {gen} | "
                 f"{result['generated_row_cases'][i]} | "
                 f"**{result['tv_distance'][i]:.3f}**{check} |")
  v, mix = result["cramers_v"], result["mixed_fraction"]
  sub, cpi = result["subtlety"], result["clusters_per_image"]
  pairs = result["mixing_pairs"]
  names = list(pairs["real"]) + [p for p in pairs["generated"]
                                 if p not in pairs["real"]]
  lines += [
      "", "| statistic | CBIS-DDSM | generated |", "|---|---|---|",
      f"| Cramer's V (morphology x distribution) | {v['real']:.3f} | "
      f"{v['generated']:.3f} |",
      f"| max TV over rows with >= 50 real cases | | "
      f"{result['max_tv_checked']:.3f} |",
      f"| mixed clusters (>= 2 types) | {mix['real']:.3f} | "
      f"{mix['generated']:.3f} |",
      f"| subtlety 1-5 | {' / '.join(f'{x:.3f}' for x in sub['real'])} | "
      f"{' / '.join(f'{x:.3f}' for x in sub['generated'])} |",
      f"| clusters per image (mean) | {cpi['real']['mean']:.3f} | "
      f"{cpi['generated']['mean']:.3f} |",
      f"| images with >= 2 clusters | {cpi['real']['two_or_more']:.3f} | "
      f"{cpi['generated']['two_or_more']:.3f} |",
  ]
  for name in names:
    lines.append(f"| pair {name} (of mixed) | {pairs['real'].get(name, 0):.3f}"
                 f" | {pairs['generated'].get(name, 0):.3f} |")
  return "\n".join(lines) + "\n"


def main() -> None:
  """Measures, prints the markdown table, writes the JSON."""
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--num-images", type=int, default=4000)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--builder-config", default="default")
  parser.add_argument("--out", default=None, help="JSON output file")
  parser.add_argument("--markdown", default=None, help="markdown output")
  args = parser.parse_args()
  config = generator_config(args.builder_config)
  start = time.perf_counter()
  result = measure(config, args.num_images, args.seed, progress=True)
  result.update(builder_config=args.builder_config,
                num_images=args.num_images, seed=args.seed,
                seconds=round(time.perf_counter() - start, 1),
                generator=dataclasses.asdict(config))
  table = markdown(result, f"synthetic_calcifications/{args.builder_config}"
                   f", {args.num_images} planned images, seed {args.seed}")
  print(table)
  if args.out:
    pathlib.Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
  if args.markdown:
    pathlib.Path(args.markdown).write_text(table)


if __name__ == "__main__":
  main()
