"""Image resampling on pixel-centre grids: area down, linear up.

`resample_matrix` gives sparse per-axis weights (box filter when shrinking,
linear interpolation when enlarging); `resize_image` applies them to a 2-D
image; `target_shape` turns a `resize` spec (long side, or fit into (H, W))
into content and canvas shapes. Used by `load_dicom` (`mammojax.data.dicom`)
and by the builders and training code that resize images.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse


def resample_matrix(n_in: int, n_out: int) -> sparse.csr_matrix:
  """Sparse `[n_out, n_in]` resampling weights on pixel-centre grids.

  Output pixel j sits at input position `(j + 0.5) * n_in / n_out - 0.5`.
  Shrinking averages the covered input area (box filter); enlarging
  interpolates linearly (edge values repeated).
  """
  s = n_out / n_in
  j = np.arange(n_out)
  if n_out <= n_in:
    a, b = j / s, (j + 1) / s
    k_max = int(np.ceil(1 / s)) + 1
    rows, cols, vals = [], [], []
    for k in range(k_max + 1):
      i = np.floor(a).astype(np.int64) + k
      wgt = (np.minimum(b, i + 1) - np.maximum(a, i)) * s
      ok = (wgt > 1e-12) & (i < n_in)
      rows.append(j[ok])
      cols.append(i[ok])
      vals.append(wgt[ok])
    rows, cols, vals = map(np.concatenate, (rows, cols, vals))
  else:
    src = np.clip((j + 0.5) / s - 0.5, 0, n_in - 1)
    i0 = np.floor(src).astype(np.int64)
    i1 = np.minimum(i0 + 1, n_in - 1)
    f = src - i0
    rows = np.concatenate([j, j])
    cols = np.concatenate([i0, i1])
    vals = np.concatenate([1 - f, f])
  return sparse.csr_matrix((vals, (rows, cols)), shape=(n_out, n_in))


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Resamples `image` `[h, w]` to `shape` (area down, linear up)."""
  h, w = image.shape
  out_h, out_w = shape
  ry = resample_matrix(h, out_h)
  rx = resample_matrix(w, out_w)
  tmp = np.asarray(ry @ image.astype(np.float32))
  return np.asarray(rx @ tmp.T).T.astype(np.float32)


def target_shape(
    h: int, w: int, resize: int | tuple[int, int]
) -> tuple[tuple[int, int], tuple[int, int]]:
  """(content shape, canvas shape) for a `resize` spec keeping aspect."""
  if isinstance(resize, (int, np.integer)):
    factor = int(resize) / max(h, w)
    content = (max(1, round(h * factor)), max(1, round(w * factor)))
    return content, content
  out_h, out_w = (int(v) for v in resize)
  factor = min(out_h / h, out_w / w)
  content = (
      min(out_h, max(1, round(h * factor))),
      min(out_w, max(1, round(w * factor))),
  )
  return content, (out_h, out_w)
