"""CLI: write a synthetic mammogram dataset (DICOM files + annotations.json).

  python -m mammojax.data.synthesize --out DIR --num-images 390 --seed 0 \\
      [--num-patients 200] [--workers 2] [--breast-scale 1.0]

Prints a JSON summary (counts per label, seconds) on stdout.
"""

import argparse
import dataclasses
import sys
from typing import Optional, Sequence

from mammojax.data import synthetic


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
  """Parses the command line."""
  parser = argparse.ArgumentParser(
      prog="python -m mammojax.data.synthesize", description=__doc__,
      formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", required=True, help="output folder")
  parser.add_argument("--num-images", type=int, default=390)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--num-patients", type=int, default=None,
                      help="checked against the layout; default: implied by "
                      "--images-per-patient")
  parser.add_argument("--images-per-patient", type=float, default=None,
                      help="mean views per patient in [1, 2] (default 1.95, "
                      "or num-images / num-patients when that is given)")
  parser.add_argument("--workers", type=int, default=2)
  parser.add_argument("--breast-scale", type=float, default=None,
                      help="scale of field of view and breast (default 1.0)")
  parser.add_argument("--mass-probability", type=float, default=None)
  parser.add_argument("--no-progress", action="store_true")
  return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the CLI; returns the exit status."""
  args = parse_args(argv)
  overrides = {}
  if args.images_per_patient is not None:
    overrides["images_per_patient"] = args.images_per_patient
  elif args.num_patients:
    overrides["images_per_patient"] = args.num_images / args.num_patients
  if args.breast_scale is not None:
    overrides["breast_scale"] = args.breast_scale
  if args.mass_probability is not None:
    overrides["mass_probability"] = args.mass_probability
  config = dataclasses.replace(synthetic.SyntheticConfig(), **overrides)
  try:
    summary = synthetic.write_dataset(
        args.out, config, args.num_images, args.seed, args.num_patients,
        workers=args.workers, progress=not args.no_progress)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  print(synthetic.dumps_summary(summary))
  return 0


if __name__ == "__main__":
  sys.exit(main())
