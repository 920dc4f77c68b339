"""Breast-crop accuracy under acquisition artefacts (JSON + Markdown table).

  python scripts/measure_crop.py --num-images 20 --out crop.json

Renders synthetic mammograms (seed 7, 0.2 mm pixels), adds each artefact of
``mammojax.data.synthetic.artefacts`` (edge bands, a collimator frame, a
burned-in label) to the laterality-normalised display image and compares
``breast_region.breast_bbox(image, margin=0)`` with the true box of the
breast outside the artefact (the generator's breast mask): the IoU per
artefact (min / mean over the images), the same for the previous crop (Otsu
threshold + opening + largest component), and prints a Markdown table.
"""

import argparse
import json
import sys

import numpy as np
from scipy import ndimage
import tqdm

from mammojax.data import breast_region
from mammojax.data import synthetic
from mammojax.data.synthetic import artefacts


def otsu_bbox(image: np.ndarray):
  """The crop before the background threshold and band removal."""
  h, w = image.shape
  factor = max(1, max(h, w) // 512)
  small = breast_region._block_mean(image, factor)  # pylint: disable=protected-access
  mask = ndimage.binary_opening(
      small > breast_region.otsu_threshold(small), iterations=2)
  labels, n = ndimage.label(mask)
  if not n:
    return None
  best = int(np.argmax(np.bincount(labels.ravel())[1:])) + 1
  rows, cols = np.nonzero(labels == best)
  x1 = w if cols.max() + 1 >= small.shape[1] else (cols.max() + 1) * factor
  y1 = h if rows.max() + 1 >= small.shape[0] else (rows.max() + 1) * factor
  return cols.min() * factor, rows.min() * factor, x1, y1


def measure(num_images: int, seed: int = 7, spacing: float = 0.2):
  """{crop: {artefact: [IoU per image]}}."""
  config = synthetic.SyntheticConfig(pixel_spacings_mm=(spacing,))
  rng = np.random.default_rng(0)
  crops = {"breast_bbox": lambda im: breast_region.breast_bbox(im, margin=0),
           "otsu (previous)": otsu_bbox}
  out = {name: {k: [] for k in artefacts.ARTEFACTS} for name in crops}
  for index in tqdm.trange(num_images, desc="images"):
    image = synthetic.generate_image(config, seed, index)
    display, mask = image.display, image.breast_mask
    if image.spec.laterality == "R":
      display, mask = display[:, ::-1], mask[:, ::-1]
    for kind in artefacts.ARTEFACTS:
      shown, changed = artefacts.add_artefact(display, kind, rng)
      truth = artefacts.mask_box(mask & ~changed)
      for name, crop in crops.items():
        box = crop(shown)
        out[name][kind].append(artefacts.box_iou(box, truth) if box else 0.0)
  return out


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--num-images", type=int, default=20)
  parser.add_argument("--out", default="")
  args = parser.parse_args(argv)
  out = measure(args.num_images)
  summary = {name: {k: {"min": round(min(v), 4), "mean": round(
      float(np.mean(v)), 4)} for k, v in table.items()}
             for name, table in out.items()}
  lines = ["| artefact | " + " | ".join(f"{n} IoU min / mean" for n in summary)
           + " |", "|---|" + "---|" * len(summary)]
  for kind in artefacts.ARTEFACTS:
    cells = [f"{s[kind]['min']:.3f} / {s[kind]['mean']:.3f}"
             for s in summary.values()]
    lines.append(f"| {kind} | " + " | ".join(cells) + " |")
  print("\n".join(lines))
  result = {"num_images": args.num_images, "iou": summary}
  if args.out:
    with open(args.out, "w") as f:
      json.dump(result, f, indent=1)
  json.dump(result, sys.stdout)
  print()


if __name__ == "__main__":
  main()
