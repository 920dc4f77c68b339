"""Patient layout of the image stream: who and what image `index` is.

Patients are laid out as a stream: patient p has 1 or 2 views (CC and / or
MLO) of one breast, and `config.images_per_patient` is the mean (1.95 = the
paper's 390 / 200). `image_spec(config, seed, index)` needs neither the other
images nor the dataset size; `plan_dataset` lists the first `num_images`.
"""

import dataclasses
import math
from typing import Optional

from mammojax.data.synthetic.config import _LAYOUT
from mammojax.data.synthetic.config import _PATIENT
from mammojax.data.synthetic.config import SyntheticConfig
from mammojax.data.synthetic.config import _rng


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
