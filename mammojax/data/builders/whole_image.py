"""The whole-image feature set shared by the image-level builders.

``synthetic_cmmd``, ``cmmd``, ``cbis_ddsm_masses`` and
``dicom_folder_images`` emit one example per mammogram with the features of
docs/architecture.md ("Whole-image datasets"). This module holds that
feature set and its vocabularies, the builder configs with their names and
sizes (the same as ``synthetic_cmmd``'s, so that a config can switch between
synthetic and real data), the label parsing (subtype spellings, luminal from
subtype, 0 / 1 flags), and the view helpers: ``load_view`` (a DICOM file as
the laterality-normalised, breast-cropped, resized view) and
``map_to_view`` (a stored-grid array into that view's geometry).
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np
import pydicom
import tensorflow_datasets as tfds

from mammojax.data import dicom
from mammojax.data import resample
from mammojax.data import vocab as vocab_lib
from mammojax.data.builders import base

SUBTYPES = vocab_lib.VOCABULARIES["synthetic"]["subtype"]
_SUBTYPE_ALIASES = {
    "luminal a": "luminal_a",
    "luminal b": "luminal_b",
    "her2-enriched": "her2_enriched",
    "her2 enriched": "her2_enriched",
    "triple negative": "triple_negative",
    "triple-negative": "triple_negative",
}
LUMINAL_SUBTYPES = ("luminal_a", "luminal_b")


@dataclasses.dataclass
class WholeImageConfig(tfds.core.BuilderConfig):
  """Build options of the whole-image builders (part of the cache key).

  Attributes:
    image_size: (H, W) of the stored ``image``.
    downsample: integer block-average factor applied to the stored pixels
      before anything else (faster builds of large files; 1 = off).
    accept_non_mg: rules accepting non-MG files (``dicom.check_accept_rules``;
      from ``config.dataset.accept_non_mg``).
    for_processing: 'display' | 'min_max', what FOR PROCESSING images
      without a window get (``dicom.load_dicom``; from
      ``config.dataset.for_processing``).
  """

  image_size: tuple[int, int] = (256, 160)
  downsample: int = 1
  accept_non_mg: tuple[str, ...] = ()
  for_processing: str = "display"


# The same names and sizes as ``synthetic_cmmd``, so that a config can
# switch between synthetic and real whole-image data.
WHOLE_IMAGE_CONFIGS = [
    WholeImageConfig(name="default", description="256 x 160 images."),
    WholeImageConfig(
        name="paper",
        description="The luminal paper's 1326 x 512 images.",
        image_size=(1326, 512),
    ),
    WholeImageConfig(
        name="tiny",
        description="64 x 40 images, stored pixels halved; for tests.",
        image_size=(64, 40),
        downsample=2,
    ),
]


def whole_image_features(
    config: WholeImageConfig, extra: Mapping[str, Any] | None = None
) -> tfds.features.FeaturesDict:
  """Returns the whole-image feature set (plus ``extra`` features)."""
  features = {
      "example_id": tfds.features.Text(),
      "patient_id": tfds.features.Text(),
      "image_id": tfds.features.Text(),
      "laterality": tfds.features.Text(),
      "view": tfds.features.Text(),
      "image": tfds.features.Tensor(
          shape=tuple(config.image_size), dtype=np.uint8, encoding="zlib"
      ),
      "calcification": tfds.features.Scalar(dtype=np.int64),
      "mass": tfds.features.Scalar(dtype=np.int64),
      "malignant": tfds.features.Scalar(dtype=np.int64),
      "subtype": tfds.features.Scalar(dtype=np.int64),
      "luminal": tfds.features.Scalar(dtype=np.int64),
  }
  features.update(extra or {})
  return tfds.features.FeaturesDict(features)


def whole_image_vocabularies() -> dict[str, list[str]]:
  """Returns the vocabularies of the whole-image labels."""
  return {
      "subtype": list(SUBTYPES),
      "luminal": ["non_luminal", "luminal"],
      "binary": ["no", "yes"],
  }


def dataset_info(
    builder: tfds.core.GeneratorBasedBuilder, description: str
) -> tfds.core.DatasetInfo:
  """Returns the DatasetInfo of a builder of exactly the whole-image features.

  Args:
    builder: the builder (its ``builder_config`` is a ``WholeImageConfig``
      or has its ``image_size``).
    description: the dataset description (the builder module's docstring).
  """
  return tfds.core.DatasetInfo(
      builder=builder,
      description=description,
      features=whole_image_features(builder.builder_config),
      metadata=tfds.core.MetadataDict(vocabularies=whole_image_vocabularies()),
  )


# ---------------------------------------------------------------------------
# Labels.
# ---------------------------------------------------------------------------


def subtype_index(value: Any) -> int:
  """Subtype name (several spellings) -> index in ``SUBTYPES``; -1 unknown.

  Raises:
    ValueError: a name outside the vocabulary.
  """
  if value is None or str(value).strip() == "":
    return -1
  name = str(value).strip().lower()
  name = _SUBTYPE_ALIASES.get(name, name.replace(" ", "_").replace("-", "_"))
  if name not in SUBTYPES:
    raise ValueError(
        f"subtype {value!r} not in vocabulary subtype={list(SUBTYPES)}"
    )
  return SUBTYPES.index(name)


def luminal_from_subtype(subtype: int) -> int:
  """1 for Luminal A / B, 0 for HER2-enriched / triple negative, -1 else."""
  if subtype < 0:
    return -1
  return int(SUBTYPES[subtype] in LUMINAL_SUBTYPES)


def binary(
    value: Any,
    *,
    field: str,
    yes: Sequence[str] = (),
    no: Sequence[str] = (),
) -> int:
  """0 / 1 / -1 from 0/1 (int or text), a name in ``yes`` / ``no``, or None.

  Raises:
    ValueError: any other value (the message names ``field``).
  """
  if value is None or (isinstance(value, str) and not value.strip()):
    return -1
  text = str(value).strip().lower()
  if text in ("0", "1", "-1"):
    return int(text)
  if text in ("true", "yes") or text in yes:
    return 1
  if text in ("false", "no") or text in no:
    return 0
  raise ValueError(
      f"{field} {value!r}: expected 0 / 1"
      + (f" / {' / '.join(list(yes) + list(no))}" if yes or no else "")
      + " (empty = unknown)"
  )


# ---------------------------------------------------------------------------
# Views and examples.
# ---------------------------------------------------------------------------


def load_view(
    path: pathlib.Path,
    config: WholeImageConfig,
    *,
    laterality: str | None = None,
) -> tuple[pydicom.Dataset, dicom.Mammogram]:
  """Returns (in-memory dataset, laterality-normalised breast-cropped view)."""
  ds = base.read_dataset(path, downsample=config.downsample,
                         laterality=laterality)
  view = dicom.load_dicom(
      ds, orient=True, crop=True, resize=tuple(config.image_size),
      **base.load_options(config),
  )
  return ds, view


def map_to_view(
    stored: np.ndarray, view: dicom.Mammogram, size: tuple[int, int]
) -> np.ndarray:
  """Maps a stored-grid array (e.g. an ROI mask) into ``view``'s geometry.

  Applies the same crop, mirror and resize (``view`` must come from
  ``load_dicom(..., resize=size)`` with a (H, W) size) and zero-pads.

  Returns:
    float32 ``size`` array aligned with ``view.image``.
  """
  x0, y0, x1, y1 = view.crop_box
  region = np.asarray(stored, np.float32)[y0:y1, x0:x1]
  if view.flipped:
    region = region[:, ::-1]
  h, w = region.shape
  sy, sx = view.scale
  content = (
      min(size[0], max(1, int(round(h * sy)))),
      min(size[1], max(1, int(round(w * sx)))),
  )
  out = np.zeros(size, np.float32)
  out[: content[0], : content[1]] = resample.resize_image(region, content)
  return out


def whole_image_example(
    view: dicom.Mammogram,
    *,
    example_id: str,
    patient_id: str,
    image_id: str,
    view_name: str | None,
    labels: Mapping[str, int],
) -> dict[str, Any]:
  """Returns the whole-image features of one mammogram (-1 = unknown)."""
  return {
      "example_id": example_id,
      "patient_id": patient_id,
      "image_id": image_id,
      "laterality": view.laterality or "",
      "view": view_name or "",
      "image": base.to_uint8(view.image),
      "calcification": int(labels.get("calcification", -1)),
      "mass": int(labels.get("mass", -1)),
      "malignant": int(labels.get("malignant", -1)),
      "subtype": int(labels.get("subtype", -1)),
      "luminal": int(labels.get("luminal", -1)),
  }


def label_summary(ex: Mapping[str, Any], vocabularies) -> dict[str, Any]:
  """Returns the readable labels of a whole-image example (build report)."""
  out = {k: int(ex[k]) for k in ("calcification", "mass", "malignant",
                                 "luminal")}
  s = int(ex["subtype"])
  out["subtype"] = vocabularies["subtype"][s] if s >= 0 else None
  out["laterality"] = ex["laterality"]
  out["view"] = ex["view"]
  return out
