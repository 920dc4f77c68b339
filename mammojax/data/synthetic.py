"""Realistic synthetic full-field digital mammograms (numpy / scipy only).

Each image is rendered as a log-attenuation map `A` (bright = dense) in the
laterality-normalised frame (chest wall at column 0), then mirrored for right
breasts, mapped to 12/14-bit stored values and wrapped in a DICOM
"Digital Mammography X-Ray Image - For Presentation" dataset.

Model (SPEC section 9):
* breast outline: a superellipse-like profile with a low-frequency wobble,
  nipple bump, skin line and a peripheral thickness fall-off; on MLO views a
  pectoral-muscle triangle at the upper chest-wall corner;
* parenchyma: a Gaussian power-law field, P(f) ~ 1 / f^beta (amplitude filter
  f^(-beta/2) on white noise), beta ~ N(2.8, 0.15) clipped to [2.4, 3.2],
  scaled by ACR density (a-d) and an envelope that keeps a subcutaneous fat
  layer; `measure_beta` recovers beta from the output;
* calcifications: supersampled shapes per BI-RADS morphology, rendered as
  path-length x attenuation with partial volume, placed per BI-RADS
  distribution in 3-D and projected into both views of a breast (so CC and
  MLO show the same calcifications with the same labels);
* masses: polar shapes (round, oval, lobulated, irregular) with margins
  (circumscribed, obscured, microlobulated, ill_defined, spiculated) and a
  pathology that depends on them;
* detector: Gaussian MTF blur, then quantum (Poisson-like, Gaussian
  approximated) noise.

Determinism: every random draw comes from `numpy.random.default_rng` seeded
by `(seed, kind, id)`, so any image can be generated alone and in any order:
`generate_image(config, seed, index)` needs neither the other images nor the
dataset size. Patients are laid out as a stream (patient p has 1 or 2 views;
`config.images_per_patient` is the mean, 1.95 = the paper's 390 / 200).

Labels in the annotation (docs/architecture.md): calcifications with
`center_xy` (bounding-box centre of the rendered mask, stored pixel grid),
`contour_xy` (ordered boundary pixel centres of the mask, 8-connected),
`diameter_mm` (greatest dimension of the shape, mm), `morphology`,
`cluster_id`; clusters with `distribution` and `pathology`; masses; image
`labels`: `pathology` (malignant if any finding is), `subtype` (malignant
cases only; weakly correlated with appearance: spiculated masses tilt
towards luminal A, fine pleomorphic / linear calcifications towards HER2,
round / oval masses towards triple negative), `background_beta`.
"""

import collections
import dataclasses
import functools
import itertools
import json
import math
import multiprocessing
import os
import pathlib
import time
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from scipy import fft as sp_fft
from scipy import ndimage

from mammojax.data import annotations as annotations_lib
from mammojax.data import vocab as vocab_lib

_VOCAB = vocab_lib.VOCABULARIES["synthetic"]
MORPHOLOGIES = _VOCAB["morphology"]
DISTRIBUTIONS = _VOCAB["distribution"]
MASS_SHAPES = _VOCAB["mass_shape"]
MASS_MARGINS = _VOCAB["mass_margin"]
DENSITIES = _VOCAB["density"]
SUBTYPES = _VOCAB["subtype"]

MG_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
_VIEW_CODE = {"CC": 0, "MLO": 1}
_SNOMED_VIEW = {"CC": ("R-10242", "cranio-caudal"),
                "MLO": ("R-10226", "medio-lateral oblique")}

# Seed-stream kinds: a draw of one kind never shifts another kind's draws.
_LAYOUT, _PATIENT, _IMAGE, _OUTLINE, _SIZE, _FINDINGS = range(6)


@dataclasses.dataclass(frozen=True)
class SyntheticConfig:
  """All knobs of the generator; lengths in mm unless a name says otherwise."""

  # Field of view (compressed breast) and detector.
  field_height_mm: float = 160.0
  field_width_mm: float = 100.0
  breast_scale: float = 1.0  # scales the field of view and the breast
  pixel_spacings_mm: tuple[float, ...] = (0.07, 0.085, 0.1)
  bits_stored: tuple[int, ...] = (12, 14)
  mtf_sigma_mm: float = 0.06
  photons_per_pixel: float = 6000.0  # at 0.085 mm pixels, median breast
  monochrome1_probability: float = 0.35
  sigmoid_probability: float = 0.3
  # Tissue (linear attenuation, 1/mm, ~20 keV) and parenchyma texture.
  compressed_thickness_mm: tuple[float, float] = (40.0, 65.0)
  mu_fat: float = 0.045
  mu_gland_excess: float = 0.035
  mu_muscle_excess: float = 0.018
  edge_falloff_mm: float = 12.0
  edge_thickness_fraction: float = 0.35
  subcutaneous_fat_mm: tuple[float, float] = (3.0, 16.0)
  skin_line: float = 0.12  # extra attenuation at the skin, fraction of fat
  beta_mean: float = 2.8
  beta_std: float = 0.15
  beta_range: tuple[float, float] = (2.4, 3.2)
  density_probs: tuple[float, ...] = (0.1, 0.4, 0.4, 0.1)
  # Glandular fraction mean and texture std per ACR density a-d.
  gland_mean: tuple[float, ...] = (0.05, 0.2, 0.4, 0.6)
  gland_std: tuple[float, ...] = (0.08, 0.12, 0.15, 0.17)
  # Calcifications.
  clusters_per_image: int = 1
  distribution_probs: tuple[float, ...] = (0.2, 0.2, 0.2, 0.2, 0.2)
  morphology_probs: tuple[float, ...] = (0.2, 0.2, 0.2, 0.2, 0.2)
  mixed_morphology_fraction: float = 0.15
  max_calcifications: int = 96
  # (min, max) calcifications per cluster, in DISTRIBUTIONS order.
  calcification_counts: tuple[tuple[int, int], ...] = (
      (20, 80), (10, 45), (5, 30), (5, 25), (10, 45))
  calc_attenuation_per_mm: float = 1.2
  min_calc_separation_mm: float = 0.8
  calc_supersampling: int = 5
  grouped_radius_mm: tuple[float, float] = (3.0, 4.8)
  regional_min_extent_mm: float = 21.0
  # Masses.
  mass_probability: float = 0.2
  mass_diameter_mm: tuple[float, float] = (8.0, 25.0)
  mass_attenuation_per_mm: float = 0.02
  # Patients and labels.
  images_per_patient: float = 1.95
  subtype_probs: tuple[float, ...] = (0.4, 0.25, 0.15, 0.2)


@dataclasses.dataclass(frozen=True)
class ImageSpec:
  """Who and what one image of the dataset stream is."""

  seed: int
  index: int
  patient_index: int
  patient_id: str
  image_id: str
  laterality: str
  view: str
  breast_views: tuple[str, ...]
  file: str


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
  beta: float
  nipple_xy: tuple[float, float]
  cluster_geometry: list[dict]
  beta_roi: tuple[int, int, int]


def _rng(seed: int, *ids: int) -> np.random.Generator:
  """A generator for one (seed, kind, ids...) stream."""
  return np.random.default_rng([int(seed) % (2**63), *map(int, ids)])


# ----------------------------------------------------------------------------
# Patient layout.


def _images_of_patient(config: SyntheticConfig, seed: int, p: int) -> int:
  """Number of images (1 or 2) of patient `p` in the stream."""
  q = min(max(config.images_per_patient - 1.0, 0.0), 1.0)
  phase = _rng(seed, _LAYOUT).random()
  return 1 + int(math.floor((p + 1) * q + phase) - math.floor(p * q + phase))


def _patient_specs(
    config: SyntheticConfig, seed: int, p: int, count: int, first: int
) -> list[ImageSpec]:
  """The image specs of patient `p` (one breast, `count` views)."""
  rng = _rng(seed, _PATIENT, p, 0)
  laterality = "L" if rng.random() < 0.5 else "R"
  views = ("CC", "MLO") if count == 2 else (("CC", "MLO")[rng.integers(2)],)
  patient_id = f"P{p + 1:04d}"
  specs = []
  for k, view in enumerate(views):
    image_id = f"{patient_id}_{laterality}_{view}"
    specs.append(ImageSpec(
        seed=int(seed), index=first + k, patient_index=p,
        patient_id=patient_id, image_id=image_id, laterality=laterality,
        view=view, breast_views=views, file=f"{patient_id}/{image_id}.dcm"))
  return specs


def image_spec(config: SyntheticConfig, seed: int, index: int) -> ImageSpec:
  """The spec of image `index` of the stream (independent of dataset size)."""
  first, p = 0, 0
  while True:
    count = _images_of_patient(config, seed, p)
    if index < first + count:
      return _patient_specs(config, seed, p, count, first)[index - first]
    first += count
    p += 1


def plan_dataset(
    config: SyntheticConfig,
    num_images: int,
    num_patients: Optional[int] = None,
    seed: int = 0,
) -> list[ImageSpec]:
  """Specs of the first `num_images` images of the stream.

  Args:
    config: generator config; `images_per_patient` sets the layout.
    num_images: number of images.
    num_patients: if given, the patient count the layout must produce
      (error otherwise; set `config.images_per_patient` to
      num_images / num_patients, e.g. 1.95 for 390 / 200).
    seed: dataset seed.

  Returns:
    `num_images` specs; `generate_image(config, seed, i)` renders spec i.
  """
  if num_images < 1:
    raise ValueError(f"num_images must be >= 1, got {num_images}")
  if num_patients is not None and not (
      num_patients <= num_images <= 2 * num_patients):
    raise ValueError(
        f"{num_images} images from {num_patients} patients: each patient has "
        "1 or 2 images (one breast, CC and/or MLO)")
  specs, p = [], 0
  while len(specs) < num_images:
    count = _images_of_patient(config, seed, p)
    specs.extend(_patient_specs(config, seed, p, count, len(specs)))
    p += 1
  specs = specs[:num_images]
  got = len({s.patient_index for s in specs})
  if num_patients is not None and got != num_patients:
    raise ValueError(
        f"{num_images} images with config.images_per_patient="
        f"{config.images_per_patient} give {got} patients, not "
        f"{num_patients}; set images_per_patient="
        f"{num_images / num_patients:.4g}")
  return specs


# ----------------------------------------------------------------------------
# Power-law texture and its measurement.


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


# ----------------------------------------------------------------------------
# Breast geometry (laterality-normalised frame, mm; x = column, y = row).


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


# ----------------------------------------------------------------------------
# Calcification shapes.


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


# ----------------------------------------------------------------------------
# Findings plan (per breast, shared by its views).


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


def _plan_cluster(config, rng, geos, cluster_id: int, first_id: int):
  """Plans one calcification cluster visible in all `geos` views."""
  dist = DISTRIBUTIONS[rng.choice(len(DISTRIBUTIONS),
                                  p=config.distribution_probs)]
  dominant = MORPHOLOGIES[rng.choice(len(MORPHOLOGIES),
                                     p=config.morphology_probs)]
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
  for k, p3 in enumerate(points):
    morph = dominant
    if rng.random() < config.mixed_morphology_fraction:
      others = [m for m in MORPHOLOGIES if m != dominant]
      morph = others[rng.integers(len(others))]
    calcs.append(_CalcPlan(first_id + k, morph, p3,
                           int(rng.integers(2**31))))
  risk = _MORPH_RISK[dominant] + _DIST_RISK[dist]
  pathology = "malignant" if rng.random() < _sigmoid(risk) else "benign"
  return _ClusterPlan(cluster_id, dist, dominant, pathology, calcs,
                      axis3=extra.get("axis3"), apex3=extra.get("apex3"),
                      triangles=tris, size_base=float(rng.random()))


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
  for k in range(config.clusters_per_image):
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


# ----------------------------------------------------------------------------
# Rendering.


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


def _calc_orientation(cluster: _ClusterPlan, geo: _Geometry, xy_mm):
  """Long-axis angle (rad, pixel frame) of a calcification: along ducts."""
  if cluster.distribution == "linear" and cluster.axis3 is not None:
    d = geo.project(cluster.axis3)[0] - geo.project(np.zeros(3))[0]
  elif cluster.distribution == "segmental" and cluster.apex3 is not None:
    d = xy_mm - geo.project(cluster.apex3)[0]
  else:
    d = np.asarray(geo.nipple) - xy_mm
  return math.atan2(d[1], d[0])


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
      breast_mask=np.ascontiguousarray(breast), beta=plan.beta,
      nipple_xy=nipple, cluster_geometry=cluster_geometry,
      beta_roi=(int(r0), int(c0), int(size)))


# ----------------------------------------------------------------------------
# DICOM.


def _uid(spec: ImageSpec, *parts: str) -> str:
  """A deterministic UID from the seed, patient and `parts`."""
  return generate_uid(entropy_srcs=["mammojax-synthetic", str(spec.seed),
                                    spec.patient_id, *parts])


def _make_dataset(spec: ImageSpec, plan: _BreastPlan, pix: np.ndarray,
                  center: float, width: float, function: str) -> Dataset:
  """Wraps stored pixels [H, W] uint16 in an MG For Presentation dataset."""
  sop_uid = _uid(spec, spec.image_id, "sop")
  meta = FileMetaDataset()
  meta.MediaStorageSOPClassUID = MG_FOR_PRESENTATION
  meta.MediaStorageSOPInstanceUID = sop_uid
  meta.TransferSyntaxUID = ExplicitVRLittleEndian
  meta.ImplementationClassUID = pydicom.uid.PYDICOM_IMPLEMENTATION_UID
  meta.ImplementationVersionName = "MAMMOJAX_SYN1"
  ds = Dataset()
  ds.file_meta = meta
  ds.SpecificCharacterSet = "ISO_IR 100"
  ds.ImageType = ["DERIVED", "PRIMARY", ""]
  ds.SOPClassUID = MG_FOR_PRESENTATION
  ds.SOPInstanceUID = sop_uid
  ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240101"
  ds.StudyTime = ds.SeriesTime = ds.ContentTime = "120000"
  ds.AccessionNumber = ""
  ds.Modality = "MG"
  ds.PresentationIntentType = "FOR PRESENTATION"
  ds.Manufacturer = "mammojax synthetic"
  ds.ReferringPhysicianName = ""
  ds.PatientName = f"Synthetic^{spec.patient_id}"
  ds.PatientID = spec.patient_id
  ds.PatientBirthDate = ""
  ds.PatientSex = "F"
  ds.BodyPartExamined = "BREAST"
  ds.StudyInstanceUID = _uid(spec, "study")
  ds.SeriesInstanceUID = _uid(spec, spec.image_id, "series")
  ds.StudyID = "1"
  ds.SeriesNumber = 1
  ds.InstanceNumber = spec.index + 1
  ds.Laterality = spec.laterality
  ds.ImageLaterality = spec.laterality
  ds.ViewPosition = spec.view
  code, meaning = _SNOMED_VIEW[spec.view]
  item = Dataset()
  item.CodeValue, item.CodingSchemeDesignator = code, "SRT"
  item.CodeMeaning = meaning
  ds.ViewCodeSequence = [item]
  ds.PatientOrientation = ["P", "L"] if spec.laterality == "L" else ["A", "R"]
  ds.BurnedInAnnotation = "NO"
  ds.BreastImplantPresent = "NO"
  ds.PartialView = "NO"
  ds.DetectorType = "DIRECT"
  ds.ImagerPixelSpacing = [plan.spacing, plan.spacing]
  ds.PixelSpacing = [plan.spacing, plan.spacing]
  ds.BodyPartThickness = round(plan.thickness, 1)
  ds.SamplesPerPixel = 1
  mono1 = plan.monochrome1
  ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
  ds.PresentationLUTShape = "INVERSE" if mono1 else "IDENTITY"
  ds.PixelIntensityRelationship = "LOG"
  ds.PixelIntensityRelationshipSign = 1 if mono1 else -1
  ds.Rows, ds.Columns = pix.shape
  ds.BitsAllocated = 16
  ds.BitsStored = plan.bits
  ds.HighBit = plan.bits - 1
  ds.PixelRepresentation = 0
  ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
  ds.WindowCenter = center
  ds.WindowWidth = width
  ds.VOILUTFunction = function
  ds.WindowCenterWidthExplanation = "synthetic"
  ds.PixelData = np.ascontiguousarray(pix, dtype="<u2").tobytes()
  return ds


def write_dicom(path: str | os.PathLike, ds: Dataset) -> None:
  """Writes `ds` as a DICOM Part 10 file (Explicit VR Little Endian)."""
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  ds.save_as(path, enforce_file_format=True)


# ----------------------------------------------------------------------------
# Datasets.


def generate_dataset(
    config: SyntheticConfig,
    num_images: int,
    seed: int = 0,
    num_patients: Optional[int] = None,
) -> Iterator[SyntheticImage]:
  """Yields the first `num_images` images of the stream, in order."""
  for spec in plan_dataset(config, num_images, num_patients, seed):
    yield generate_image(config, spec)


def _write_one(args) -> tuple[dict, float]:
  """Worker: renders and writes one image; returns (annotation, seconds)."""
  config, spec, out_dir = args
  start = time.perf_counter()
  image = generate_image(config, spec)
  write_dicom(pathlib.Path(out_dir) / spec.file, image.dataset)
  return image.annotation, time.perf_counter() - start


def summarise(annotations: Sequence[dict]) -> dict:
  """Counts of images, patients and labels over annotation entries."""
  counts = collections.defaultdict(collections.Counter)
  for im in annotations:
    counts["view"][im["view"]] += 1
    counts["laterality"][im["laterality"]] += 1
    counts["density"][im.get("density")] += 1
    for key in ("pathology", "subtype"):
      if key in im.get("labels", {}):
        counts[key][im["labels"][key]] += 1
    for c in im["clusters"]:
      counts["distribution"][c["distribution"]] += 1
    for c in im["calcifications"]:
      counts["morphology"][c["morphology"]] += 1
    for m in im["masses"]:
      counts["mass_shape"][m["shape"]] += 1
      counts["mass_margin"][m["margin"]] += 1
  n_calcs = [len(im["calcifications"]) for im in annotations]
  return {
      "images": len(annotations),
      "patients": len({im["patient_id"] for im in annotations}),
      "calcifications": int(sum(n_calcs)),
      "calcifications_per_image": {
          "min": int(min(n_calcs, default=0)),
          "mean": float(np.mean(n_calcs)) if n_calcs else 0.0,
          "max": int(max(n_calcs, default=0))},
      "labels": {k: dict(sorted(v.items(), key=lambda kv: str(kv[0])))
                 for k, v in counts.items()},
  }


def write_dataset(
    out_dir: str | os.PathLike,
    config: SyntheticConfig,
    num_images: int,
    seed: int = 0,
    num_patients: Optional[int] = None,
    *,
    workers: int = 2,
    progress: bool = True,
) -> dict:
  """Writes `<patient>/<image_id>.dcm` files and `annotations.json`.

  Args:
    out_dir: output folder (created).
    config: generator config.
    num_images: number of images.
    seed: dataset seed.
    num_patients: expected patient count (checked, see `plan_dataset`).
    workers: worker processes (1 = in process).
    progress: show a tqdm progress bar.

  Returns:
    A JSON-able summary (counts per label, seconds).
  """
  import tqdm  # pylint: disable=g-import-not-at-top

  out_dir = pathlib.Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  specs = plan_dataset(config, num_images, num_patients, seed)
  args = [(config, spec, str(out_dir)) for spec in specs]
  start = time.perf_counter()
  bar = functools.partial(tqdm.tqdm, total=len(args), disable=not progress,
                          desc="synthetic mammograms", unit="img")
  if workers > 1:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
      results = list(bar(pool.imap(_write_one, args)))
  else:
    results = [_write_one(a) for a in bar(args)]
  images = [r[0] for r in results]
  annotations_lib.save_annotations(
      out_dir / "annotations.json",
      annotations_lib.make_annotations(images, dataset="synthetic"))
  total = time.perf_counter() - start
  summary = summarise(images)
  summary.update(
      seed=seed, workers=workers, seconds_total=round(total, 2),
      seconds_per_image_worker=round(float(np.mean([r[1] for r in results])),
                                     3),
      out_dir=str(out_dir))
  return summary


def dumps_summary(summary: dict) -> str:
  """The summary as indented JSON."""
  return json.dumps(summary, indent=2, default=str)
