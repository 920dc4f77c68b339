"""The breast in a mammogram: chest-wall side and breast bounding box.

Pure numpy / scipy on 2-D float images (bright = dense). `load_dicom`
(`mammojax.data.dicom`) uses them to orient and crop.

- `tissue_side`: the half of the image holding more tissue (taken as the
  chest wall when laterality is unknown).
- `otsu_threshold`, `breast_bbox`: Otsu threshold + binary opening + largest
  connected component, bounding box + margin.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def _block_mean(image: np.ndarray, factor: int) -> np.ndarray:
  """Block average by an integer factor (edges trimmed); for masks only."""
  if factor <= 1:
    return image
  h = image.shape[0] // factor * factor
  w = image.shape[1] // factor * factor
  if h == 0 or w == 0:
    return image
  return image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(
      axis=(1, 3)
  )


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
  """Otsu's threshold of `values` (maximises between-class variance)."""
  values = np.asarray(values, dtype=np.float64).ravel()
  lo, hi = float(values.min()), float(values.max())
  if hi <= lo:
    return lo
  hist, edges = np.histogram(values, bins=bins, range=(lo, hi))
  centres = (edges[:-1] + edges[1:]) / 2
  w0 = np.cumsum(hist)
  w1 = w0[-1] - w0
  m0 = np.cumsum(hist * centres)
  mean0 = m0 / np.maximum(w0, 1)
  mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
  between = w0 * w1 * (mean0 - mean1) ** 2
  return float(edges[int(np.argmax(between[:-1])) + 1])


def tissue_side(image: np.ndarray) -> str:
  """'left' or 'right': the half of the image holding more tissue signal."""
  small = _block_mean(image, max(1, max(image.shape) // 256))
  half = small.shape[1] // 2
  left = float(small[:, :half].sum())
  right = float(small[:, small.shape[1] - half :].sum())
  return "right" if right > left else "left"


def breast_bbox(
    image: np.ndarray, *, margin: float = 0.01, min_area: float = 0.01
) -> tuple[int, int, int, int] | None:
  """Bounding box (x0, y0, x1, y1), half-open, of the breast in `image`.

  Otsu threshold on a ~512 px copy, binary opening (drops thin lines and
  specks), largest connected component, box grown by `margin` times the
  long side. None if the image is tiny or the component covers less than
  `min_area` of the image (then the full frame should be kept).
  """
  h, w = image.shape
  if min(h, w) < 16:
    return None
  factor = max(1, max(h, w) // 512)
  small = _block_mean(image, factor)
  mask = small > otsu_threshold(small)
  mask = ndimage.binary_opening(mask, iterations=2)
  labels, n = ndimage.label(mask)
  if n == 0:
    return None
  sizes = np.bincount(labels.ravel())[1:]
  best = int(np.argmax(sizes)) + 1
  if sizes[best - 1] < min_area * mask.size:
    return None
  rows, cols = np.nonzero(labels == best)
  pad = int(round(margin * max(h, w)))
  x0 = max(0, cols.min() * factor - pad)
  y0 = max(0, rows.min() * factor - pad)
  x1 = min(w, (cols.max() + 1) * factor + pad)
  y1 = min(h, (rows.max() + 1) * factor + pad)
  # Block means drop the last partial block: extend to the edge if touched.
  if cols.max() + 1 >= small.shape[1]:
    x1 = w
  if rows.max() + 1 >= small.shape[0]:
    y1 = h
  return int(x0), int(y0), int(x1), int(y1)
