"""Matched filters and robust local statistics of the calcification detector.

The response maps behind `calcification_detector.detect_calcifications`:
the multiscale z-map (bright-blob and oriented thin-line matched filters,
each turned into a z-score by a robust local noise estimate;
`multiscale_response`) and the per-tile robust background level of the
top-hat response (`local_background_scale`). Statistics are per
`block x block` tile inside an ROI, bilinearly interpolated between tile
centres.

Everything here is numpy / scipy; no JAX.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import fft as sp_fft
from scipy import ndimage

# A block needs this fraction of ROI pixels for its own background estimate.
_MIN_BLOCK_FILL = 0.25


def _interp_matrix(length: int, block: int, num_blocks: int) -> np.ndarray:
  """`[length, num_blocks]` linear interpolation from block centres."""
  pos = (np.arange(length) + 0.5) / block - 0.5
  pos = np.clip(pos, 0, num_blocks - 1)
  lo = np.floor(pos).astype(np.int64)
  hi = np.minimum(lo + 1, num_blocks - 1)
  frac = pos - lo
  out = np.zeros((length, num_blocks))
  out[np.arange(length), lo] += 1 - frac
  out[np.arange(length), hi] += frac
  return out


def local_background_scale(
    response: np.ndarray, roi: np.ndarray, block: int, quantile: float = 90.0
) -> np.ndarray:
  """Per-pixel robust background level of a non-negative response.

  The `quantile` (percent) of `response` over the ROI pixels of each
  `block x block` tile (tiles with under a quarter ROI take their nearest
  valid tile), bilinearly interpolated between tile centres and floored at
  the same quantile over the whole ROI. Calcifications cover a few percent
  of a tile at most, so the level reflects texture and noise only.

  Args:
    response: float `[H, W]`.
    roi: bool `[H, W]`.
    block: tile side in pixels.
    quantile: percentile of the tile's responses (50 = MAD about zero).

  Returns:
    float64 `[H, W]`.
  """
  height, width = response.shape
  block = max(int(block), 1)
  rows, cols = -(-height // block), -(-width // block)
  tiles = np.full((rows * block, cols * block), np.nan)
  tiles[:height, :width] = np.where(roi, response, np.nan)
  tiles = tiles.reshape(rows, block, cols, block).transpose(0, 2, 1, 3)
  tiles = tiles.reshape(rows, cols, block * block)
  valid = np.isfinite(tiles).sum(-1) >= _MIN_BLOCK_FILL * block * block
  floor = float(np.percentile(response[roi], quantile)) if roi.any() else 0.0
  if not valid.any():
    return np.full(response.shape, floor)
  medians = np.zeros((rows, cols))
  medians[valid] = np.nanpercentile(tiles[valid], quantile, axis=-1)
  nearest = ndimage.distance_transform_edt(
      ~valid, return_distances=False, return_indices=True
  )
  medians = medians[tuple(nearest)]
  scale = (
      _interp_matrix(height, block, rows)
      @ medians
      @ _interp_matrix(width, block, cols).T
  )
  return np.maximum(scale, floor)


def local_robust_stats(
    response: np.ndarray, roi: np.ndarray, block: int, step: int = 2
) -> tuple[np.ndarray, np.ndarray]:
  """Per-pixel robust location and scale of a response inside an ROI.

  The median and 1.4826 x MAD of `response` over the ROI pixels of each
  `block x block` tile (on every `step`-th row / column; tiles with under a
  quarter ROI take their nearest valid tile), bilinearly interpolated
  between tile centres. Calcifications cover a few percent of a tile at
  most, so this is the spread of noise plus texture at the filter's scale.

  Args:
    response: float `[H, W]`.
    roi: bool `[H, W]`.
    block: tile side in pixels.
    step: subsampling of the tile pixels (speed; 1 = all).

  Returns:
    (median, sigma), float64 `[H, W]` each.
  """
  height, width = response.shape
  block = max(int(block), 1)
  step = max(min(int(step), block), 1)
  rows, cols = -(-height // block), -(-width // block)
  tiles = np.full((rows * block, cols * block), np.nan)
  tiles[:height, :width] = np.where(roi, response, np.nan)
  tiles = tiles.reshape(rows, block, cols, block)[:, ::step, :, ::step]
  tiles = tiles.transpose(0, 2, 1, 3).reshape(rows, cols, -1)
  valid = np.isfinite(tiles).sum(-1) >= _MIN_BLOCK_FILL * tiles.shape[-1]
  if not valid.any():
    values = response[roi] if roi.any() else response.ravel()
    med = float(np.median(values))
    mad = 1.4826 * float(np.median(np.abs(values - med)))
    return np.full(response.shape, med), np.full(response.shape, mad)
  med = np.zeros((rows, cols))
  mad = np.zeros((rows, cols))
  tv = tiles[valid]
  med[valid] = np.nanmedian(tv, axis=-1)
  mad[valid] = 1.4826 * np.nanmedian(np.abs(tv - med[valid][:, None]), -1)
  nearest = tuple(
      ndimage.distance_transform_edt(
          ~valid, return_distances=False, return_indices=True
      )
  )
  left = _interp_matrix(height, block, rows)
  right = _interp_matrix(width, block, cols).T
  return left @ med[nearest] @ right, left @ mad[nearest] @ right


def _filter_bank(
    image: np.ndarray,
    blob_sigmas_px: Sequence[float],
    line_sigma_px: float,
    line_length_px: float,
    line_orientations: int,
) -> list[tuple[str, np.ndarray]]:
  """Blob (-LoG) and line (max over angles) responses, via one FFT.

  Returns `(kind, response, kernel L2 norm)` triples; the norm is the
  response's standard deviation for unit white noise.

  Blob at sigma s: `-laplacian(G_s * I)`. Line: `-d^2/dv^2` of an
  anisotropic Gaussian with `line_sigma_px` across (v) and
  `line_length_px` along (u) the line, maximised over `line_orientations`
  angles in [0, pi). Reflect padding keeps the image border neutral.
  """
  height, width = image.shape
  reach = max(list(blob_sigmas_px) + [line_length_px, line_sigma_px])
  pad = int(np.ceil(4 * reach)) + 1
  padded = np.pad(image, pad, mode="reflect")
  shape = [sp_fft.next_fast_len(n, real=True) for n in padded.shape]
  spectrum = sp_fft.rfft2(padded, s=shape)
  ky = 2 * np.pi * sp_fft.fftfreq(shape[0])[:, None]
  kx = 2 * np.pi * sp_fft.rfftfreq(shape[1])[None, :]
  k2 = kx * kx + ky * ky

  # Parseval weights of the half spectrum: the L2 norm of each kernel.
  weight = np.full(kx.shape, 2.0)
  weight[:, 0] = 1.0
  if shape[1] % 2 == 0:
    weight[:, -1] = 1.0
  size = shape[0] * shape[1]

  def back(transfer):
    out = sp_fft.irfft2(spectrum * transfer, s=shape)
    norm = np.sqrt(np.sum(weight * transfer * transfer) / size)
    return out[pad : pad + height, pad : pad + width], float(norm)

  responses = []
  for sigma in blob_sigmas_px:
    responses.append(
        ("blob",) + back(k2 * np.exp(-0.5 * sigma * sigma * k2))
    )
  if line_orientations > 0 and line_length_px > 0:
    best = None
    for theta in np.arange(line_orientations) * np.pi / line_orientations:
      ku = kx * np.cos(theta) + ky * np.sin(theta)
      kv = ky * np.cos(theta) - kx * np.sin(theta)
      transfer = kv * kv * np.exp(
          -0.5 * (line_length_px**2 * ku * ku + line_sigma_px**2 * kv * kv)
      )
      r, norm = back(transfer)
      best = r if best is None else np.maximum(best, r)
    responses.append(("line", best, norm))
  return responses


def multiscale_response(
    image01: np.ndarray,
    *,
    pixel_spacing_mm: float,
    roi_mask: Optional[np.ndarray] = None,
    blob_sigmas_mm: Sequence[float] = (0.07, 0.1),
    line_sigma_mm: float = 0.07,
    line_length_mm: float = 0.35,
    line_orientations: int = 8,
    background_block_mm: float = 4.0,
    min_sigma_px: float = 0.7,
    noise_floor: float = 1e-3,
) -> np.ndarray:
  """z-map of the multiscale detector: max of noise-normalised responses.

  Each filter response is turned into a z-score by its local median and
  MAD (`local_robust_stats`, tiles of `background_block_mm` inside the
  ROI); the map is the maximum over filters. Scales are in mm and floored
  at `min_sigma_px` (below that the filter only sees pixel noise). The line
  filter reaches `2 * line_length_mm` along its axis, so it is not used
  that close to the ROI border, where it would see the skin line / breast
  edge (set to min(z, 0) there; the compact blob filters still are).

  Args:
    image01: float `[H, W]`, bright = dense.
    pixel_spacing_mm: isotropic pixel size in mm.
    roi_mask: bool `[H, W]` or None (= non-zero pixels).
    blob_sigmas_mm: Gaussian scales of the blob filters.
    line_sigma_mm, line_length_mm: across / along scales of the line
      filter (`line_length_mm <= 0` or `line_orientations == 0`: no line
      filter).
    line_orientations: number of line angles in [0, pi).
    background_block_mm: tile size of the noise estimate.
    min_sigma_px: smallest filter scale in pixels.
    noise_floor: smallest pixel noise sigma (image units) assumed, so a
      (nearly) noise-free image does not turn filter tails into detections;
      the default is about the quantisation noise of an 8-bit image
      (1 / 255 / sqrt(12)), far below the noise of real mammograms.

  Returns:
    float64 `[H, W]`.
  """
  image = np.asarray(image01, dtype=np.float64)
  roi = (
      np.asarray(roi_mask, dtype=bool) if roi_mask is not None else image > 0
  )
  to_px = lambda mm: max(float(mm) / pixel_spacing_mm, min_sigma_px)
  line_length_px = (
      to_px(line_length_mm) if line_length_mm > 0 else 0.0
  )
  responses = _filter_bank(
      image,
      sorted({round(to_px(s), 3) for s in blob_sigmas_mm}),
      to_px(line_sigma_mm),
      line_length_px,
      int(line_orientations),
  )
  block = int(round(background_block_mm / pixel_spacing_mm))
  z = np.full(image.shape, -np.inf)
  for kind, response, norm in responses:
    med, sigma = local_robust_stats(response, roi, block)
    floor = max(noise_floor * norm, np.finfo(np.float32).tiny)
    zk = (response - med) / np.maximum(sigma, floor)
    if kind == "line":
      reach = int(np.ceil(2 * line_length_px))
      inner = ndimage.binary_erosion(roi, iterations=reach) if reach else roi
      zk = np.where(inner, zk, np.minimum(zk, 0.0))
    z = np.maximum(z, zk)
  return z

