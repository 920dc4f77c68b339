"""Rendering of one mammogram: `generate_image`.

Each image is rendered as a log-attenuation map `A` (bright = dense) in the
laterality-normalised frame (chest wall at column 0): smooth tissue fields on
a coarse grid (thickness fall-off at the edge, subcutaneous fat layer, skin
line, pectoral muscle) plus the power-law parenchyma, then the masses and the
calcifications of the breast's plan; then the detector (Gaussian MTF blur,
then quantum noise, Poisson-like, Gaussian approximated). `A` is mirrored for
right breasts, mapped to 12/14-bit stored values and wrapped in a DICOM
dataset (`dicom_writer`); the display image is the stored pixels through the
DICOM window.

Labels in the annotation (docs/architecture.md): calcifications with
`center_xy` (bounding-box centre of the rendered mask, stored pixel grid),
`contour_xy` (ordered boundary pixel centres of the mask, 8-connected),
`diameter_mm` (greatest dimension of the shape, mm), `morphology`,
`cluster_id`; clusters with `distribution` and `pathology`; masses; image
`labels`: `pathology` (malignant if any finding is), `subtype` (malignant
cases only, see `planning`), `background_beta`.
"""

import dataclasses
import itertools
import math
from typing import Any, Optional

import numpy as np
from pydicom.dataset import Dataset
from scipy import ndimage

from mammojax.data.synthetic.calc_shapes import _CalcShape
from mammojax.data.synthetic.calc_shapes import _calc_shape
from mammojax.data.synthetic.calc_shapes import _render_calc
from mammojax.data.synthetic.calc_shapes import trace_contour
from mammojax.data.synthetic.config import DENSITIES
from mammojax.data.synthetic.config import _IMAGE
from mammojax.data.synthetic.config import SyntheticConfig
from mammojax.data.synthetic.config import _rng
from mammojax.data.synthetic.dicom_writer import _make_dataset
from mammojax.data.synthetic.geometry import _Geometry
from mammojax.data.synthetic.geometry import _view_geometry
from mammojax.data.synthetic.layout import ImageSpec
from mammojax.data.synthetic.layout import image_spec
from mammojax.data.synthetic.masses import _render_mass
from mammojax.data.synthetic.planning import _BreastPlan
from mammojax.data.synthetic.planning import _ClusterPlan
from mammojax.data.synthetic.planning import _plan_breast
from mammojax.data.synthetic.texture import breast_power_spectrum_beta
from mammojax.data.synthetic.texture import power_law_texture


@dataclasses.dataclass
class SyntheticImage:
  """One generated mammogram.

  Attributes:
    spec: the image's place in the dataset.
    dataset: the DICOM dataset with pixels (stored grid).
    annotation: one entry of annotations.json `images`.
    display: float32 [H, W] in [0, 1], bright = dense: the stored pixels
      through the DICOM window (pydicom's formula), MONOCHROME1 inverted.
    calcification_mask: bool [H, W], union of the calcification masks.
    breast_mask: bool [H, W], breast (incl. pectoral muscle) vs air.
    pectoral_mask: bool [H, W], the pectoral muscle (MLO views; all False
      on CC views).
    beta: the drawn power-law exponent of the parenchyma.
    nipple_xy: nipple position, stored pixel grid.
    cluster_geometry: per cluster, e.g. the segmental triangle (stored xy).
    beta_roi: (row0, col0, size) of the square used to measure beta.
  """

  spec: ImageSpec
  dataset: Dataset
  annotation: dict
  display: np.ndarray
  calcification_mask: np.ndarray
  breast_mask: np.ndarray
  pectoral_mask: np.ndarray
  beta: float
  nipple_xy: tuple[float, float]
  cluster_geometry: list[dict]
  beta_roi: tuple[int, int, int]


def _low_res_fields(config, geo: _Geometry, plan: _BreastPlan, factor: int):
  """Smooth fields on a coarse grid: (base A, texture amplitude, mask, dist).

  Returns arrays [ceil(H / factor), ceil(W / factor)].
  """
  s = geo.spacing
  lr, lc = -(-geo.rows // factor), -(-geo.cols // factor)
  y = (np.arange(lr) * factor + (factor - 1) / 2) * s
  x = (np.arange(lc) * factor + (factor - 1) / 2) * s
  xb = geo.boundary(y)
  nx, ny = geo.nipple
  mask = (x[None, :] < xb[:, None]) | (
      (x[None, :] - nx + geo.nipple_r) ** 2 + (y[:, None] - ny) ** 2
      < geo.nipple_r ** 2)
  dist = ndimage.distance_transform_edt(mask) * (factor * s)
  t = np.clip(dist / config.edge_falloff_mm, 0.0, 1.0)
  e = config.edge_thickness_fraction
  thick = np.where(mask, e + (1 - e) * np.sqrt(1.0 - (1.0 - t) ** 2), 0.0)
  f0, f1 = config.subcutaneous_fat_mm
  env = np.clip((dist - f0) / (f1 - f0), 0.0, 1.0)
  env = env * env * (3 - 2 * env)
  muscle = np.zeros_like(env)
  if geo.pect is not None:
    px = geo.pect_x(y)
    muscle = np.clip((px[:, None] - x[None, :]) / 1.5 + 0.5, 0.0, 1.0)
    muscle *= (y[:, None] < geo.pect[1])
    grad = 0.75 + 0.25 * np.clip(1 - x[None, :] / geo.pect[0], 0, 1)
  d = DENSITIES.index(plan.density)
  g0, gs = config.gland_mean[d], config.gland_std[d]
  tc = plan.thickness
  skin = config.skin_line * config.mu_fat * tc * np.exp(-dist / 0.8)
  base = tc * thick * (config.mu_fat + config.mu_gland_excess * env * g0
                       * (1 - muscle)) + skin * mask
  amp = tc * thick * config.mu_gland_excess * env * gs * (1 - muscle)
  if geo.pect is not None:
    base += tc * thick * config.mu_muscle_excess * muscle * grad
    amp += tc * thick * config.mu_muscle_excess * 0.06 * muscle
  return base, amp, mask, dist


def _upsample(low: np.ndarray, shape: tuple[int, int], factor: int):
  """Linear upsampling of a coarse field onto the full pixel grid."""
  if factor == 1:
    return low.astype(np.float32)
  lr, lc = low.shape
  rows = (np.arange(shape[0]) - (factor - 1) / 2) / factor
  cols = (np.arange(shape[1]) - (factor - 1) / 2) / factor
  r0 = np.clip(np.floor(rows).astype(int), 0, lr - 1)
  c0 = np.clip(np.floor(cols).astype(int), 0, lc - 1)
  r1, c1 = np.minimum(r0 + 1, lr - 1), np.minimum(c0 + 1, lc - 1)
  fr = np.clip(rows - r0, 0, 1).astype(np.float32)[:, None]
  fc = np.clip(cols - c0, 0, 1).astype(np.float32)[None, :]
  low = low.astype(np.float32)
  top = low[r0][:, c0] * (1 - fc) + low[r0][:, c1] * fc
  bot = low[r1][:, c0] * (1 - fc) + low[r1][:, c1] * fc
  return top * (1 - fr) + bot * fr


def _calc_orientation(cluster: _ClusterPlan, geo: _Geometry, xy_mm):
  """Long-axis angle (rad, pixel frame) of a calcification: along ducts."""
  if cluster.distribution == "linear" and cluster.axis3 is not None:
    d = geo.project(cluster.axis3)[0] - geo.project(np.zeros(3))[0]
  elif cluster.distribution == "segmental" and cluster.apex3 is not None:
    d = xy_mm - geo.project(cluster.apex3)[0]
  else:
    d = np.asarray(geo.nipple) - xy_mm
  return math.atan2(d[1], d[0])


def _conspicuous(config: SyntheticConfig, shape: _CalcShape,
                 subtlety: Optional[int]) -> _CalcShape:
  """The shape at the conspicuity of a CBIS-DDSM subtlety rating.

  Subtlety s (1 subtle .. 5 obvious) scales the shape's linear size by
  `config.subtlety_size[s - 1]` (path lengths and the greatest dimension
  with it) and its attenuation by `config.subtlety_contrast[s - 1]`; None
  (the "independent" generator) leaves the shape as drawn.
  """
  if subtlety is None:
    return shape
  k = float(config.subtlety_size[subtlety - 1])
  inside = shape.inside
  return _CalcShape(
      inside=lambda x, y: inside(x / k, y / k),
      half_extent=shape.half_extent * k, blur=shape.blur * k,
      contrast=shape.contrast * float(config.subtlety_contrast[subtlety - 1]),
      diameter=shape.diameter * k)


def apply_windowing(
    stored: np.ndarray, center: float, width: float, function: str, bits: int
) -> np.ndarray:
  """pydicom's `apply_windowing` (unsigned, no rescale) -> float64 [0, max]."""
  x = np.asarray(stored, np.float64)
  y_max = float(2**bits - 1)
  if function == "SIGMOID":
    return y_max / (1.0 + np.exp(-4.0 * (x - center) / width))
  c, w = center - 0.5, width - 1.0
  y = ((x - c) / w + 0.5) * y_max
  y = np.where(x <= c - w / 2, 0.0, np.where(x > c + w / 2, y_max, y))
  return np.clip(y, 0.0, y_max)


def _largest_square(ok: np.ndarray) -> tuple[int, int, int]:
  """(row0, col0, size) of a large square inside boolean mask `ok`."""
  cheb = ndimage.distance_transform_cdt(np.pad(ok, 1), metric="chessboard")
  cheb = cheb[1:-1, 1:-1]
  r, c = np.unravel_index(int(np.argmax(cheb)), cheb.shape)
  half = int(cheb[r, c]) - 1
  return r - half, c - half, 2 * half + 1


def beta_roi_image(image: SyntheticImage) -> np.ndarray:
  """The display image over `image.beta_roi`, calcifications in-painted.

  Calcification pixels (mask dilated by 2 px) are replaced by a 9 x 9
  median so that they do not flatten the spectrum; returns float32 [n, n].
  """
  r0, c0, size = image.beta_roi
  roi = image.display[r0:r0 + size, c0:c0 + size]
  calcs = image.calcification_mask[r0:r0 + size, c0:c0 + size]
  if not calcs.any():
    return roi
  calcs = ndimage.binary_dilation(calcs, iterations=2)
  return np.where(calcs, ndimage.median_filter(roi, size=9), roi)


def measure_image_beta(image: SyntheticImage) -> tuple[float, int, float]:
  """beta of a generated mammogram, measured as on a real one.

  `texture.breast_power_spectrum_beta` on the display image and the breast
  mask, with the pectoral muscle (+ 5 mm) and masses (outline + 5 mm) kept
  out of the ROIs, as a reader picks parenchyma (calcifications, a few
  pixels each, stay: most clusters are too wide to avoid).

  Returns:
    ``(beta, number of ROIs, ROI side in mm)``.
  """
  from mammojax.data.builders import mass_rois  # pylint: disable=g-import-not-at-top

  spacing = float(image.annotation["pixel_spacing_mm"][0])
  exclude = ndimage.binary_dilation(
      image.pectoral_mask, iterations=max(1, int(5.0 / spacing)))
  for mass in image.annotation.get("masses") or []:
    outline = mass_rois.polygon_mask(np.asarray(mass["contour_xy"]),
                                     image.display.shape)
    exclude |= ndimage.binary_dilation(
        outline, iterations=max(1, int(5.0 / spacing)))
  return breast_power_spectrum_beta(image.display, image.breast_mask, spacing,
                                    exclude=exclude)


def generate_image(
    config: SyntheticConfig, seed: Any, index: Optional[int] = None
) -> SyntheticImage:
  """Renders one mammogram of the stream.

  Args:
    config: generator config.
    seed: dataset seed (int), or an `ImageSpec` from `plan_dataset`.
    index: image index in the stream (with an int seed).

  Returns:
    The `SyntheticImage` (DICOM dataset, annotation, display image, masks).
  """
  if isinstance(seed, ImageSpec):
    spec = seed
  else:
    if index is None:
      raise ValueError("generate_image needs an index with an integer seed")
    spec = image_spec(config, int(seed), int(index))
  plan = _plan_breast(config, spec.seed, spec.patient_index,
                      spec.breast_views)
  s = plan.spacing
  geo = _view_geometry(config, spec.seed, spec.patient_index, spec.view, s)
  rows, cols = geo.rows, geo.cols
  rng = _rng(spec.seed, _IMAGE, spec.index)

  factor = max(1, int(round(0.3 / s)))
  base_l, amp_l, mask_l, dist_l = _low_res_fields(config, geo, plan, factor)
  texture = power_law_texture(rng, (rows, cols), s, plan.beta)
  field = _upsample(base_l, (rows, cols), factor)
  field += _upsample(amp_l, (rows, cols), factor) * texture
  del texture
  y_mm = np.arange(rows) * s
  x_mm = np.arange(cols) * s
  breast = (x_mm[None, :] < geo.boundary(y_mm)[:, None]) | (
      (x_mm[None, :] - geo.nipple[0] + geo.nipple_r) ** 2
      + (y_mm[:, None] - geo.nipple[1]) ** 2 < geo.nipple_r ** 2)
  pectoral = (x_mm[None, :] < geo.pect_x(y_mm)[:, None]) & breast

  # Masses.
  masses_out = []
  for m in plan.masses:
    xy = geo.project(m.p3)[0]
    contour = _render_mass(config, m, geo, xy, field)
    masses_out.append((m, xy / s, contour / s))

  # Calcifications.
  q = config.calc_supersampling
  calc_mask = np.zeros((rows, cols), bool)
  calcs_out, cluster_geometry = [], []
  for cluster in plan.clusters:
    for c in cluster.calcs:
      xy = geo.project(c.p3)[0]
      shape = _calc_shape(c.morphology, _rng(c.shape_seed, 0),
                          _calc_orientation(cluster, geo, xy),
                          cluster.size_base)
      shape = _conspicuous(config, shape, cluster.subtlety)
      r0, c0, path, mask, diameter = _render_calc(shape, xy[0] / s,
                                                  xy[1] / s, s, q)
      n = path.shape[0]
      rs, cs = slice(max(r0, 0), min(r0 + n, rows)), slice(
          max(c0, 0), min(c0 + n, cols))
      sub = (slice(rs.start - r0, rs.stop - r0),
             slice(cs.start - c0, cs.stop - c0))
      field[rs, cs] += (config.calc_attenuation_per_mm * shape.contrast
                        * path[sub]).astype(np.float32)
      calc_mask[rs, cs] |= mask[sub]
      contour = trace_contour(mask) + np.array([r0, c0])
      calcs_out.append((cluster, c, contour, diameter))
    geom = {"cluster_id": cluster.cluster_id,
            "distribution": cluster.distribution}
    if cluster.triangles is not None:
      geom["triangle_xy"] = cluster.triangles[geo.view] / s
    cluster_geometry.append(geom)

  # Detector: MTF blur, then quantum noise.
  field = ndimage.gaussian_filter(field, config.mtf_sigma_mm / s, truncate=3.0)
  sub = field[::4, ::4][breast[::4, ::4]]
  a_ref = float(np.median(sub))
  photons = config.photons_per_pixel * (s / 0.085) ** 2
  sigma = np.exp((field - a_ref) * 0.5, dtype=np.float32)
  sigma *= np.float32(1.0 / math.sqrt(photons))
  sigma *= rng.standard_normal((rows, cols), dtype=np.float32)
  field += sigma
  del sigma

  # Stored values (MONOCHROME2 sense: bright = dense), window, display.
  bits = plan.bits
  max_value = 2**bits - 1
  a_hi = float(np.percentile(sub, 99.9))
  pix = np.clip(np.rint(max_value * (0.02 + 0.93 * field / a_hi)), 0,
                max_value).astype(np.uint16)
  del field
  sub_p = pix[::4, ::4][breast[::4, ::4]].astype(np.float64)
  lo, hi = np.percentile(sub_p, [0.5, 99.8])
  center = round(0.5 * (lo + hi) * rng.uniform(0.98, 1.02))
  width = max(round((hi - lo) * rng.uniform(1.0, 1.2)), 2)
  function = "SIGMOID" if plan.sigmoid else "LINEAR"
  if plan.monochrome1:
    pix = (max_value - pix).astype(np.uint16)
    center = max_value - center
  display = apply_windowing(pix, center, width, function, bits) / max_value
  if plan.monochrome1:
    display = 1.0 - display

  # Mirror right breasts (chest wall at the right edge in the stored grid).
  flip = spec.laterality == "R"
  if flip:
    pix, display = pix[:, ::-1], display[:, ::-1]
    calc_mask, breast = calc_mask[:, ::-1], breast[:, ::-1]
    pectoral = pectoral[:, ::-1]

  def to_stored(x: np.ndarray) -> np.ndarray:
    """Normalised-frame column -> stored-grid column."""
    return (cols - 1) - x if flip else x

  calcs_json, clusters_json = [], []
  for cluster, c, contour, diameter in calcs_out:
    xs = to_stored(contour[:, 1].astype(np.float64))
    ys = contour[:, 0].astype(np.float64)
    calcs_json.append({
        "id": c.id,
        "center_xy": [0.5 * (xs.min() + xs.max()), 0.5 * (ys.min() + ys.max())],
        "contour_xy": [[int(a), int(b)] for a, b in zip(xs, ys)],
        "diameter_mm": round(float(diameter), 4),
        "morphology": c.morphology,
        "cluster_id": cluster.cluster_id,
    })
  for cluster in plan.clusters:
    clusters_json.append({
        "cluster_id": cluster.cluster_id,
        "distribution": cluster.distribution,
        "pathology": cluster.pathology,
        "calcification_ids": [c.id for c in cluster.calcs],
    })
    if cluster.subtlety is not None:
      clusters_json[-1]["subtlety"] = cluster.subtlety
  for geom in cluster_geometry:
    if "triangle_xy" in geom:
      tri = geom["triangle_xy"].copy()
      tri[:, 0] = to_stored(tri[:, 0])
      geom["triangle_xy"] = tri
  masses_json = []
  for m, centre, contour in masses_out:
    cx = float(to_stored(np.array(centre[0])))
    masses_json.append({
        "id": m.id,
        "center_xy": [round(cx, 2), round(float(centre[1]), 2)],
        "contour_xy": [[round(float(to_stored(np.array(a))), 2),
                        round(float(b), 2)] for a, b in contour],
        "shape": m.shape, "margin": m.margin, "pathology": m.pathology,
    })
  labels = {"pathology": plan.pathology, "background_beta":
            round(plan.beta, 4)}
  if plan.subtype is not None:
    labels["subtype"] = plan.subtype
  annotation = {
      "image_id": spec.image_id,
      "file": spec.file,
      "patient_id": spec.patient_id,
      "laterality": spec.laterality,
      "view": spec.view,
      "rows": rows,
      "columns": cols,
      "pixel_spacing_mm": [s, s],
      "density": plan.density,
      "calcifications": calcs_json,
      "clusters": clusters_json,
      "masses": masses_json,
      "labels": labels,
  }

  # A square of plain parenchyma (T = 1, full glandular envelope, no muscle,
  # no mass) for measuring beta. Small breasts (breast_scale < 1) fall back
  # to a shallower margin.
  yl = (np.arange(dist_l.shape[0]) * factor + (factor - 1) / 2) * s
  xl = (np.arange(dist_l.shape[1]) * factor + (factor - 1) / 2) * s
  no_mass = np.ones(dist_l.shape, bool)
  for m, centre, _ in masses_out:
    reach = m.radius * (2.6 if m.margin == "spiculated" else 1.6) + 3.0
    no_mass &= np.hypot(xl[None, :] - centre[0] * s,
                        yl[:, None] - centre[1] * s) > reach
  # Calcifications flatten the spectrum: avoid them unless they are
  # everywhere (diffuse).
  near_calc = np.zeros(dist_l.shape, bool)
  for _, _, contour, _ in calcs_out:
    rr = np.clip(contour[:, 0] // factor, 0, dist_l.shape[0] - 1)
    cc = np.clip(contour[:, 1] // factor, 0, dist_l.shape[1] - 1)
    near_calc[rr, cc] = True
  no_calc = ndimage.distance_transform_edt(~near_calc) * (factor * s) > 3.0
  for avoid_calcs, margin in itertools.product((True, False),
                                               (1.0, 0.6, 0.3)):
    ok = no_mass & (dist_l >= margin * (max(
        config.edge_falloff_mm, config.subcutaneous_fat_mm[1]) + 2.0))
    if avoid_calcs:
      ok &= no_calc
    if geo.pect is not None:
      ok &= xl[None, :] > geo.pect_x(yl)[:, None] + 8.0 * margin
    r0, c0, size = _largest_square(ok)
    if size * factor * s >= 30.0:
      break
  r0, c0, size = r0 * factor, c0 * factor, size * factor
  if flip:
    c0 = cols - c0 - size
  nipple = (float(to_stored(np.array(geo.nipple[0] / s))),
            geo.nipple[1] / s)
  ds = _make_dataset(spec, plan, pix, center, width, function)
  return SyntheticImage(
      spec=spec, dataset=ds, annotation=annotation,
      display=np.ascontiguousarray(display, dtype=np.float32),
      calcification_mask=np.ascontiguousarray(calc_mask),
      breast_mask=np.ascontiguousarray(breast),
      pectoral_mask=np.ascontiguousarray(pectoral), beta=plan.beta,
      nipple_xy=nipple, cluster_geometry=cluster_geometry,
      beta_roi=(int(r0), int(c0), int(size)))
