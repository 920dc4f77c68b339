"""Realistic synthetic full-field digital mammograms (numpy / scipy only).

Each image is rendered as a log-attenuation map `A` (bright = dense) in the
laterality-normalised frame (chest wall at column 0), then mirrored for right
breasts, mapped to 12/14-bit stored values and wrapped in a DICOM
"Digital Mammography X-Ray Image - For Presentation" dataset.

Model (the project's own; the parenchyma is the power-law background of
Burgess, Jacobson & Judy, "Human observer detection experiments with
mammograms and power-law noise", Med. Phys. 2001, and the findings carry the
ACR BI-RADS Atlas descriptors):
* breast outline: a superellipse-like profile with a low-frequency wobble,
  nipple bump, skin line and a peripheral thickness fall-off; on MLO views a
  pectoral-muscle triangle at the upper chest-wall corner;
* parenchyma: a Gaussian power-law field, P(f) ~ 1 / f^beta (amplitude filter
  f^(-beta/2) on white noise), beta ~ N(2.93, 0.05) clipped to
  [2.83, 3.03], so that the texture measured on the output as on a real
  mammogram (`measure_image_beta`: Hann-windowed ROIs in the breast, 0.1-1
  cycles/mm) has a mean of ~3.0 with every image in 2.6-3.3, as real
  full-field and digitised-film mammograms measure 2.88-3.15;
  scaled by ACR density (a-d) and an envelope that keeps a subcutaneous fat
  layer; `measure_beta` recovers beta from the output;
* clusters: by default drawn with the statistics of the CBIS-DDSM calc
  cases (joint morphology x distribution, coherent mixed morphologies,
  subtlety -> conspicuity, several clusters per image; `statistics.py`);
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
`cluster_id`; clusters with `distribution`, `pathology` and (default
generator) `subtlety` 1-5; masses; image
`labels`: `pathology` (malignant if any finding is), `subtype` (malignant
cases only; weakly correlated with appearance: spiculated masses tilt
towards luminal A, fine pleomorphic / linear calcifications towards HER2,
round / oval masses towards triple negative), `background_beta`.

Layout (one concept per module; this package re-exports the public API):
  config.py        SyntheticConfig, label vocabularies, seeded streams
  layout.py        ImageSpec, the patient stream: image_spec, plan_dataset
  texture.py       power-law parenchyma: power_law_texture, measure_beta
  geometry.py      breast outline, nipple, pectoral muscle, 3-D -> view
  calc_shapes.py   calcification shapes and rendering, trace_contour
  planning.py      findings plan of a breast: clusters, masses, risk, subtype
  statistics.py    CBIS-DDSM cluster statistics: estimate, draw, compare
  masses.py        mass outlines and margins, rendered into `A`
  render.py        generate_image, SyntheticImage, windowing, beta ROI
  dicom_writer.py  MG For Presentation datasets, write_dicom, for_processing
  dataset.py       generate_dataset, write_dataset, summarise
"""

from mammojax.data.synthetic.calc_shapes import trace_contour
from mammojax.data.synthetic.config import DENSITIES
from mammojax.data.synthetic.config import DISTRIBUTIONS
from mammojax.data.synthetic.config import MASS_MARGINS
from mammojax.data.synthetic.config import MASS_SHAPES
from mammojax.data.synthetic.config import MORPHOLOGIES
from mammojax.data.synthetic.config import SUBTYPES
from mammojax.data.synthetic.config import SyntheticConfig
from mammojax.data.synthetic.dataset import dumps_summary
from mammojax.data.synthetic.dataset import generate_dataset
from mammojax.data.synthetic.dataset import summarise
from mammojax.data.synthetic.dataset import write_dataset
from mammojax.data.synthetic.dicom_writer import MG_FOR_PRESENTATION
from mammojax.data.synthetic.dicom_writer import MG_FOR_PROCESSING
from mammojax.data.synthetic.dicom_writer import for_processing
from mammojax.data.synthetic.dicom_writer import write_dicom
from mammojax.data.synthetic.layout import ImageSpec
from mammojax.data.synthetic.layout import image_spec
from mammojax.data.synthetic.layout import plan_dataset
from mammojax.data.synthetic.render import SyntheticImage
from mammojax.data.synthetic.render import apply_windowing
from mammojax.data.synthetic.render import beta_roi_image
from mammojax.data.synthetic.render import generate_image
from mammojax.data.synthetic.render import measure_image_beta
from mammojax.data.synthetic.texture import breast_power_spectrum_beta
from mammojax.data.synthetic.texture import measure_beta
from mammojax.data.synthetic.texture import power_law_texture

__all__ = [
    "DENSITIES",
    "DISTRIBUTIONS",
    "ImageSpec",
    "MASS_MARGINS",
    "MASS_SHAPES",
    "MG_FOR_PRESENTATION",
    "MG_FOR_PROCESSING",
    "MORPHOLOGIES",
    "SUBTYPES",
    "SyntheticConfig",
    "SyntheticImage",
    "apply_windowing",
    "beta_roi_image",
    "dumps_summary",
    "for_processing",
    "generate_dataset",
    "generate_image",
    "measure_image_beta",
    "breast_power_spectrum_beta",
    "image_spec",
    "measure_beta",
    "plan_dataset",
    "power_law_texture",
    "summarise",
    "trace_contour",
    "write_dataset",
    "write_dicom",
]
