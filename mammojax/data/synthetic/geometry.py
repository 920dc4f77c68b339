"""Breast geometry of one view (laterality-normalised frame, mm).

x = column, y = row, chest wall at x = 0. The outline is a superellipse-like
profile with a low-frequency wobble and a nipple bump; MLO views add a
pectoral-muscle triangle at the upper chest-wall corner. `_Geometry.project`
maps 3-D breast points into a view, so CC and MLO show the same findings.
"""

import dataclasses
import math
from typing import Optional

import numpy as np

from mammojax.data.synthetic.config import _OUTLINE
from mammojax.data.synthetic.config import _SIZE
from mammojax.data.synthetic.config import SyntheticConfig
from mammojax.data.synthetic.config import _rng

_VIEW_CODE = {"CC": 0, "MLO": 1}


@dataclasses.dataclass
class _Geometry:
  """Outline, nipple and pectoral muscle of one view."""

  view: str
  spacing: float
  rows: int
  cols: int
  height: float
  width: float
  ys: np.ndarray  # [k] mm
  xb: np.ndarray  # [k] breast boundary x at ys
  depth: float
  nipple: tuple[float, float]
  nipple_r: float
  half_height: float
  pect: Optional[tuple[float, float, float]]  # (width, height, bow)

  def boundary(self, y: np.ndarray) -> np.ndarray:
    """Breast boundary x (mm) at rows y (mm)."""
    return np.interp(y, self.ys, self.xb)

  def pect_x(self, y: np.ndarray) -> np.ndarray:
    """Pectoral muscle edge x (mm) at rows y (mm); 0 below the muscle."""
    if self.pect is None:
      return np.zeros_like(np.asarray(y, np.float64))
    pw, ph, bow = self.pect
    t = np.clip(np.asarray(y, np.float64) / ph, 0.0, 1.0)
    return pw * (1.0 - t) * (1.0 + bow * np.sin(np.pi * t))

  def inside(self, x, y, margin: float) -> np.ndarray:
    """True where (x, y) mm lies `margin` inside the breast, off the muscle."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    lim = np.minimum.reduce([self.boundary(y - margin), self.boundary(y),
                             self.boundary(y + margin)]) - margin
    ok = (x >= 3.0) & (x <= lim) & (y >= margin) & (y <= self.height - margin)
    if self.pect is not None:
      ok &= x >= self.pect_x(y) + margin
    return ok

  def project(self, p3: np.ndarray) -> np.ndarray:
    """Projects breast points (depth u, v, w; mm) to view xy mm, [n, 2]."""
    p3 = np.atleast_2d(p3)
    u, v, w = p3[:, 0], p3[:, 1], p3[:, 2]
    x = self.nipple[0] - u
    if self.view == "CC":
      y = self.nipple[1] + v
    else:
      y = self.nipple[1] + math.sqrt(0.5) * (v + w)
    return np.stack([x, y], axis=-1)


def _view_geometry(
    config: SyntheticConfig, seed: int, patient: int, view: str,
    spacing: float,
) -> _Geometry:
  """Breast outline, nipple and pectoral muscle of one view."""
  scale = config.breast_scale
  height, width = config.field_height_mm * scale, config.field_width_mm * scale
  rows, cols = int(round(height / spacing)), int(round(width / spacing))
  size = _rng(seed, _SIZE, patient)
  depth_frac, height_frac = size.uniform(0.7, 0.86), size.uniform(0.36, 0.44)
  rng = _rng(seed, _OUTLINE, patient, _VIEW_CODE[view])
  if view == "CC":
    yc = height * rng.uniform(0.46, 0.54)
    b_up = b_down = height * min(height_frac, 0.42)
    depth = width * depth_frac * rng.uniform(0.97, 1.03)
  else:
    yc = height * rng.uniform(0.5, 0.58)
    b_up = yc / rng.uniform(0.72, 0.85)
    b_down = (height - yc) * rng.uniform(0.72, 0.88)
    depth = width * min(0.9, depth_frac * rng.uniform(1.0, 1.06))
  p = rng.uniform(1.9, 2.5)
  ys = np.arange(0.0, height + 0.5, 0.5)
  t = (ys - yc) / np.where(ys < yc, b_up, b_down)
  xb = depth * np.clip(1.0 - np.abs(t) ** p, 0.0, None) ** (1.0 / p)
  wobble = np.ones_like(ys)
  for k in (2, 3, 5):
    wobble += rng.uniform(0.004, 0.012) * np.sin(
        2 * np.pi * k * ys / height + rng.uniform(0, 2 * np.pi))
  xb *= wobble
  i = int(np.argmax(xb))
  nipple_r = rng.uniform(2.5, 4.0) * math.sqrt(scale)
  pect = None
  if view == "MLO":
    pw = min(width * rng.uniform(0.22, 0.36), 0.75 * xb[0])
    pect = (pw, height * rng.uniform(0.38, 0.6), rng.uniform(-0.05, 0.15))
  return _Geometry(
      view=view, spacing=spacing, rows=rows, cols=cols, height=height,
      width=width, ys=ys, xb=xb, depth=float(xb[i]),
      nipple=(float(xb[i] + 0.5 * nipple_r), float(ys[i])),
      nipple_r=nipple_r, half_height=float(min(b_up, b_down)), pect=pect)
