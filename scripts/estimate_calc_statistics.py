"""Estimates the synthetic generator's cluster statistics from CBIS-DDSM.

  python scripts/estimate_calc_statistics.py \
      --csv calc_case_description_train_set.csv \
      --csv calc_case_description_test_set.csv \
      [--out mammojax/data/synthetic/cbis_ddsm_calc_statistics.json]

Reads the CBIS-DDSM calc case-description CSVs with the project's parser
(`mammojax.data.sources.cbis_ddsm`) and writes the statistics the planner
draws from (`mammojax.data.synthetic.statistics.estimate`: the 5 x 5 joint
morphology x distribution counts, the (types, distribution) cases, the
mixing pairs, the subtlety histogram, calc abnormalities per image) as JSON
with the files' sha256 in `provenance`. Prints a short summary.
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
from mammojax.data.synthetic import statistics  # pylint: disable=g-import-not-at-top


def main() -> None:
  """Estimates, writes the JSON file and prints a summary."""
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("--csv", action="append", required=True,
                      help="a calc_case_description_*.csv (repeat)")
  parser.add_argument("--source", default="",
                      help="where the CSVs came from (stored in provenance)")
  parser.add_argument("--out", default=str(statistics.STATISTICS_FILE))
  args = parser.parse_args()
  stats = statistics.estimate_from_csvs([pathlib.Path(p) for p in args.csv])
  if args.source:
    stats["provenance"]["source"] = args.source
  pathlib.Path(args.out).write_text(json.dumps(stats, indent=1) + "\n",
                                    encoding="utf-8")
  joint = stats["joint_counts"]
  print(json.dumps({
      "out": args.out,
      "calc_rows": stats["calc_rows"],
      "rows_in_joint": stats["rows_in_joint"],
      "rows_with_two_or_more_types": stats["rows_with_two_or_more_types"],
      "cramers_v": round(statistics.cramers_v(joint), 4),
      "subtlety_counts": stats["subtlety_counts"],
      "images": stats["images"],
      "clusters_per_image_counts": stats["clusters_per_image_counts"],
  }, indent=1))


if __name__ == "__main__":
  main()
