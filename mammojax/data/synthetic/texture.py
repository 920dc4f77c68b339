"""Parenchyma texture: a Gaussian power-law field and its measurement.

The parenchyma is a Gaussian field with P(f) ~ 1 / f^beta (amplitude filter
f^(-beta/2) on white noise); `measure_beta` recovers beta from a region of a
rendered image (see `beta_roi_image`).
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
  fy = np.fft.fftfreq(h, d=pixel_spacing_mm)
  fx = np.fft.rfftfreq(w, d=pixel_spacing_mm)
  f = np.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
  lo, hi = f_range
  sel = (f >= lo) & (f <= hi)
  if sel.sum() < 8:
    raise ValueError(
        f"image {x.shape} at {pixel_spacing_mm} mm has too few frequencies "
        f"in {f_range} cycles/mm")
  # Radial average in log-spaced bins so every octave weighs the same.
  edges = np.geomspace(lo, hi, 16)
  idx = np.digitize(f[sel], edges) - 1
  logf, logp = [], []
  for b in range(len(edges) - 1):
    m = idx == b
    if m.any():
      logf.append(np.log(f[sel][m].mean()))
      logp.append(np.log(power[sel][m].mean()))
  slope = np.polyfit(logf, logp, 1)[0]
  return float(-slope)
