"""Parenchyma texture: a Gaussian power-law field and its measurements.

The parenchyma is a Gaussian field with P(f) ~ 1 / f^beta (amplitude filter
f^(-beta/2) on white noise); `measure_beta` recovers beta from a region of a
rendered image (see `beta_roi_image`); `breast_power_spectrum_beta` measures
it as on a real mammogram (ROIs inside the breast, 0.1-1 cycles/mm).
"""

import numpy as np
from scipy import fft as sp_fft


def power_law_texture(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_spacing_mm: float,
    beta: float,
) -> np.ndarray:
  """Zero-mean, unit-std Gaussian field with P(f) ~ f^-beta, float32 [H, W]."""
  h, w = shape
  fh, fw = sp_fft.next_fast_len(h, real=True), sp_fft.next_fast_len(w, True)
  fy = np.fft.fftfreq(fh, d=pixel_spacing_mm).astype(np.float32)
  fx = np.fft.rfftfreq(fw, d=pixel_spacing_mm).astype(np.float32)
  f2 = fy[:, None] ** 2 + fx[None, :] ** 2
  f2[0, 0] = 1.0
  # P ~ f^-beta  =>  amplitude ~ f^(-beta / 2) = (f^2)^(-beta / 4).
  amp = f2 ** np.float32(-beta / 4.0)
  amp[0, 0] = 0.0
  noise = rng.standard_normal((2, fh, fw // 2 + 1), dtype=np.float32)
  spec = (noise[0] + 1j * noise[1]).astype(np.complex64) * amp
  field = sp_fft.irfft2(spec, s=(fh, fw))[:h, :w]
  field -= field.mean()
  field /= max(float(field.std()), 1e-12)
  return field.astype(np.float32)


def measure_beta(
    image: np.ndarray,
    pixel_spacing_mm: float,
    f_range: tuple[float, float] = (0.05, 1.0),
) -> float:
  """Fits P(f) ~ f^-beta on a 2-D image (Hann window, radial log-log fit).

  Args:
    image: [H, W] region of a mammogram or texture.
    pixel_spacing_mm: pixel size.
    f_range: fitted radial frequency range, cycles/mm.

  Returns:
    The fitted exponent beta.
  """
  x = np.asarray(image, np.float64)
  x = x - x.mean()
  h, w = x.shape
  x = x * np.outer(np.hanning(h), np.hanning(w))
  power = np.abs(np.fft.rfft2(x)) ** 2
  return _spectrum_beta(power, (h, w), pixel_spacing_mm, f_range, bins=15)


def _spectrum_beta(power: np.ndarray, shape: tuple[int, int],
                   pixel_spacing_mm: float, f_range: tuple[float, float],
                   *, bins: int) -> float:
  """-slope of log P vs log f over ``f_range`` (an rfft2 power spectrum).

  Radial average in ``bins`` log-spaced bins so every octave weighs the
  same, then a least-squares line.
  """
  h, w = shape
  fy = np.fft.fftfreq(h, d=pixel_spacing_mm)
  fx = np.fft.rfftfreq(w, d=pixel_spacing_mm)
  f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
  lo, hi = f_range
  sel = (f >= lo) & (f <= hi)
  if sel.sum() < 8:
    raise ValueError(
        f"image {shape} at {pixel_spacing_mm} mm has too few frequencies "
        f"in {f_range} cycles/mm")
  edges = np.geomspace(lo, hi, bins + 1)
  idx = np.digitize(f[sel], edges) - 1
  logf, logp = [], []
  for b in range(len(edges) - 1):
    m = idx == b
    if m.any():
      logf.append(np.log(f[sel][m].mean()))
      logp.append(np.log(power[sel][m].mean()))
  return float(-np.polyfit(logf, logp, 1)[0])


def breast_power_spectrum_beta(
    image: np.ndarray,
    breast_mask: np.ndarray,
    pixel_spacing_mm: float,
    *,
    roi_mm: float = 25.6,
    min_roi_mm: float = 12.8,
    skin_margin_mm: float = 10.0,
    max_rois: int = 16,
    f_range: tuple[float, float] = (0.1, 1.0),
    exclude: np.ndarray | None = None,
) -> tuple[float, int, float]:
  """beta of P(f) ~ 1 / f^beta measured as on a real mammogram.

  The usual measurement of mammographic texture (Burgess et al. 2001):
  square ROIs inside the breast, at least ``skin_margin_mm`` from its
  boundary (away from the skin line and the thickness fall-off), each
  mean-removed and Hann-windowed; their power spectra are averaged, then
  radially averaged in log-spaced bins and fitted in log-log over
  ``f_range`` (0.1-1.0 cycles/mm). ROIs of ``roi_mm`` tile the admissible
  region at half-ROI steps (at most ``max_rois``, the ones farthest inside
  first); where none fits, the side halves down to ``min_roi_mm``.

  Args:
    image: display image [H, W] (any grey scale; e.g. ``load_dicom`` output).
    breast_mask: bool [H, W], the breast.
    pixel_spacing_mm: pixel size.
    exclude: optional bool [H, W] of pixels no ROI may touch (findings:
      masses and calcifications are not parenchyma).

  Returns:
    ``(beta, number of ROIs, ROI side in mm)``.

  Raises:
    ValueError: no ROI of ``min_roi_mm`` fits inside the breast.
  """
  from scipy import ndimage  # pylint: disable=g-import-not-at-top

  x = np.asarray(image, np.float64)
  inside = ndimage.distance_transform_edt(np.asarray(breast_mask, bool))
  ok = inside * pixel_spacing_mm >= skin_margin_mm
  if exclude is not None:
    ok &= ~np.asarray(exclude, bool)
  side_mm = roi_mm
  while side_mm >= min_roi_mm - 1e-9:
    n = int(round(side_mm / pixel_spacing_mm))
    h, w = ok.shape
    # Integral image of the admissible region: a tile is usable when full.
    integral = np.pad(ok, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    tiles = []
    for r in range(0, h - n + 1, n // 2):
      for c in range(0, w - n + 1, n // 2):
        count = (integral[r + n, c + n] - integral[r, c + n]
                 - integral[r + n, c] + integral[r, c])
        if count == n * n:
          tiles.append((float(inside[r + n // 2, c + n // 2]), r, c))
    if tiles:
      break
    side_mm /= 2
  else:
    raise ValueError(
        f"no {min_roi_mm} mm ROI fits {skin_margin_mm} mm inside the breast")
  tiles.sort(reverse=True)
  window = np.outer(np.hanning(n), np.hanning(n))
  power = 0.0
  for _, r, c in tiles[:max_rois]:
    roi = x[r:r + n, c:c + n]
    roi = (roi - roi.mean()) * window
    power = power + np.abs(np.fft.rfft2(roi)) ** 2
  beta = _spectrum_beta(power, (n, n), pixel_spacing_mm, f_range, bins=11)
  return beta, min(len(tiles), max_rois), float(n * pixel_spacing_mm)
