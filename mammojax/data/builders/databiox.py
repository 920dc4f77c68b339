"""Databiox histopathology TFDS builder: ``databiox``.

``manual_dir`` holds the ``BC_IDC_Grade_{1,2,3}/{4x,10x,20x,40x}/*.jpg``
folders, parsed by ``mammojax.data.sources.parse_databiox`` (file names
``<NN>_BC_G<grade>_<patient>_<mag>_<k>.<jpg|JPG>``; the 4-5 digit number
after the grade is the patient). One example per image:

  example_id     text          the file name without extension
  patient_id     text          the patient number from the file name
  image          uint8 [H, W, 3]  RGB, centre-cropped to the aspect ratio
                               of ``image_size`` and resized (area
                               averaging) to it; no padding, no distortion
  grade          int64         histological grade 1-3 as class 0-2
  magnification  text          '4x' | '10x' | '20x' | '40x'

The builder config chooses the magnifications: ``default`` keeps all four,
``mag_4x`` / ``mag_10x`` / ``mag_20x`` / ``mag_40x`` one (images at other
magnifications are counted in ``build_report['stats']``, not skipped).
Databiox has no official split: one split ``full``, split patient-wise by
the pipeline.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from mammojax.data import resample
from mammojax.data.builders import base
from mammojax.data.sources import databiox as source

GRADES = ("grade_1", "grade_2", "grade_3")


@dataclasses.dataclass
class DataBioxConfig(tfds.core.BuilderConfig):
  """Options of ``databiox`` (part of the cache key).

  Attributes:
    image_size: (H, W) of the stored RGB image.
    magnifications: the magnifications kept; empty = all.
  """

  image_size: tuple[int, int] = (384, 512)
  magnifications: tuple[str, ...] = ()


def load_rgb(path, size: tuple[int, int]) -> np.ndarray:
  """JPEG -> uint8 [H, W, 3]: centre crop to the aspect, area resize."""
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(path) as im:
    rgb = np.asarray(im.convert("RGB"), np.float32)
  h, w = rgb.shape[:2]
  th, tw = size
  if h * tw > w * th:  # Too tall: crop rows.
    ch = max(1, int(round(w * th / tw)))
    y0 = (h - ch) // 2
    rgb = rgb[y0:y0 + ch]
  else:
    cw = max(1, int(round(h * tw / th)))
    x0 = (w - cw) // 2
    rgb = rgb[:, x0:x0 + cw]
  channels = [resample.resize_image(rgb[..., c], size) for c in range(3)]
  return np.clip(np.round(np.stack(channels, -1)), 0, 255).astype(np.uint8)


def _process(payload) -> base.ItemResult:
  record, config = payload
  try:
    image = load_rgb(record.image_path, tuple(config.image_size))
  except OSError as e:
    return base.ItemResult(
        skipped=[(str(record.image_path), f"unreadable image ({e})")])
  grade = int(record.labels["grade"])
  ex = {
      "example_id": record.example_id,
      "patient_id": record.patient_id,
      "image": image,
      "grade": grade - 1,
      "magnification": record.labels["magnification"],
  }
  return base.ItemResult(examples=[(record.example_id, ex, {
      "grade": GRADES[grade - 1],
      "magnification": record.labels["magnification"],
  })])


class Databiox(tfds.core.GeneratorBasedBuilder):
  """Databiox IDC histopathology images with their histological grade."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      DataBioxConfig(name="default", description="All magnifications."),
      *[
          DataBioxConfig(name=f"mag_{m}", description=f"{m} images only.",
                         magnifications=(m,))
          for m in source.MAGNIFICATIONS
      ],
      DataBioxConfig(name="tiny", description="48 x 64 images; for tests.",
                     image_size=(48, 64)),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at the Databiox folder holding "
      "BC_IDC_Grade_1/2/3/<4x|10x|20x|40x>/*.jpg (docs/datasets.md)."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    h, w = self.builder_config.image_size
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=tfds.features.FeaturesDict({
            "example_id": tfds.features.Text(),
            "patient_id": tfds.features.Text(),
            "image": tfds.features.Tensor(shape=(h, w, 3), dtype=np.uint8,
                                          encoding="zlib"),
            "grade": tfds.features.Scalar(dtype=np.int64),
            "magnification": tfds.features.Text(),
        }),
        metadata=tfds.core.MetadataDict(vocabularies=self._vocabularies()),
    )

  @staticmethod
  def _vocabularies() -> dict[str, list[str]]:
    return {"grade": list(GRADES),
            "magnification": list(source.MAGNIFICATIONS)}

  def _split_generators(self, dl_manager):
    config = self.builder_config
    records, report = source.parse_databiox(
        base.manual_dir(dl_manager),
        magnifications=config.magnifications or None,
    )
    items = [base.PlannedItem(base.FULL_SPLIT, r.example_id,
                              r.patient_id, (r, config)) for r in records]
    build = base.LazyBuild(self, report, self._vocabularies())
    return build.splits(items, _process)

  def _generate_examples(self, examples):
    yield from examples
