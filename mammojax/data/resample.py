"""Image resampling on pixel-centre grids: area down, linear up.

`resample_matrix` gives sparse per-axis weights (box filter when shrinking,
linear interpolation when enlarging); `resize_image` applies them to a 2-D
image; `target_shape` turns a `resize` spec (long side, or fit into (H, W))
into content and canvas shapes; `fit_image` resizes keeping aspect and
zero-pads to a fixed (H, W). Used by `load_dicom` (`mammojax.data.dicom`)
and by the builders and training code that resize images.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
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


def fit_image(
    image: np.ndarray, size: tuple[int, int], method: str = "area"
) -> np.ndarray:
  """Resizes `image` `[h, w]` keeping aspect, zero-padded (bottom / right).

  Args:
    image: the 2-D image.
    size: (H, W) of the output.
    method: `"area"`: `resize_image` (area average down, linear up, on
      pixel-centre grids) to the content shape of `target_shape`;
      `"zoom"`: `scipy.ndimage.zoom(image, scale, order=1)` (linear through
      corner-aligned samples, content shape rounded by scipy), which the
      calcification-graph builders' `view_image` has always used. The two
      give different pixels.

  Returns:
    float32 `size` array.

  Raises:
    ValueError: an unknown `method`.
  """
  h, w = image.shape[:2]
  if method == "area":
    shape, _ = target_shape(h, w, tuple(size))
    content = resize_image(np.asarray(image, np.float32), shape)
  elif method == "zoom":
    scale = min(size[0] / h, size[1] / w)
    content = ndimage.zoom(image, scale, order=1)[: size[0], : size[1]]
  else:
    raise ValueError(f"fit_image: method {method!r} is not 'area' or 'zoom'")
  out = np.zeros(tuple(size), np.float32)
  out[: content.shape[0], : content.shape[1]] = content
  return out
