"""Generator config, label vocabularies and seeded random streams.

`SyntheticConfig` holds every knob of the generator (lengths in mm unless a
name says otherwise). Every random draw of the generator comes from
`_rng(seed, kind, ids...)`, a `numpy.random.default_rng` stream per
(seed, kind, id); the kinds below keep the streams apart, so a draw of one
kind never shifts another kind's draws and any image can be generated alone
and in any order.
"""

import dataclasses
from typing import Optional

import numpy as np

from mammojax.data import vocab as vocab_lib

_VOCAB = vocab_lib.VOCABULARIES["synthetic"]
MORPHOLOGIES = _VOCAB["morphology"]
DISTRIBUTIONS = _VOCAB["distribution"]
MASS_SHAPES = _VOCAB["mass_shape"]
MASS_MARGINS = _VOCAB["mass_margin"]
DENSITIES = _VOCAB["density"]
SUBTYPES = _VOCAB["subtype"]

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
  # Drawn exponent of the parenchyma field. Measured on the output as on a
  # real mammogram (`render.measure_image_beta`: ROIs in the breast, 0.1-1
  # cycles/mm) the mean is ~3.0, every image inside 2.6-3.3, as real
  # full-field and digitised-film mammograms (2.88-3.15); the detector blur
  # and noise, the thickness fall-off and the windowing add ~+0.07.
  beta_mean: float = 2.93
  beta_std: float = 0.05
  beta_range: tuple[float, float] = (2.83, 3.03)
  density_probs: tuple[float, ...] = (0.1, 0.4, 0.4, 0.1)
  # Glandular fraction mean and texture std per ACR density a-d.
  gland_mean: tuple[float, ...] = (0.05, 0.2, 0.4, 0.6)
  gland_std: tuple[float, ...] = (0.08, 0.12, 0.15, 0.17)
  # Calcifications. `calc_statistics` = "cbis_ddsm" (default): a cluster's
  # (dominant morphology, other morphologies, distribution), its subtlety
  # and the clusters per image follow the CBIS-DDSM calc case descriptions
  # (`statistics.py`, data file cbis_ddsm_calc_statistics.json); the
  # dominant morphology's marginal is `dominant_morphology_probs` (None: the
  # real one). The other morphologies of a mixed cluster each label a
  # spatially coherent group of neighbours, a `minority_fraction` share of
  # the members. "independent" (the generator before issue 15): distribution
  # and dominant morphology drawn independently from `distribution_probs` /
  # `morphology_probs`, a `mixed_morphology_fraction` of the calcifications
  # relabelled uniformly at random, no subtlety, `clusters_per_image`
  # (None -> 1) clusters per image.
  calc_statistics: str = "cbis_ddsm"
  clusters_per_image: Optional[int] = None  # None: drawn (cbis_ddsm) / 1
  max_clusters_per_image: int = 7
  dominant_morphology_probs: Optional[tuple[float, ...]] = None
  minority_fraction: tuple[float, float] = (0.2, 0.4)
  # Conspicuity per CBIS-DDSM subtlety 1 (subtle) .. 5 (obvious): factors
  # on the calcifications' attenuation and on their linear size (5 = the
  # "independent" generator's rendering).
  subtlety_contrast: tuple[float, ...] = (0.45, 0.6, 0.75, 0.9, 1.0)
  subtlety_size: tuple[float, ...] = (0.75, 0.85, 0.92, 1.0, 1.0)
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


def _rng(seed: int, *ids: int) -> np.random.Generator:
  """A generator for one (seed, kind, ids...) stream."""
  return np.random.default_rng([int(seed) % (2**63), *map(int, ids)])
