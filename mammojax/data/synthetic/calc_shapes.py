"""Calcification shapes per BI-RADS morphology and their rendering.

Shapes are drawn in mm around their centre (`_calc_shape`), rendered with
supersampling as path-length through the calcification with partial volume
(`_render_calc`); `trace_contour` gives the ordered boundary of a rendered
mask, as stored in the annotation's `contour_xy`.
"""

import dataclasses
import math
from typing import Callable

import numpy as np
from scipy import ndimage

from mammojax.data.synthetic.config import MORPHOLOGIES


@dataclasses.dataclass
class _CalcShape:
  """A calcification shape: `inside(x, y)` over mm offsets from its centre."""

  inside: Callable[[np.ndarray, np.ndarray], np.ndarray]
  half_extent: float
  blur: float
  contrast: float
  diameter: float  # greatest dimension, mm


def _rotate(x, y, theta):
  """Rotates offsets by -theta (into the shape's own frame)."""
  c, s = math.cos(theta), math.sin(theta)
  return c * x + s * y, -s * x + c * y


def _feret(points: np.ndarray) -> float:
  """Greatest dimension of a 2-D point set [n, 2] (64 directions)."""
  angles = np.linspace(0, np.pi, 64, endpoint=False)
  dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)
  proj = points @ dirs.T
  return float((proj.max(0) - proj.min(0)).max())


def _min_width(points: np.ndarray) -> float:
  """Smallest extent of a 2-D point set [n, 2] over 64 directions."""
  angles = np.linspace(0, np.pi, 64, endpoint=False)
  proj = points @ np.stack([np.cos(angles), np.sin(angles)], 0)
  return float((proj.max(0) - proj.min(0)).min())


def _point_in_polygon(x, y, poly: np.ndarray) -> np.ndarray:
  """Crossing-number test of points against a closed polygon [k, 2]."""
  inside = np.zeros(np.broadcast(x, y).shape, bool)
  k = len(poly)
  for i in range(k):
    x1, y1 = poly[i]
    x2, y2 = poly[(i + 1) % k]
    crosses = (y1 > y) != (y2 > y)
    xint = x1 + (y - y1) * (x2 - x1) / (y2 - y1 + 1e-12)
    inside ^= crosses & (x < xint)
  return inside


def _segment_distance(x, y, segments: np.ndarray) -> np.ndarray:
  """Distance from points to the nearest of segments [k, 2, 2]."""
  best = None
  for (ax, ay), (bx, by) in segments:
    dx, dy = bx - ax, by - ay
    t = np.clip(((x - ax) * dx + (y - ay) * dy) / (dx * dx + dy * dy + 1e-12),
                0.0, 1.0)
    d = np.hypot(x - ax - t * dx, y - ay - t * dy)
    best = d if best is None else np.minimum(best, d)
  return best


def _calc_shape(
    morphology: str, rng: np.random.Generator, theta: float, base: float
) -> _CalcShape:
  """Draws one calcification shape (sizes from `rng`, angle `theta`).

  `base` in [0, 1] is a cluster-level size draw (punctate calcifications of
  one cluster have similar sizes). Greatest dimensions follow BI-RADS:
  punctate round < 0.5 mm; amorphous 0.1-0.3 mm, faint and blurred; coarse
  heterogeneous irregular 0.5-1 mm; fine pleomorphic irregular 0.12-0.48 mm;
  fine linear branching 0.08-0.2 mm wide, 0.6-1.8 mm long.
  """
  jitter = rng.normal(0.0, 0.35)
  theta = theta + jitter
  if morphology == "punctate":
    d = (0.18 + 0.2 * base) * rng.uniform(0.88, 1.12)
    a, b = d / 2, d / 2 * rng.uniform(0.87, 1.0)
    inside = lambda x, y: (lambda u, v: (u / a) ** 2 + (v / b) ** 2 <= 1.0)(
        *_rotate(x, y, theta))
    return _CalcShape(inside, a, 0.0, 1.0, 2 * a)
  if morphology == "amorphous":
    d = rng.uniform(0.1, 0.3)
    a, b = d / 2, d / 2 * rng.uniform(0.7, 1.0)
    inside = lambda x, y: (lambda u, v: (u / a) ** 2 + (v / b) ** 2 <= 1.0)(
        *_rotate(x, y, theta))
    return _CalcShape(inside, a, rng.uniform(0.04, 0.07), 0.9, 2 * a)
  if morphology == "coarse_heterogeneous":
    k = rng.integers(3, 7)
    centres = rng.normal(0.0, 0.12, (k, 2))
    radii = rng.uniform(0.12, 0.3, k)
    target = rng.uniform(0.55, 0.95)
    circle = np.linspace(0, 2 * np.pi, 32)
    circle = np.stack([np.cos(circle), np.sin(circle)], 1)
    pts = np.concatenate([c + r * circle for c, r in zip(centres, radii)])
    scale = target / _feret(pts)
    centres, radii = centres * scale, radii * scale
    half = float(np.max(np.hypot(*centres.T) + radii))

    def inside(x, y):
      """True inside the shape."""
      u, v = _rotate(x, y, theta)
      out = np.zeros(np.broadcast(u, v).shape, bool)
      for (cx, cy), r in zip(centres, radii):
        out |= (u - cx) ** 2 + (v - cy) ** 2 <= r * r
      return out
    return _CalcShape(inside, half, 0.0, 1.0, _feret(pts * scale))
  if morphology == "fine_pleomorphic":
    k = rng.integers(3, 8)
    angles = np.sort(rng.uniform(0, 2 * np.pi, k))
    radii = rng.uniform(0.35, 1.0, k)
    poly = np.stack([radii * np.cos(angles), radii * np.sin(angles)], 1)
    if _min_width(poly) < 0.35 * _feret(poly):  # no slivers
      poly = np.array([[0.5, 0.0], [-0.4, 0.35], [-0.3, -0.4]])
    target = math.exp(rng.uniform(math.log(0.12), math.log(0.48)))
    poly = poly * (target / _feret(poly))
    half = float(np.hypot(*poly.T).max())

    def inside(x, y):
      """True inside the shape."""
      u, v = _rotate(x, y, theta)
      return _point_in_polygon(u, v, poly)
    return _CalcShape(inside, half, 0.0, 1.1, _feret(poly))
  if morphology == "fine_linear_branching":
    width = rng.uniform(0.08, 0.2)
    length = rng.uniform(0.6, 1.8)
    segs = [((-length / 2, 0.0), (length / 2, 0.0))]
    if rng.random() < 0.5:
      s = rng.uniform(-0.3, 0.3) * length
      ang = rng.choice([-1, 1]) * rng.uniform(0.45, 0.8)
      bl = rng.uniform(0.3, 0.6) * length
      segs.append(((s, 0.0), (s + bl * math.cos(ang), bl * math.sin(ang))))
    segs = np.asarray(segs)
    half = float(np.abs(segs).max()) + width

    def inside(x, y):
      """True inside the shape."""
      u, v = _rotate(x, y, theta)
      return _segment_distance(u, v, segs) <= width / 2
    ends = segs.reshape(-1, 2)
    return _CalcShape(inside, half, 0.0, 1.3, _feret(ends) + width)
  raise ValueError(f"unknown morphology {morphology!r}; known: "
                   f"{list(MORPHOLOGIES)}")


def _render_calc(shape: _CalcShape, cx: float, cy: float, spacing: float,
                 q: int):
  """Renders a shape at pixel (cx, cy) with q x q supersampling.

  Returns:
    (row0, col0, path [n, n] mm of calcification per pixel, mask [n, n],
    greatest dimension of the shape in mm).
  """
  sub_mm = spacing / q
  half = int(math.ceil((shape.half_extent + 3 * shape.blur) / spacing)) + 2
  n = 2 * half + 1
  r0, c0 = int(round(cy)) - half, int(round(cx)) - half
  offs = (np.arange(n * q) + 0.5) / q - 0.5
  xs = ((c0 + offs) - cx) * spacing
  ys = ((r0 + offs) - cy) * spacing
  solid = shape.inside(xs[None, :], ys[:, None])
  if not solid.any():
    solid[n * q // 2, n * q // 2] = True
  edge = ndimage.distance_transform_edt(solid) * sub_mm
  radius = edge.max()
  path = 2.0 * np.sqrt(np.clip(edge * (2 * radius - edge), 0.0, None))
  if shape.blur > 0:
    path = ndimage.gaussian_filter(path, shape.blur / sub_mm)
  path_px = path.reshape(n, q, n, q).mean(axis=(1, 3))
  cover = solid.reshape(n, q, n, q).mean(axis=(1, 3))
  mask = cover >= 0.3
  if not mask.any():
    mask[np.unravel_index(np.argmax(cover), cover.shape)] = True
  labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
  if count > 1:
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    mask = labels == 1 + int(np.argmax(sizes))
  mask = ndimage.binary_fill_holes(mask)
  return r0, c0, path_px, mask, shape.diameter


def trace_contour(mask: np.ndarray) -> np.ndarray:
  """Ordered outer boundary pixels of a connected mask, [k, 2] (row, col).

  Moore-neighbour tracing, clockwise in image coordinates, as OpenCV's
  `findContours(..., CHAIN_APPROX_NONE)` returns them (pixel centres).
  """
  pad = np.pad(np.asarray(mask, bool), 1)
  nz = np.argwhere(pad)
  if len(nz) == 0:
    return np.zeros((0, 2), np.int64)
  start = tuple(nz[0])
  # Neighbours clockwise starting west: W, NW, N, NE, E, SE, S, SW.
  offsets = [(0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0),
             (1, -1)]
  contour = [start]
  cur, back = start, 0  # we arrived "from" the west (background)
  first_move = None
  for _ in range(4 * pad.size):
    moved = False
    for k in range(1, 9):
      d = (back + k) % 8
      nxt = (cur[0] + offsets[d][0], cur[1] + offsets[d][1])
      if pad[nxt]:
        prev = (cur[0] + offsets[(d - 1) % 8][0],
                cur[1] + offsets[(d - 1) % 8][1])
        back = offsets.index((prev[0] - nxt[0], prev[1] - nxt[1]))
        if first_move is None:
          first_move = (nxt, back)
        elif cur == start and (nxt, back) == first_move:
          return np.asarray(contour[:-1], np.int64) - 1
        cur = nxt
        contour.append(cur)
        moved = True
        break
    if not moved:  # isolated pixel
      return np.asarray(contour, np.int64) - 1
  return np.asarray(contour, np.int64) - 1
