"""Findings plan of one breast, shared by all its views.

`_plan_breast` draws the acquisition (pixel spacing, bits, photometric, VOI
function), the tissue (ACR density, beta, thickness) and the findings:
calcification clusters placed per BI-RADS distribution in 3-D breast
coordinates, and masses. Pathology follows a logistic risk model of the
dominant morphology + distribution (clusters) or of shape + margin (masses);
the subtype of a malignant breast is weakly tied to its appearance
(spiculated masses tilt towards luminal A, fine pleomorphic / linear
calcifications towards HER2, round / oval masses towards triple negative).

Clusters (`SyntheticConfig.calc_statistics`): by default ("cbis_ddsm") a
cluster's dominant morphology, its other morphologies and its distribution
are one real CBIS-DDSM case drawn by `statistics.draw_case` (P(case |
dominant) as in the CSVs, the dominant's marginal configurable); each other
morphology labels a spatially coherent group of neighbours
(`_coherent_groups`: a seed calcification and its nearest neighbours, a
`minority_fraction` share of the members), as MT-GCN's premise reads (one
morphology's calcifications lie near each other); the cluster's subtlety
1-5 and the clusters per breast have the real frequencies. "independent"
is the generator before: distribution and dominant drawn independently,
mixed-in morphologies scattered uniformly, one cluster per image.
"""

import dataclasses
import functools
import math
from typing import Optional

import numpy as np

from mammojax.data.synthetic.calc_shapes import _feret
from mammojax.data.synthetic.config import DENSITIES
from mammojax.data.synthetic.config import DISTRIBUTIONS
from mammojax.data.synthetic.config import MASS_MARGINS
from mammojax.data.synthetic.config import MASS_SHAPES
from mammojax.data.synthetic.config import MORPHOLOGIES
from mammojax.data.synthetic.config import SUBTYPES
from mammojax.data.synthetic.config import _FINDINGS
from mammojax.data.synthetic.config import _PATIENT
from mammojax.data.synthetic.config import SyntheticConfig
from mammojax.data.synthetic.config import _rng
from mammojax.data.synthetic import statistics
from mammojax.data.synthetic.geometry import _Geometry
from mammojax.data.synthetic.geometry import _view_geometry


@dataclasses.dataclass
class _CalcPlan:
  """One planned calcification (3-D breast coordinates)."""

  id: int
  morphology: str
  p3: np.ndarray
  shape_seed: int


@dataclasses.dataclass
class _ClusterPlan:
  """One planned cluster."""

  cluster_id: int
  distribution: str
  dominant: str
  pathology: str
  calcs: list
  axis3: Optional[np.ndarray] = None  # linear / segmental axis (unit)
  apex3: Optional[np.ndarray] = None  # segmental apex
  triangles: Optional[dict] = None  # segmental: view -> [3, 2] xy mm
  size_base: float = 0.5
  subtlety: Optional[int] = None  # CBIS-DDSM rating 1 (subtle) .. 5


@dataclasses.dataclass
class _MassPlan:
  """One planned mass."""

  id: int
  p3: np.ndarray
  shape: str
  margin: str
  pathology: str
  radius: float
  seed: int


@dataclasses.dataclass
class _BreastPlan:
  """Everything shared by the views of one breast."""

  spacing: float
  bits: int
  monochrome1: bool
  sigmoid: bool
  density: str
  beta: float
  thickness: float
  clusters: list
  masses: list
  pathology: str
  subtype: Optional[str]


def _sigmoid(x: float) -> float:
  """Logistic function."""
  return 1.0 / (1.0 + math.exp(-x))


_MORPH_RISK = {"punctate": -2.0, "amorphous": 0.0,
               "coarse_heterogeneous": -0.5, "fine_pleomorphic": 1.0,
               "fine_linear_branching": 2.0}
_DIST_RISK = {"diffuse": -2.0, "regional": -0.5, "grouped": 0.3,
              "linear": 1.0, "segmental": 1.0}
_SHAPE_RISK = {"round": -1.2, "oval": -1.0, "lobulated": 0.0,
               "irregular": 1.5}
_MARGIN_RISK = {"circumscribed": -1.5, "obscured": 0.0,
                "microlobulated": 0.8, "ill_defined": 0.8, "spiculated": 2.0}


def _unit(v: np.ndarray) -> np.ndarray:
  """`v` scaled to unit length."""
  return v / np.linalg.norm(v)


def _perp_basis(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Two unit vectors perpendicular to unit `d` and to each other."""
  a = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([0, 1.0, 0])
  e1 = _unit(np.cross(d, a))
  return e1, np.cross(d, e1)


def _in_ball(rng: np.random.Generator) -> np.ndarray:
  """A uniform point in the unit ball, [3]."""
  while True:
    p = rng.uniform(-1, 1, 3)
    if p @ p <= 1.0:
      return p


def _cluster_sampler(dist: str, rng, geos, config):
  """Returns (draw() -> 3-D point, extra geometry dict) for a distribution."""
  depth = min(g.depth for g in geos)
  hh = min(g.half_height for g in geos)
  centre = np.array([rng.uniform(0.15, 0.8) * depth,
                     rng.uniform(-0.5, 0.5) * hh,
                     rng.uniform(-0.5, 0.5) * hh])
  if dist == "grouped":
    r = rng.uniform(*config.grouped_radius_mm)
    axes = r * np.array([1.0, rng.uniform(0.6, 1), rng.uniform(0.6, 1)])
    return (lambda: centre + axes * _in_ball(rng)), {}
  if dist == "regional":
    axes = np.array([rng.uniform(13, 22), rng.uniform(11, 20),
                     rng.uniform(11, 20)])
    return (lambda: centre + axes * _in_ball(rng)), {}
  if dist == "diffuse":
    return (lambda: np.array([rng.uniform(2, depth), rng.uniform(-hh, hh),
                              rng.uniform(-hh, hh)])), {}
  if dist == "linear":
    d = _unit(np.array([1.0, rng.normal(0, 0.3), rng.normal(0, 0.3)]))
    e1, e2 = _perp_basis(d)
    length = rng.uniform(12.0, max(12.5, min(35.0, 0.6 * depth)))
    bow = rng.uniform(-1.0, 1.0)

    def draw():
      """One candidate point, [3] mm."""
      t = rng.uniform(-0.5, 0.5) * length
      off = bow * (1 - (2 * t / length) ** 2) + rng.normal(0, 0.25)
      return centre + t * d + off * e1 + rng.normal(0, 0.25) * e2
    return draw, {"axis3": d}
  if dist == "segmental":
    apex = np.array([rng.uniform(0.06, 0.2) * depth, rng.normal(0, 3),
                     rng.normal(0, 3)])
    d = _unit(np.array([1.0, rng.normal(0, 0.06), rng.normal(0, 0.06)]))
    alpha = math.radians(rng.uniform(12, 20))
    length = float(np.clip(rng.uniform(0.4, 0.65) * depth, 15.0, 55.0))
    e1, e2 = _perp_basis(d)
    ducts = []
    for _ in range(rng.integers(3, 7)):
      phi, az = rng.uniform(0, 0.85 * alpha), rng.uniform(0, 2 * np.pi)
      ducts.append(math.cos(phi) * d + math.sin(phi) * (
          math.cos(az) * e1 + math.sin(az) * e2))

    def draw():
      """One candidate point, [3] mm."""
      ray = ducts[rng.integers(len(ducts))]
      s = rng.uniform(0.2, 1.0) * length
      return apex + s * ray + rng.normal(0, 0.4, 3)
    return draw, {"axis3": d, "apex3": apex, "alpha": alpha,
                  "length": length}
  raise ValueError(f"unknown distribution {dist!r}; known: "
                   f"{list(DISTRIBUTIONS)}")


def _segment_triangle(geo: _Geometry, apex3, axis3, alpha, length):
  """The projected segmental wedge of one view, [3, 2] xy mm (apex first)."""
  a2 = geo.project(apex3)[0]
  e2 = geo.project(apex3 + length * axis3)[0]
  axis = e2 - a2
  l2 = float(np.linalg.norm(axis)) + 1.0
  axis = axis / np.linalg.norm(axis)
  perp = np.array([-axis[1], axis[0]])
  half = l2 * math.tan(alpha + math.radians(2.0))
  base = a2 + l2 * axis
  return np.stack([a2, base + half * perp, base - half * perp])


def _in_triangle(p: np.ndarray, tri: np.ndarray) -> bool:
  """True if 2-D point p lies in triangle tri [3, 2]."""
  s = []
  for i in range(3):
    a, b = tri[i], tri[(i + 1) % 3]
    s.append((b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0]))
  return all(v >= 0 for v in s) or all(v <= 0 for v in s)


def _check_statistics(config) -> None:
  """Raises a ValueError naming the config key when it is not known."""
  if config.calc_statistics != "independent":
    statistics.load_statistics(config.calc_statistics)


def _coherent_groups(points, minority, rng, fraction) -> list:
  """Morphology per point: each minority one on a group of neighbours.

  Each morphology of `minority` labels a `fraction`-drawn share (at least
  one point, always leaving one dominant point) of the cluster: a random
  still-dominant seed point and its nearest still-dominant neighbours (3-D
  distance), so the minority calcifications lie together.
  """
  n = len(points)
  labels = [None] * n
  pts = np.asarray(points)
  for morph in minority:
    free = [i for i in range(n) if labels[i] is None]
    if len(free) < 2:
      break
    k = min(max(1, int(round(rng.uniform(*fraction) * n))), len(free) - 1)
    seed = free[int(rng.integers(len(free)))]
    d2 = np.sum((pts[free] - pts[seed]) ** 2, 1)
    for j in np.argsort(d2, kind="stable")[:k]:
      labels[free[j]] = morph
  return labels


def _plan_cluster(config, rng, geos, cluster_id: int, first_id: int):
  """Plans one calcification cluster visible in all `geos` views."""
  independent = config.calc_statistics == "independent"
  subtlety, minority = None, ()
  if independent:
    dist = DISTRIBUTIONS[rng.choice(len(DISTRIBUTIONS),
                                    p=config.distribution_probs)]
    dominant = MORPHOLOGIES[rng.choice(len(MORPHOLOGIES),
                                       p=config.morphology_probs)]
  else:
    dominant, minority, dist = statistics.draw_case(
        rng, config.calc_statistics, config.dominant_morphology_probs)
    subtlety = statistics.draw_subtlety(rng, config.calc_statistics)
  lo, hi = config.calcification_counts[DISTRIBUTIONS.index(dist)]
  hi = max(min(hi, config.max_calcifications), 1)
  lo = min(lo, hi)
  target = int(rng.integers(lo, hi + 1))
  minimum = min(lo, 5)
  sep2 = config.min_calc_separation_mm ** 2
  best = None
  for _ in range(60):
    draw, extra = _cluster_sampler(dist, rng, geos, config)
    tris = None
    if dist == "segmental":
      tris = {g.view: _segment_triangle(g, extra["apex3"], extra["axis3"],
                                        extra["alpha"], extra["length"])
              for g in geos}
    points, flat = [], [[] for _ in geos]
    for _ in range(target * 40):
      if len(points) == target:
        break
      p3 = draw()
      ok = True
      xys = [g.project(p3)[0] for g in geos]
      for g, xy, prev in zip(geos, xys, flat):
        if not g.inside(xy[0], xy[1], 2.5):
          ok = False
        elif prev and (np.sum((np.asarray(prev) - xy) ** 2, 1)
                       < sep2).any():
          ok = False
        elif tris is not None and not _in_triangle(xy, tris[g.view]):
          ok = False
        if not ok:
          break
      if ok:
        points.append(p3)
        for prev, xy in zip(flat, xys):
          prev.append(xy)
    if len(points) < minimum:
      continue
    if dist == "regional" and any(
        _feret(np.asarray(prev)) <= config.regional_min_extent_mm
        for prev in flat):
      continue
    best = (points, extra, tris)
    if len(points) >= min(target, lo):
      break
  if best is None:
    raise RuntimeError(f"could not place a {dist} cluster in the breast; "
                       "breast_scale too small?")
  points, extra, tris = best
  calcs = []
  if independent:
    for k, p3 in enumerate(points):
      morph = dominant
      if rng.random() < config.mixed_morphology_fraction:
        others = [m for m in MORPHOLOGIES if m != dominant]
        morph = others[rng.integers(len(others))]
      calcs.append(_CalcPlan(first_id + k, morph, p3,
                             int(rng.integers(2**31))))
  else:
    labels = _coherent_groups(points, minority, rng, config.minority_fraction)
    for k, (p3, morph) in enumerate(zip(points, labels)):
      calcs.append(_CalcPlan(first_id + k, morph or dominant, p3,
                             int(rng.integers(2**31))))
  risk = _MORPH_RISK[dominant] + _DIST_RISK[dist]
  pathology = "malignant" if rng.random() < _sigmoid(risk) else "benign"
  return _ClusterPlan(cluster_id, dist, dominant, pathology, calcs,
                      axis3=extra.get("axis3"), apex3=extra.get("apex3"),
                      triangles=tris, size_base=float(rng.random()),
                      subtlety=subtlety)


def _cluster_count(config, rng) -> int:
  """Clusters of one breast: `clusters_per_image`, or drawn when None."""
  if config.clusters_per_image is not None:
    return int(config.clusters_per_image)
  if config.calc_statistics == "independent":
    return 1
  return statistics.draw_cluster_count(rng, config.calc_statistics,
                                       config.max_clusters_per_image)


def _plan_mass(config, rng, geos, mass_id: int):
  """Plans one mass visible in all views, or None if it does not fit."""
  shape = MASS_SHAPES[rng.integers(len(MASS_SHAPES))]
  margin = MASS_MARGINS[rng.integers(len(MASS_MARGINS))]
  radius = rng.uniform(*config.mass_diameter_mm) / 2 * config.breast_scale
  depth = min(g.depth for g in geos)
  hh = min(g.half_height for g in geos)
  for _ in range(100):
    p3 = np.array([rng.uniform(0.2, 0.8) * depth, rng.uniform(-0.5, 0.5) * hh,
                   rng.uniform(-0.5, 0.5) * hh])
    if all(g.inside(*g.project(p3)[0], radius + 3.0) for g in geos):
      risk = _SHAPE_RISK[shape] + _MARGIN_RISK[margin]
      pathology = "malignant" if rng.random() < _sigmoid(risk) else "benign"
      return _MassPlan(mass_id, p3, shape, margin, pathology, radius,
                       int(rng.integers(2**31)))
  return None


def _subtype(config, rng, clusters, masses) -> str:
  """Molecular subtype of a malignant breast, weakly tied to appearance."""
  w = np.asarray(config.subtype_probs, np.float64).copy()
  for m in masses:
    if m.pathology == "malignant" and m.margin == "spiculated":
      w[SUBTYPES.index("luminal_a")] *= 1.5
    if m.pathology == "malignant" and m.shape in ("round", "oval"):
      w[SUBTYPES.index("triple_negative")] *= 1.8
  for c in clusters:
    if c.dominant in ("fine_pleomorphic", "fine_linear_branching"):
      w[SUBTYPES.index("her2_enriched")] *= 1.8
  return SUBTYPES[rng.choice(len(SUBTYPES), p=w / w.sum())]


@functools.lru_cache(maxsize=8)
def _plan_breast(config: SyntheticConfig, seed: int, patient: int,
                 views: tuple[str, ...]) -> _BreastPlan:
  """Acquisition, tissue and findings of one breast (all its views)."""
  rng = _rng(seed, _PATIENT, patient, 1)
  spacing = float(rng.choice(config.pixel_spacings_mm))
  bits = int(rng.choice(config.bits_stored))
  mono1 = bool(rng.random() < config.monochrome1_probability)
  sigmoid = bool(rng.random() < config.sigmoid_probability)
  density = DENSITIES[rng.choice(len(DENSITIES), p=config.density_probs)]
  beta = float(np.clip(rng.normal(config.beta_mean, config.beta_std),
                       *config.beta_range))
  thickness = float(rng.uniform(*config.compressed_thickness_mm))
  geos = [_view_geometry(config, seed, patient, v, spacing) for v in views]
  frng = _rng(seed, _FINDINGS, patient)
  clusters, next_id = [], 0
  _check_statistics(config)
  for k in range(_cluster_count(config, frng)):
    cluster = _plan_cluster(config, frng, geos, k, next_id)
    next_id += len(cluster.calcs)
    clusters.append(cluster)
  masses = []
  if frng.random() < config.mass_probability:
    mass = _plan_mass(config, frng, geos, 0)
    if mass is not None:
      masses.append(mass)
  malignant = any(f.pathology == "malignant" for f in clusters + masses)
  subtype = _subtype(config, frng, clusters, masses) if malignant else None
  return _BreastPlan(spacing, bits, mono1, sigmoid, density, beta, thickness,
                     clusters, masses, "malignant" if malignant else "benign",
                     subtype)


def planned_clusters(config: SyntheticConfig, num_images: int,
                     seed: int = 0, progress: bool = False
                     ) -> list[list[dict]]:
  """The clusters of the first `num_images` images, planned, not rendered.

  Returns, per image of `layout.plan_dataset`, one dict per cluster:
  `distribution`, `dominant`, `morphologies` (distinct, of its
  calcifications), `subtlety`, `pathology`, `calcifications` (count). The
  views of one breast share their clusters, as CBIS-DDSM lists one
  abnormality per view.
  """
  # pylint: disable=g-import-not-at-top
  import tqdm
  from mammojax.data.synthetic import layout
  # pylint: enable=g-import-not-at-top
  out = []
  specs = layout.plan_dataset(config, num_images, seed=seed)
  for spec in tqdm.tqdm(specs, disable=not progress, desc="planned images"):
    plan = _plan_breast(config, spec.seed, spec.patient_index,
                        spec.breast_views)
    out.append([{
        "distribution": c.distribution, "dominant": c.dominant,
        "morphologies": sorted({x.morphology for x in c.calcs},
                               key=MORPHOLOGIES.index),
        "subtlety": c.subtlety, "pathology": c.pathology,
        "calcifications": len(c.calcs)} for c in plan.clusters])
  return out
