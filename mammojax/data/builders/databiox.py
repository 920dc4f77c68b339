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
magnifications are counted in ``build_report['stats']``, not skipped);
``rmcg_40x`` keeps 40x at 224 x 224 (RMCG's input, a centre square crop).
Databiox has no official split: one split ``full``, split patient-wise by
the pipeline. Unreadable JPEGs and grayscale JPEGs (mode ``L`` / ``1`` /
``I``: not an H&E colour image) are skipped and counted; the parser's
skips (unknown grade folder, patient in two grades, ...) are in
``mammojax.data.sources.databiox``.

``synthetic_databiox`` (same module, a subclass: same features, same parser,
same image processing) first writes the synthetic IDC tiles of
``mammojax.data.synthetic_histology`` as JPEG files in Databiox's layout
under the TFDS download folder (``<data_dir>/downloads/synthetic_databiox/
<config>``) and then reads them back exactly as a real download. Configs:
``default`` (8 patients per grade x 4 tiles x 4 magnifications, 192 x 256
JPEG tiles, 40x kept at 128 x 128: 96 images of 24 patients), ``tiny``
(2 x 2 tiles of 96 x 128, all magnifications at 64 x 64; tests) and
``paper`` (41 patients per grade, Databiox's 124 patients, 2 tiles at
384 x 512, 40x kept at 224 x 224).
"""

from __future__ import annotations

import dataclasses
import pathlib

import numpy as np
import tensorflow_datasets as tfds

from mammojax.data import resample
from mammojax.data import synthetic_histology
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


class GrayscaleImageError(ValueError):
  """A JPEG without colour channels (Databiox images are RGB H&E)."""


def load_rgb(path, size: tuple[int, int]) -> np.ndarray:
  """JPEG -> uint8 [H, W, 3]: centre crop to the aspect, area resize.

  Raises:
    OSError: unreadable file. GrayscaleImageError: a one-channel image.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top

  with Image.open(path) as im:
    if im.mode in ("L", "LA", "1", "I", "I;16", "F"):
      raise GrayscaleImageError(f"grayscale image (mode {im.mode})")
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
  except GrayscaleImageError as e:
    return base.ItemResult(skipped=[(
        str(record.image_path), f"{e}; expected an RGB H&E image")])
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
      DataBioxConfig(name="rmcg_40x", description="40x at 224 x 224 (RMCG).",
                     image_size=(224, 224), magnifications=("40x",)),
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

  def _source_dir(self, dl_manager):
    return base.manual_dir(dl_manager)

  def _split_generators(self, dl_manager):
    config = self.builder_config
    records, report = source.parse_databiox(
        self._source_dir(dl_manager),
        magnifications=config.magnifications or None,
    )
    items = [base.PlannedItem(base.FULL_SPLIT, r.example_id,
                              r.patient_id, (r, config)) for r in records]
    build = base.LazyBuild(self, report, self._vocabularies())
    return build.splits(items, _process)

  def _generate_examples(self, examples):
    yield from examples


@dataclasses.dataclass
class SyntheticDataBioxConfig(DataBioxConfig):
  """``DataBioxConfig`` plus the generator's options (part of the cache key).

  Attributes:
    patients_per_grade: patients of each grade.
    tiles_per_patient: tiles per patient and magnification.
    tile_size: (H, W) of the written JPEG tiles.
    seed: the generator seed.
  """

  patients_per_grade: int = 8
  tiles_per_patient: int = 4
  tile_size: tuple[int, int] = (192, 256)
  seed: int = 0


class SyntheticDatabiox(Databiox):
  """Synthetic IDC tiles written in Databiox's layout, read back as Databiox."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      SyntheticDataBioxConfig(
          name="default", description="96 40x tiles of 24 patients, 128^2.",
          image_size=(128, 128), magnifications=("40x",)),
      SyntheticDataBioxConfig(
          name="tiny", description="Tiny tiles of 6 patients; for tests.",
          image_size=(64, 64), patients_per_grade=2, tiles_per_patient=2,
          tile_size=(96, 128)),
      SyntheticDataBioxConfig(
          name="paper", description="124 patients, 40x at 224^2.",
          image_size=(224, 224), magnifications=("40x",),
          patients_per_grade=41, tiles_per_patient=2, tile_size=(384, 512)),
  ]
  MANUAL_DOWNLOAD_INSTRUCTIONS = None

  def _source_dir(self, dl_manager):
    config = self.builder_config
    out = pathlib.Path(dl_manager.download_dir) / "synthetic_databiox" / (
        config.name)
    if not (out / "synthetic_manifest.json").exists():
      synthetic_histology.write_dataset(
          out, patients_per_grade=config.patients_per_grade,
          tiles_per_patient=config.tiles_per_patient,
          size=tuple(config.tile_size), seed=config.seed, progress=True)
    return out
