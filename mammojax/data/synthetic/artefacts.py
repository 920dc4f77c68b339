"""Acquisition artefacts added to synthetic mammograms (crop robustness).

Real full-field and digitised-film mammograms carry things the breast crop
(`mammojax.data.breast_region.breast_bbox`) must not mistake for breast:

* ``bottom_band`` / ``top_band``: a bright strip along the bottom (top) edge,
  1-4 % of the height (detector edge, film scanner border);
* ``collimator``: a bright frame on all four sides, 1-3 % of the short side
  (unexposed, collimated margins appear white on a presentation image);
* ``label``: a burned-in view marker ("LCC"-like block letters, 5 % of the
  height x 12 % of the width) in the top or bottom outer corner;
* ``band_and_label``: a bottom band and a label together.

`add_artefact` works on a laterality-normalised display image in [0, 1]
(chest wall at column 0) and returns the pixels it replaced, so the visible
breast box is the breast mask's box outside them. Bands carry Gaussian noise
(std 0.02), like the real ones.
"""

from __future__ import annotations

import numpy as np

ARTEFACTS = ("none", "bottom_band", "top_band", "collimator", "label",
             "band_and_label")


def add_artefact(
    image: np.ndarray, kind: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
  """Returns ``(image with the artefact, bool mask of the changed pixels)``."""
  if kind not in ARTEFACTS:
    raise ValueError(f"artefact {kind!r}: expected one of {ARTEFACTS}")
  out = np.array(image, np.float32)
  h, w = out.shape
  changed = np.zeros((h, w), bool)

  def band(rows, cols, level):
    region = out[rows, cols]
    noise = rng.normal(0.0, 0.02, region.shape)
    out[rows, cols] = np.clip(level + noise, 0.0, 1.0)
    changed[rows, cols] = True

  if kind in ("bottom_band", "band_and_label"):
    t = max(1, int(rng.uniform(0.01, 0.04) * h))
    band(slice(h - t, h), slice(None), rng.uniform(0.7, 0.95))
  if kind == "top_band":
    t = max(1, int(rng.uniform(0.01, 0.04) * h))
    band(slice(0, t), slice(None), rng.uniform(0.7, 0.95))
  if kind == "collimator":
    t = max(1, int(rng.uniform(0.01, 0.03) * min(h, w)))
    level = rng.uniform(0.8, 0.95)
    for rows, cols in ((slice(0, t), slice(None)), (slice(h - t, h),
                                                    slice(None)),
                       (slice(None), slice(0, t)), (slice(None),
                                                    slice(w - t, w))):
      band(rows, cols, level)
  if kind in ("label", "band_and_label"):
    lh, lw = max(3, int(0.05 * h)), max(6, int(0.12 * w))
    top = rng.random() < 0.5
    y = int(rng.uniform(0.03, 0.1) * h) if top else h - lh - int(0.06 * h)
    x = w - lw - int(0.04 * w)
    letters = np.zeros((lh, lw), bool)
    for k in range(3):  # Three block letters of thick strokes.
      x0 = k * lw // 3
      letters[:, x0:x0 + max(1, lw // 12)] = True
      letters[:max(1, lh // 6), x0:x0 + lw // 4] = True
      letters[-max(1, lh // 6):, x0:x0 + lw // 4] = True
    patch = out[y:y + lh, x:x + lw]
    patch[letters] = rng.uniform(0.85, 1.0)
    changed[y:y + lh, x:x + lw] |= letters
  return out, changed


def box_iou(a, b) -> float:
  """IoU of two half-open (x0, y0, x1, y1) boxes."""
  x0, y0 = max(a[0], b[0]), max(a[1], b[1])
  x1, y1 = min(a[2], b[2]), min(a[3], b[3])
  inter = max(0, x1 - x0) * max(0, y1 - y0)
  area = lambda t: (t[2] - t[0]) * (t[3] - t[1])
  union = area(a) + area(b) - inter
  return float(inter / union) if union > 0 else 0.0


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int]:
  """Half-open (x0, y0, x1, y1) box of a non-empty boolean mask."""
  rows, cols = np.nonzero(mask)
  return (int(cols.min()), int(rows.min()), int(cols.max()) + 1,
          int(rows.max()) + 1)
