"""Mass rendering: polar outlines with BI-RADS shapes and margins.

Shapes (round, oval, lobulated, irregular) are a polar boundary r(theta);
margins (circumscribed, obscured, microlobulated, ill_defined, spiculated)
set the edge blur, overlying tissue or spicules.
"""

import math

import numpy as np
from scipy import ndimage

from mammojax.data.synthetic.config import _rng
from mammojax.data.synthetic.geometry import _Geometry
from mammojax.data.synthetic.planning import _MassPlan


def _mass_radius(shape: str, margin: str, rng, radius: float):
  """Polar boundary r(theta) of a mass (mm) as a vectorised function."""
  harmonics = []
  if shape == "oval":
    ratio = rng.uniform(0.55, 0.8)
    rot = rng.uniform(0, np.pi)
  else:
    ratio, rot = 1.0, 0.0
  if shape == "lobulated":
    k = rng.integers(3, 6)
    harmonics.append((k, rng.uniform(0.1, 0.18), rng.uniform(0, 2 * np.pi)))
  if shape == "irregular":
    for k in range(2, 7):
      harmonics.append((k, rng.uniform(0.03, 0.12) * 2.5 / k,
                        rng.uniform(0, 2 * np.pi)))
  if margin == "microlobulated":
    k = rng.integers(12, 20)
    harmonics.append((k, rng.uniform(0.03, 0.05), rng.uniform(0, 2 * np.pi)))

  def r_of(theta):
    """Boundary radius (mm) at angles theta (rad)."""
    c, s = np.cos(theta - rot), np.sin(theta - rot)
    r = radius * ratio / np.sqrt((ratio * c) ** 2 + s ** 2)
    for k, a, ph in harmonics:
      r = r * (1 + a * np.cos(k * theta + ph))
    return r
  return r_of


def _render_mass(config, plan: _MassPlan, geo: _Geometry, xy_mm, field):
  """Adds a mass to `field` (A, full res); returns its contour xy (mm)."""
  rng = _rng(plan.seed, 0)
  r_of = _mass_radius(plan.shape, plan.margin, rng, plan.radius)
  s = geo.spacing
  reach = plan.radius * (2.6 if plan.margin == "spiculated" else 1.6) + 8.0
  c0 = max(int((xy_mm[0] - reach) / s), 0)
  c1 = min(int((xy_mm[0] + reach) / s) + 1, geo.cols)
  r0 = max(int((xy_mm[1] - reach) / s), 0)
  r1 = min(int((xy_mm[1] + reach) / s) + 1, geo.rows)
  x = np.arange(c0, c1) * s - xy_mm[0]
  y = np.arange(r0, r1) * s - xy_mm[1]
  rho = np.hypot(x[None, :], y[:, None])
  theta = np.arctan2(y[:, None], x[None, :])
  rb = r_of(theta)
  prof = np.sqrt(np.clip(1.0 - (rho / rb) ** 2, 0.0, None)) * 2 * rb
  edge = {"circumscribed": 0.15, "obscured": 0.3, "microlobulated": 0.2,
          "ill_defined": rng.uniform(1.2, 2.2), "spiculated": 0.5}
  prof = ndimage.gaussian_filter(prof, edge[plan.margin] / s)
  if plan.margin == "obscured":
    # Overlying fibroglandular tissue hides part of the margin.
    blob = ndimage.gaussian_filter(rng.standard_normal(prof.shape),
                                   1.5 / s) * (1.5 / s)
    window = np.clip(np.cos(theta - rng.uniform(0, 2 * np.pi)), 0, None)
    ring = np.exp(-((rho - rb) / (0.4 * plan.radius)) ** 2)
    prof += 0.6 * plan.radius * np.clip(blob, 0, None) * window * ring
  if plan.margin == "spiculated":
    for _ in range(rng.integers(8, 20)):
      ang = rng.uniform(0, 2 * np.pi)
      start = float(r_of(np.array(ang))) * 0.8
      length = rng.uniform(0.5, 1.5) * plan.radius
      width = rng.uniform(0.15, 0.4)
      a = np.array([start * math.cos(ang), start * math.sin(ang)])
      b = a + length * np.array([math.cos(ang), math.sin(ang)])
      dx, dy = b - a
      tt = np.clip(((x[None, :] - a[0]) * dx + (y[:, None] - a[1]) * dy)
                   / (dx * dx + dy * dy), 0, 1)
      dd = np.hypot(x[None, :] - a[0] - tt * dx, y[:, None] - a[1] - tt * dy)
      prof += 3.0 * (1 - tt) * np.exp(-(dd / width) ** 2)
  field[r0:r1, c0:c1] += (config.mass_attenuation_per_mm * prof).astype(
      np.float32)
  ang = np.linspace(0, 2 * np.pi, 72, endpoint=False)
  rr = r_of(ang)
  return np.stack([xy_mm[0] + rr * np.cos(ang),
                   xy_mm[1] + rr * np.sin(ang)], 1)
