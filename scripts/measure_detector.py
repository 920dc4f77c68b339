"""Measures the calcification detector's precision / recall; prints JSON.

Detections are matched one-to-one to annotated calcification centres within
`--tol_mm` (closest pairs first). Sources:

* `--source=synthetic`: `mammojax.data.synthetic.generate_image` images
  (display image, annotated `center_xy` and `morphology`), ROI = the breast
  mask minus a 1 mm margin at the skin line; `--num_images` per seed of
  `--seeds`. Reports overall P / R / F1, per-seed numbers and recall per
  morphology and per cluster subtlety (1-5 of the default generator;
  "unknown" under `--overrides='{"calc_statistics": "independent"}'`). Tune on seeds 0-1, report on held-out seeds (2-4).
* `--source=blobs`: the small textured blob renderer of the unit test.

`--visibility` adds, per morphology, the contrast-to-noise of each
annotated calcification: `peak_cnr` = peak of the (0.6 px smoothed) image
minus a 1.5 mm median background over the calcification mask, divided by
the local pixel noise sigma (MAD of neighbour differences / sqrt 2, 64 px
window, calcifications excluded), and `mf_snr` = the matched-filter SNR of
a known calcification at a known place, sqrt(sum(s^2) - N sigma^2) / sigma
with s the background-subtracted pixels of the mask dilated by 1 px (an
ideal-observer upper bound that ignores texture). Detection at an unknown
place among ~1e5 per image needs roughly mf_snr > 5 for ~1 false positive
per image, so calcifications below that are invisible to any detector.

Run from the repository root, e.g.
  python scripts/measure_detector.py --seeds=2,3,4 --num_images=8 \
      --overrides='{"breast_scale": 0.5}'
"""

import collections
import json
import sys
import time
from typing import Any

from absl import app
from absl import flags
import numpy as np
from scipy import ndimage

from mammojax.data import calcification_detector as detector
from mammojax.data import calcifications as calcs

_SOURCE = flags.DEFINE_enum("source", "synthetic", ["synthetic", "blobs"], "")
_NUM = flags.DEFINE_integer("num_images", 8, "Images to generate.")
_SEEDS = flags.DEFINE_list(
    "seeds", ["2", "3", "4"], "Generator seeds (0-1 = tuning, 2-4 = held out)."
)
_TOL = flags.DEFINE_float("tol_mm", 0.5, "Matching tolerance in mm.")
_THRESHOLD = flags.DEFINE_float(
    "threshold", None, "Detector threshold (default: the library's)."
)
_METHOD = flags.DEFINE_enum(
    "method", "multiscale", ["multiscale", "mad", "authors"], ""
)
_VISIBILITY = flags.DEFINE_boolean(
    "visibility", False, "Report contrast-to-noise per morphology."
)
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


def _synthetic_images(num, seeds, overrides):
  """Yields dicts: image, centres, spacing, roi, morph, seed, calc_mask."""
  from mammojax.data import synthetic  # pylint: disable=g-import-not-at-top

  config = synthetic.SyntheticConfig(**overrides)
  for seed, index in ((s, i) for s in seeds for i in range(num)):
    image = synthetic.generate_image(config, seed, index)
    display = np.asarray(image.display, np.float32)
    annotation = image.annotation
    spacing = _get(annotation, "pixel_spacing_mm")
    spacing = float(np.mean(spacing)) if spacing is not None else 0.07
    calcs_list = _get(annotation, "calcifications", [])
    centres = np.array(
        [_get(c, "center_xy") for c in calcs_list], np.float64
    ).reshape(-1, 2)
    morph = [str(_get(c, "morphology", "unknown")) for c in calcs_list]
    cluster_subtlety = {
        _get(cl, "cluster_id"): _get(cl, "subtlety")
        for cl in _get(annotation, "clusters", [])}
    subtlety = [str(cluster_subtlety.get(_get(c, "cluster_id")) or "unknown")
                for c in calcs_list]
    breast = _get(image, "breast_mask")
    if breast is None:
      breast = display > 0
    # Keep a ~1 mm margin from the skin line, whose edge is not a calcification.
    roi = ndimage.binary_erosion(
        np.asarray(breast, bool), iterations=max(1, int(round(1.0 / spacing)))
    )
    yield dict(
        image=display, centres=centres, spacing=spacing, roi=roi,
        morph=morph, subtlety=subtlety, seed=seed,
        breast=np.asarray(breast, bool),
        calc_mask=_get(image, "calcification_mask"),
    )


def visibility(image, centres, spacing, breast, calc_mask):
  """(peak_cnr, mf_snr) per annotated calcification (module docstring)."""
  image = np.asarray(image, np.float64)
  labels, _ = ndimage.label(calc_mask, np.ones((3, 3)))
  near = ndimage.binary_dilation(calc_mask, iterations=3)
  background = ndimage.median_filter(image, size=int(round(1.5 / spacing)) | 1)
  contrast_map = ndimage.gaussian_filter(image, 0.6) - background
  diff = np.pad((image[:, 1:] - image[:, :-1]) / np.sqrt(2), ((0, 0), (0, 1)))
  out = []
  for x, y in centres:
    r, c, h = int(round(y)), int(round(x)), 32
    win = (slice(max(r - h, 0), r + h), slice(max(c - h, 0), c + h))
    values = diff[win][~near[win] & breast[win]]
    sigma = 1.4826 * np.median(np.abs(values - np.median(values)))
    region = labels == labels[r, c] if labels[r, c] else np.zeros_like(near)
    region[r, c] = True
    box = ndimage.find_objects(region.astype(np.int32))[0]
    box = tuple(slice(max(b.start - 2, 0), b.stop + 2) for b in box)
    grown = ndimage.binary_dilation(region[box], iterations=1)
    s = (image - background)[box][grown]
    snr2 = (np.sum(s * s) - s.size * sigma**2) / sigma**2
    out.append((
        float(contrast_map[box][grown].max() / sigma),
        float(np.sign(snr2) * np.sqrt(abs(snr2))),
    ))
  return out


def _blob_images(num, seed):
  sys.path.insert(0, ".")
  # pylint: disable-next=g-import-not-at-top
  from tests.data import calcification_detector_test as detector_test

  for index in range(num):
    image, centres = detector_test.render_blobs(seed * 1000 + index)
    yield dict(image=image, centres=centres, spacing=0.07, roi=None,
               morph=["blob"] * len(centres), seed=seed)


def _prf(tp, fp, fn):
  precision = tp / (tp + fp) if tp + fp else 1.0
  recall = tp / (tp + fn) if tp + fn else 1.0
  f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
  return {"tp": tp, "fp": fp, "fn": fn, "precision": round(precision, 4),
          "recall": round(recall, 4), "f1": round(f1, 4)}


def main(argv):
  del argv
  seeds = [int(s) for s in _SEEDS.value]
  if _SOURCE.value == "synthetic":
    overrides = json.loads(_OVERRIDES.value) if _OVERRIDES.value else {}
    images = _synthetic_images(_NUM.value, seeds, overrides)
  else:
    images = (im for s in seeds for im in _blob_images(_NUM.value, s))
  options = {"method": _METHOD.value}
  if _THRESHOLD.value is not None:
    options["threshold"] = _THRESHOLD.value
  if _TOPHAT.value is not None:
    options["tophat_diameter_mm"] = _TOPHAT.value
  counts = collections.defaultdict(lambda: [0, 0, 0])  # seed -> tp fp fn
  found, total = collections.Counter(), collections.Counter()
  found_s, total_s = collections.Counter(), collections.Counter()
  vis = collections.defaultdict(list)
  per_image, detect_seconds, gen_seconds, shapes = [], 0.0, 0.0, []
  start = time.perf_counter()
  for item in images:
    gen_seconds += time.perf_counter() - start
    image, centres, spacing = item["image"], item["centres"], item["spacing"]
    t0 = time.perf_counter()
    det = detector.detect_calcifications(
        image, pixel_spacing_mm=spacing, roi_mask=item["roi"], **options
    )
    detect_seconds += time.perf_counter() - t0
    m = calcs.match_to_annotations(
        det.centers_xy, centres, _TOL.value / spacing
    )
    c = counts[item["seed"]]
    c[0] += m.true_positives
    c[1] += m.false_positives
    c[2] += m.false_negatives
    hit = set(m.pairs[:, 1].tolist())
    for j, morph in enumerate(item["morph"]):
      total[morph] += 1
      found[morph] += j in hit
    for j, sub in enumerate(item.get("subtlety", ())):
      total_s[sub] += 1
      found_s[sub] += j in hit
    if _VISIBILITY.value and item.get("calc_mask") is not None:
      for j, (cnr, snr) in enumerate(visibility(
          image, centres, spacing, item["breast"], item["calc_mask"])):
        vis[item["morph"][j]].append((cnr, snr, j in hit))
    shapes.append("x".join(map(str, image.shape)))
    per_image.append({
        "seed": item["seed"],
        "true": int(centres.shape[0]),
        "detected": len(det),
        "tp": m.true_positives,
        "precision": round(m.precision, 4),
        "recall": round(m.recall, 4),
    })
    start = time.perf_counter()
  overall = _prf(*np.sum(list(counts.values()), axis=0).tolist())
  report = {
      "source": _SOURCE.value,
      "options": options,
      "seeds": seeds,
      "tol_mm": _TOL.value,
      "num_images": len(per_image),
      "image_shapes": sorted(set(shapes)),
      **overall,
      "recall_per_morphology": {
          k: {"found": found[k], "total": total[k],
              "recall": round(found[k] / total[k], 4)}
          for k in sorted(total)
      },
      "recall_per_subtlety": {
          k: {"found": found_s[k], "total": total_s[k],
              "recall": round(found_s[k] / total_s[k], 4)}
          for k in sorted(total_s)
      },
      "per_seed": {str(k): _prf(*v) for k, v in sorted(counts.items())},
      "detect_seconds_per_image": round(detect_seconds / len(shapes), 3),
      "generate_seconds_per_image": round(gen_seconds / len(shapes), 3),
      "per_image": per_image,
  }
  if vis:
    report["visibility"] = {}
    for k, rows in sorted(vis.items()):
      a = np.asarray(rows, np.float64)
      low = a[:, 1] < 5
      report["visibility"][k] = {
          "n": len(a),
          "peak_cnr_p25_p50_p75": np.round(
              np.percentile(a[:, 0], [25, 50, 75]), 2).tolist(),
          "mf_snr_p25_p50_p75": np.round(
              np.percentile(a[:, 1], [25, 50, 75]), 2).tolist(),
          "fraction_mf_snr_below_5": round(float(low.mean()), 3),
          "recall_mf_snr_below_5": (
              round(float(a[low, 2].mean()), 3) if low.any() else None),
          "recall_mf_snr_at_least_5": (
              round(float(a[~low, 2].mean()), 3) if (~low).any() else None),
      }
  print(json.dumps(report, indent=1))


if __name__ == "__main__":
  app.run(main)
