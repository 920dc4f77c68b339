"""Synthetic IDC histopathology tiles in Databiox's folder layout.

``write_dataset(out_dir, ...)`` writes RGB H&E-like JPEG tiles of invasive
ductal carcinoma graded 1-3 as

  BC_IDC_Grade_{1,2,3}/{4x,10x,20x,40x}/<NN>_BC_G<g>_<patient>_<mag>_<k>.JPG

(the names of the real Databiox download; ``NN`` is the patient's running
index within its grade, ``patient`` a unique 4-5 digit number), plus
``synthetic_manifest.json`` at the top (outside the grade folders, so the
Databiox parser never sees it) with each tile's ground truth: grade,
patient, magnification, number of nuclei, tubules and mitoses, the mean
nuclear area and the nuclear pixel fraction. The ``databiox`` builder reads
the tree back like a real download (its ``synthetic*`` configs generate it
first). Command line: ``python -m mammojax.data.synthetic_histology --out
DIR [--patients-per-grade 8 --tiles-per-patient 4 --seed 0 --figure
PNG]`` (``--figure``: one 40x tile per grade, docs/datasets.md).

Rendering (numpy, deterministic per ``seed``; one generator per tile seeded
from ``(seed, grade, patient, magnification, tile)``): stain concentration
maps composed in optical density with the Ruifrok-Johnston H&E stain
vectors, ``rgb = 255 exp(-(c_H OD_H + c_E OD_E))``, so haematoxylin gives
blue-purple nuclei, eosin pink stroma and cytoplasm, and empty lumens stay
white; a per-patient stain jitter (concentration scale, vector tilt) models
staining batches. Per grade (Nottingham / Elston-Ellis criteria):

* tubule formation: glands (a white lumen ringed by a single layer of
  polarised nuclei) -- grade 1 most of the tumour (4-6 glands per 40x tile),
  grade 2 some (2-3), grade 3 few (0-1);
* nuclear pleomorphism: nuclear radius (40x px) 3.0 / 3.9 / 5.0 with a
  coefficient of variation of 0.08 / 0.18 / 0.30, irregular outlines
  (harmonic amplitude 0.04 / 0.12 / 0.25), chromatin texture amplitude
  0.10 / 0.25 / 0.45 and darkness 1.0 / 1.15 / 1.35;
* mitotic count: 0-1 / 1-3 / 3-7 dark irregular figures per 40x tile;
* cellularity: 110 / 170 / 250 tumour nuclei per 40x tile outside glands.

Each patient draws its own offsets (+-10 % size, +-20 % counts) around its
grade's values, so patients of one grade differ and grades overlap a little.
Magnifications: the tiles of each magnification are drawn at the scale 0.5
/ 0.6 / 0.8 / 1.0 (4x / 10x / 20x / 40x) of the 40x geometry (nuclei
smaller, more of them and more glands per tile); the real optical ratios
(0.1 ...) would make 4x nuclei sub-pixel at these tile sizes and multiply
the rendering time by 100, so the scales are a chosen compromise, not
optics. Only 40x is used by the RMCG configs (as in
the paper).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
from typing import Any

import numpy as np

MAGNIFICATIONS = ("4x", "10x", "20x", "40x")
MAG_SCALE = {"4x": 0.5, "10x": 0.6, "20x": 0.8, "40x": 1.0}

# Ruifrok & Johnston H&E optical-density vectors (rows: H, E), normalised.
STAINS = np.array([[0.650, 0.704, 0.286], [0.072, 0.990, 0.105]])
STAINS = STAINS / np.linalg.norm(STAINS, axis=1, keepdims=True)


@dataclasses.dataclass(frozen=True)
class GradeParams:
  """Nottingham-criteria parameters of one grade at 40x."""

  glands: tuple[int, int]  # Tubules per 40x tile (inclusive range).
  radius: float  # Mean nuclear radius, px.
  radius_cv: float  # Nuclear size variation.
  irregularity: float  # Outline harmonic amplitude.
  chromatin: float  # Chromatin texture amplitude.
  darkness: float  # Haematoxylin concentration factor.
  mitoses: tuple[int, int]  # Mitotic figures per 40x tile.
  nuclei: int  # Tumour nuclei per 40x tile outside glands.


GRADES = {
    1: GradeParams((4, 6), 3.0, 0.08, 0.04, 0.10, 1.00, (0, 1), 110),
    2: GradeParams((2, 3), 3.9, 0.18, 0.12, 0.25, 1.15, (1, 3), 170),
    3: GradeParams((0, 1), 5.0, 0.30, 0.25, 0.45, 1.35, (3, 7), 250),
}


def _smooth_noise(rng, shape, cell):
  """Low-frequency noise in [-1, 1]: bilinear upsampling of a coarse grid."""
  h, w = shape
  gh, gw = h // cell + 2, w // cell + 2
  grid = rng.uniform(-1, 1, (gh, gw))
  ys = np.arange(h) / cell
  xs = np.arange(w) / cell
  y0 = ys.astype(int)
  x0 = xs.astype(int)
  fy = (ys - y0)[:, None]
  fx = (xs - x0)[None, :]
  g00 = grid[y0][:, x0]
  g01 = grid[y0][:, x0 + 1]
  g10 = grid[y0 + 1][:, x0]
  g11 = grid[y0 + 1][:, x0 + 1]
  return (g00 * (1 - fy) * (1 - fx) + g01 * (1 - fy) * fx
          + g10 * fy * (1 - fx) + g11 * fy * fx)


def _blob(conc, cy, cx, radius, aspect, angle, harmonics, value, texture,
          rng):
  """Adds an irregular ellipse of haematoxylin ``value`` (max-composited)."""
  h, w = conc.shape
  r_max = radius * max(1.0, 1.0 / aspect) * (1 + sum(abs(a) for a, _ in
                                                      harmonics)) + 1.5
  y0, y1 = max(0, int(cy - r_max)), min(h, int(cy + r_max) + 2)
  x0, x1 = max(0, int(cx - r_max)), min(w, int(cx + r_max) + 2)
  if y0 >= y1 or x0 >= x1:
    return 0
  yy, xx = np.mgrid[y0:y1, x0:x1]
  dy, dx = yy - cy, xx - cx
  ca, sa = np.cos(angle), np.sin(angle)
  u = (dx * ca + dy * sa)
  v = (-dx * sa + dy * ca) / aspect
  rho = np.hypot(u, v)
  theta = np.arctan2(v, u)
  edge = radius * (1 + sum(a * np.cos(k * theta + ph)
                           for k, (a, ph) in enumerate(harmonics, start=2)))
  inside = np.clip(edge - rho + 0.5, 0.0, 1.0)  # Anti-aliased edge.
  tex = 1.0 + texture * rng.uniform(-1, 1, inside.shape)
  # Darker rim (nuclear membrane) for vesicular nuclei.
  rim = 1.0 + 0.3 * texture * np.clip(1 - np.abs(edge - rho) / 1.2, 0, 1)
  patch = inside * value * tex * rim
  region = conc[y0:y1, x0:x1]
  np.maximum(region, patch, out=region)
  return int(np.sum(inside > 0.5))


def _place(rng, n, shape, min_dist, forbid=None):
  """Up to ``n`` points ``[(y, x)]`` on a jittered grid of spacing >= min_dist.

  ``forbid(points [M, 2]) -> bool [M]`` removes candidates (e.g. inside
  glands). Linear in the number of candidates.
  """
  h, w = shape
  if n <= 0:
    return []
  spacing = max(min_dist, np.sqrt(h * w / (1.4 * n)))
  ys = np.arange(spacing / 2, h, spacing)
  xs = np.arange(spacing / 2, w, spacing)
  grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), -1).reshape(-1, 2)
  # Some overlap allowed in dense sheets (no visible lattice).
  jitter = max((spacing - min_dist) / 2, 0.35 * spacing)
  grid = grid + rng.uniform(-jitter, jitter, grid.shape)
  if forbid is not None and len(grid):
    grid = grid[~forbid(grid)]
  grid = grid[rng.permutation(len(grid))[:n]]
  return [tuple(p) for p in grid]


@dataclasses.dataclass(frozen=True)
class Patient:
  """A patient's grade, id, running index and individual offsets."""

  grade: int
  patient_id: str
  index: int
  size_factor: float
  count_factor: float
  stain_scale: tuple[float, float]
  stain_tilt: float


def make_patients(patients_per_grade: int, seed: int) -> list[Patient]:
  """The patients of every grade (unique ids, per-patient offsets)."""
  rng = np.random.default_rng([seed, 999])
  ids = rng.choice(np.arange(1000, 20000), 3 * patients_per_grade,
                   replace=False)
  out = []
  for g in (1, 2, 3):
    for i in range(patients_per_grade):
      out.append(Patient(
          grade=g,
          patient_id=str(int(ids[(g - 1) * patients_per_grade + i])),
          index=i + 1,
          size_factor=float(rng.uniform(0.9, 1.1)),
          count_factor=float(rng.uniform(0.8, 1.2)),
          stain_scale=(float(rng.uniform(0.8, 1.2)),
                       float(rng.uniform(0.8, 1.2))),
          stain_tilt=float(rng.uniform(-0.08, 0.08)),
      ))
  return out


def render_tile(
    patient: Patient, magnification: str, tile: int, *,
    size: tuple[int, int] = (192, 256), seed: int = 0,
) -> tuple[np.ndarray, dict[str, Any]]:
  """One H&E-like tile ``uint8 [H, W, 3]`` and its ground-truth stats."""
  if magnification not in MAG_SCALE:
    raise ValueError(f"magnification {magnification!r}: expected one of "
                     f"{MAGNIFICATIONS}")
  rng = np.random.default_rng(
      [seed, patient.grade, int(patient.patient_id),
       MAGNIFICATIONS.index(magnification), tile])
  p = GRADES[patient.grade]
  s = MAG_SCALE[magnification]
  h, w = size
  area = h * w / (192 * 256)  # Counts are per 192 x 256 40x tile.
  counts = patient.count_factor * area / (s * s)
  radius = p.radius * patient.size_factor * s
  # Stroma (eosin) with fibres; cytoplasm around tumour cells.
  eosin = 0.55 + 0.12 * _smooth_noise(rng, size, max(4, int(24 * s)))
  ang = rng.uniform(0, np.pi)
  yy, xx = np.mgrid[0:h, 0:w]
  fibres = np.sin((xx * np.cos(ang) + yy * np.sin(ang)) / max(1.0, 2.5 * s)
                  + 3 * _smooth_noise(rng, size, max(4, int(16 * s))))
  eosin = eosin + 0.12 * fibres + 0.05 * rng.normal(size=size)
  haem = np.zeros(size)
  lumen = np.zeros(size, bool)
  # Tubules: lumen + one ring of polarised nuclei.
  n_glands = int(round(rng.integers(p.glands[0], p.glands[1] + 1)
                       * patient.count_factor * area / (s * s) ** 0.5))
  centres = _place(rng, n_glands, size, 2 * 26 * s * 1.1)
  gland_pts = np.asarray(centres, np.float64).reshape(-1, 2)

  def in_gland(pts):
    if not len(gland_pts):
      return np.zeros(len(pts), bool)
    d = np.linalg.norm(pts[:, None, :] - gland_pts[None], axis=-1)
    return np.any(d < 22 * s, axis=1)

  ring_nuclei, stats_area, n_nuclei = [], 0, 0
  for cy, cx in centres:
    ly, lx = rng.uniform(8, 16, 2) * s
    lang = rng.uniform(0, np.pi)
    ca, sa = np.cos(lang), np.sin(lang)
    u = (xx - cx) * ca + (yy - cy) * sa
    v = -(xx - cx) * sa + (yy - cy) * ca
    inside = (u / lx) ** 2 + (v / ly) ** 2 <= 1
    lumen |= inside
    n_ring = max(6, int(2 * np.pi * (lx + ly) / 2 / (2.3 * radius + 0.5)))
    for t in np.linspace(0, 2 * np.pi, n_ring, endpoint=False):
      rr = 1.0 + (radius + 1) / max(1.0, min(lx, ly))
      ring_nuclei.append((cy + rr * (lx * np.cos(t) * sa + ly * np.sin(t)
                                     * ca),
                          cx + rr * (lx * np.cos(t) * ca - ly * np.sin(t)
                                     * sa), t))
  eosin = np.where(lumen, 0.02, eosin)
  # Tumour nuclei outside glands (nests + sheets).
  n_tumour = int(round(p.nuclei * counts))
  free = _place(rng, n_tumour, size, 2.0 * radius, forbid=in_gland)

  def nucleus(cy, cx, angle=None):
    r = radius * max(0.4, 1 + p.radius_cv * rng.normal())
    aspect = float(np.clip(1 - abs(rng.normal(0, 0.1 + p.irregularity)),
                           0.45, 1.0))
    harm = [(p.irregularity * rng.uniform(0, 1), rng.uniform(0, 2 * np.pi))
            for _ in range(2)]
    value = 0.9 * p.darkness * rng.uniform(0.9, 1.1)
    return _blob(haem, cy, cx, max(0.6, r), aspect,
                 rng.uniform(0, np.pi) if angle is None else angle, harm,
                 value, p.chromatin, rng)
  for cy, cx, t in ring_nuclei:
    stats_area += nucleus(cy, cx, angle=t)
    n_nuclei += 1
  for cy, cx in free:
    stats_area += nucleus(cy, cx)
    n_nuclei += 1
  # Cytoplasm: eosin halo around tumour cells (darker pink).
  cells = np.clip(haem * 3, 0, 1)
  eosin = eosin + 0.15 * cells
  # Mitotic figures: dense irregular clusters of small dark blobs.
  n_mit = int(round(rng.integers(p.mitoses[0], p.mitoses[1] + 1)
                    * area / (s * s) ** 0.5))
  for cy, cx in _place(rng, n_mit, size, 4 * radius, forbid=in_gland):
    for _ in range(int(rng.integers(3, 7))):
      _blob(haem, cy + rng.normal(0, radius * 0.6),
            cx + rng.normal(0, radius * 0.6), max(0.5, radius * 0.45), 0.6,
            rng.uniform(0, np.pi), [(0.2, rng.uniform(0, 6.3))], 2.0, 0.1,
            rng)
  # Optical density -> RGB with the patient's stain jitter.
  hs, es = patient.stain_scale
  tilt = patient.stain_tilt
  vh = STAINS[0] + np.array([tilt, -tilt, 0.0])
  ve = STAINS[1] + np.array([0.0, tilt, -tilt])
  od = (np.clip(haem, 0, None)[..., None] * hs * vh
        + np.clip(eosin, 0, None)[..., None] * es * ve)
  od = od + 0.02 * rng.normal(size=od.shape)
  rgb = np.clip(255 * np.exp(-np.clip(od, 0, None)), 0, 255).astype(np.uint8)
  stats = {
      "grade": patient.grade, "patient_id": patient.patient_id,
      "magnification": magnification, "tile": tile,
      "num_nuclei": n_nuclei, "num_tubules": len(centres),
      "num_mitoses": n_mit,
      "mean_nuclear_area": stats_area / max(1, n_nuclei),
      "nuclear_fraction": float(np.mean(haem > 0.45)),
  }
  return rgb, stats


def file_name(patient: Patient, magnification: str, tile: int) -> str:
  """``<NN>_BC_G<g>_<patient>_<mag>_<k>.JPG`` (Databiox's names)."""
  return (f"{patient.index:02d}_BC_G{patient.grade}_{patient.patient_id}_"
          f"{magnification}_{tile}.JPG")


def write_dataset(
    out_dir,
    *,
    patients_per_grade: int = 8,
    tiles_per_patient: int = 4,
    magnifications: tuple[str, ...] = MAGNIFICATIONS,
    size: tuple[int, int] = (192, 256),
    seed: int = 0,
    quality: int = 92,
    progress: bool = False,
) -> dict[str, Any]:
  """Writes the tree under ``out_dir``; returns the manifest (also saved).

  Raises:
    ValueError: non-positive counts or an unknown magnification.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  if patients_per_grade < 1 or tiles_per_patient < 1:
    raise ValueError(
        f"patients_per_grade={patients_per_grade}, tiles_per_patient="
        f"{tiles_per_patient}: expected >= 1 each")
  unknown = set(magnifications) - set(MAGNIFICATIONS)
  if unknown:
    raise ValueError(f"magnifications {sorted(unknown)}: expected some of "
                     f"{MAGNIFICATIONS}")
  root = pathlib.Path(out_dir)
  patients = make_patients(patients_per_grade, seed)
  jobs = [(pt, m, k) for pt in patients for m in magnifications
          for k in range(1, tiles_per_patient + 1)]
  if progress:
    import tqdm  # pylint: disable=g-import-not-at-top
    jobs = tqdm.tqdm(jobs, desc="synthetic histology tiles")
  tiles = []
  for pt, m, k in jobs:
    rgb, stats = render_tile(pt, m, k, size=size, seed=seed)
    path = root / f"BC_IDC_Grade_{pt.grade}" / m / file_name(pt, m, k)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path, format="JPEG", quality=quality)
    tiles.append({"file": str(path.relative_to(root)), **stats})
  manifest = {
      "generator": "mammojax.data.synthetic_histology",
      "seed": seed, "patients_per_grade": patients_per_grade,
      "tiles_per_patient": tiles_per_patient, "size": list(size),
      "magnifications": list(magnifications), "tiles": tiles,
  }
  (root / "synthetic_manifest.json").write_text(json.dumps(manifest,
                                                           indent=1))
  return manifest


def example_figure(path, *, seed: int = 0,
                   size: tuple[int, int] = (192, 256)) -> str:
  """PNG with one 40x tile per grade (the docs' figure); returns ``path``."""
  from matplotlib import figure as mfigure  # pylint: disable=g-import-not-at-top

  fig = mfigure.Figure(figsize=(10.5, 3.0), dpi=100)
  axes = fig.subplots(1, 3)
  for ax, patient in zip(axes, make_patients(1, seed)):
    rgb, stats = render_tile(patient, "40x", 1, size=size, seed=seed)
    ax.imshow(rgb)
    ax.set_title(f"grade {patient.grade}: {stats['num_tubules']} tubules, "
                 f"{stats['num_mitoses']} mitoses", fontsize=9)
    ax.axis("off")
  fig.tight_layout()
  fig.savefig(path)
  return str(path)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--out", required=True)
  parser.add_argument("--patients-per-grade", type=int, default=8)
  parser.add_argument("--tiles-per-patient", type=int, default=4)
  parser.add_argument("--height", type=int, default=192)
  parser.add_argument("--width", type=int, default=256)
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--figure", default="",
                      help="also write a PNG with one 40x tile per grade")
  args = parser.parse_args(argv)
  if args.figure:
    print(f"wrote {example_figure(args.figure, seed=args.seed)}")
  manifest = write_dataset(
      args.out, patients_per_grade=args.patients_per_grade,
      tiles_per_patient=args.tiles_per_patient,
      size=(args.height, args.width), seed=args.seed, progress=True)
  print(f"wrote {len(manifest['tiles'])} tiles to {args.out}")


if __name__ == "__main__":
  main()
