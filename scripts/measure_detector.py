"""Measures the calcification detector's precision / recall; prints JSON.

Detections are matched one-to-one to annotated calcification centres within
`--tol_mm` (closest pairs first). Sources:

* `--source=synthetic`: `mammojax.data.synthetic.generate_image` images
  (display image, annotated `center_xy`), ROI = the breast mask minus a
  1 mm margin at the skin line.
* `--source=blobs`: the small textured blob renderer of the unit test.

Run from the repository root, e.g.
  python scripts/measure_detector.py --source=synthetic --num_images=8
"""

import json
import sys
import time
from typing import Any

from absl import app
from absl import flags
import numpy as np
from scipy import ndimage

from mammojax.data import calcifications as calcs

_SOURCE = flags.DEFINE_enum("source", "synthetic", ["synthetic", "blobs"], "")
_NUM = flags.DEFINE_integer("num_images", 8, "Images to generate.")
_SEED = flags.DEFINE_integer("seed", 0, "Generator seed.")
_TOL = flags.DEFINE_float("tol_mm", 0.5, "Matching tolerance in mm.")
_THRESHOLD = flags.DEFINE_float(
    "threshold", None, "Detector threshold (default: the library's)."
)
_METHOD = flags.DEFINE_enum("method", "mad", ["mad", "authors"], "")
_TOPHAT = flags.DEFINE_float(
    "tophat_diameter_mm", None, "Top-hat diameter (default: the library's)."
)
_OVERRIDES = flags.DEFINE_string(
    "overrides", "", "SyntheticConfig overrides as JSON, e.g. "
    '\'{"breast_scale": 0.5}\'.'
)


def _get(obj: Any, key: str, default: Any = None) -> Any:
  if isinstance(obj, dict):
    return obj.get(key, default)
  return getattr(obj, key, default)


def _synthetic_images(num, seed, overrides):
  """Yields (display, true centres xy, pixel spacing mm, breast roi)."""
  from mammojax.data import synthetic  # pylint: disable=g-import-not-at-top

  config = synthetic.SyntheticConfig(**overrides)
  for index in range(num):
    image = synthetic.generate_image(config, seed, index)
    display = np.asarray(image.display, np.float32)
    annotation = image.annotation
    spacing = _get(annotation, "pixel_spacing_mm")
    spacing = float(np.mean(spacing)) if spacing is not None else 0.07
    centres = np.array(
        [_get(c, "center_xy") for c in _get(annotation, "calcifications", [])],
        np.float64,
    ).reshape(-1, 2)
    breast = _get(image, "breast_mask")
    if breast is None:
      breast = display > 0
    # Keep a ~1 mm margin from the skin line, whose edge is not a calcification.
    roi = ndimage.binary_erosion(
        np.asarray(breast, bool), iterations=max(1, int(round(1.0 / spacing)))
    )
    yield display, centres, spacing, roi


def _blob_images(num, seed):
  sys.path.insert(0, ".")
  # pylint: disable-next=g-import-not-at-top
  from tests.data import calcifications_test

  for index in range(num):
    image, centres = calcifications_test.render_blobs(seed * 1000 + index)
    yield image, centres, 0.07, None


def main(argv):
  del argv
  if _SOURCE.value == "synthetic":
    overrides = json.loads(_OVERRIDES.value) if _OVERRIDES.value else {}
    images = _synthetic_images(_NUM.value, _SEED.value, overrides)
  else:
    images = _blob_images(_NUM.value, _SEED.value)
  options = {"method": _METHOD.value}
  if _THRESHOLD.value is not None:
    options["threshold"] = _THRESHOLD.value
  if _TOPHAT.value is not None:
    options["tophat_diameter_mm"] = _TOPHAT.value
  tp = fp = fn = 0
  per_image, detect_seconds, gen_seconds, shapes = [], 0.0, 0.0, []
  start = time.perf_counter()
  for image, centres, spacing, roi in images:
    gen_seconds += time.perf_counter() - start
    t0 = time.perf_counter()
    det = calcs.detect_calcifications(
        image, pixel_spacing_mm=spacing, roi_mask=roi, **options
    )
    detect_seconds += time.perf_counter() - t0
    m = calcs.match_to_annotations(
        det.centers_xy, centres, _TOL.value / spacing
    )
    tp += m.true_positives
    fp += m.false_positives
    fn += m.false_negatives
    shapes.append("x".join(map(str, image.shape)))
    per_image.append({
        "true": int(centres.shape[0]),
        "detected": len(det),
        "tp": m.true_positives,
        "precision": round(m.precision, 4),
        "recall": round(m.recall, 4),
    })
    start = time.perf_counter()
  precision = tp / (tp + fp) if tp + fp else 1.0
  recall = tp / (tp + fn) if tp + fn else 1.0
  f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
  print(json.dumps({
      "source": _SOURCE.value,
      "options": options,
      "tol_mm": _TOL.value,
      "num_images": len(per_image),
      "image_shapes": sorted(set(shapes)),
      "tp": tp, "fp": fp, "fn": fn,
      "precision": round(precision, 4),
      "recall": round(recall, 4),
      "f1": round(f1, 4),
      "detect_seconds_per_image": round(detect_seconds / len(shapes), 3),
      "generate_seconds_per_image": round(gen_seconds / len(shapes), 3),
      "per_image": per_image,
  }, indent=1))


if __name__ == "__main__":
  app.run(main)
