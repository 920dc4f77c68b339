"""The mass-ROI feature set shared by the mass builders.

``cbis_ddsm_masses`` (real CBIS-DDSM masses), ``synthetic_masses`` (the
project's synthetic mammograms) and the INbreast mass configuration store one
example per mass abnormality with the same features, so a config switches
between them with ``config.dataset.name``: the whole-image features of
``whole_image`` (the laterality-normalised, breast-cropped view) plus

  roi_mask      uint8 [H, W]  the ROI mask in the geometry of ``image``
                              (255 inside; all 0 without a mask)
  has_roi_mask  int64         1 if the abnormality's outline / mask is known
  crop          uint8 [C, C]  the abnormality: the outline's bounding box,
                              centred, squared and padded to
                              ``1 + 2 * crop_margin`` times its long side,
                              cut from the laterality-normalised
                              full-resolution view (zero outside the image)
                              and resized to C x C
  crop_mask     uint8 [C, C]  the outline / ROI mask in the geometry of
                              ``crop`` (255 inside)
  crop_box      float32 [4]   (x0, y0, x1, y1) of the crop in the
                              laterality-normalised stored-pixel grid, -1
                              when not cut from the full image
  abnormality_id  int64       the abnormality's id within its image
  mass_shape, mass_margin  int64  index in the vocabularies, -1 unknown
  pathology     int64         0 benign, 1 malignant
  pathology_raw text          the source's pathology string
  assessment, subtlety  int64 BI-RADS assessment 0-5 / subtlety 1-5 (-1)
  density       int64         ACR density a-d as 0-3 (-1 unknown)

The vocabularies (``info.metadata['vocabularies']``) carry ``mass_shape``,
``mass_margin`` (each dataset's own values), ``pathology`` and ``density``
beside the whole-image ones.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping, Sequence

from matplotlib import path as mpath
import numpy as np
import tensorflow_datasets as tfds

from mammojax.data import resample
from mammojax.data.builders import base
from mammojax.data.builders import whole_image

PATHOLOGY = ("benign", "malignant")
DENSITY = ("a", "b", "c", "d")


@dataclasses.dataclass
class MassRoiConfig(whole_image.WholeImageConfig):
  """Options of the mass-ROI builders (part of the cache key).

  Attributes:
    crop_size: side C of the square ``crop``.
    crop_margin: margin around the ROI box on each side, as a fraction of
      its long side (0.3: the box padded 1.6x, DiagNet's section 4.1).
  """

  crop_size: int = 256
  crop_margin: float = 0.15


def vocabularies(mass_shape: Sequence[str],
                 mass_margin: Sequence[str]) -> dict[str, list[str]]:
  """The vocabularies of a mass-ROI dataset with these attribute values."""
  out = whole_image.whole_image_vocabularies()
  out.update(
      mass_shape=list(mass_shape),
      mass_margin=list(mass_margin),
      pathology=list(PATHOLOGY),
      density=list(DENSITY),
  )
  return out


def features(config: MassRoiConfig) -> tfds.features.FeaturesDict:
  """The mass-ROI feature set of ``config``'s image and crop sizes."""
  c = config.crop_size
  return whole_image.whole_image_features(config, {
      "roi_mask": tfds.features.Tensor(
          shape=tuple(config.image_size), dtype=np.uint8, encoding="zlib"),
      "has_roi_mask": tfds.features.Scalar(dtype=np.int64),
      "crop": tfds.features.Tensor(shape=(c, c), dtype=np.uint8,
                                   encoding="zlib"),
      "crop_mask": tfds.features.Tensor(shape=(c, c), dtype=np.uint8,
                                        encoding="zlib"),
      "crop_box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
      "abnormality_id": tfds.features.Scalar(dtype=np.int64),
      "mass_shape": tfds.features.Scalar(dtype=np.int64),
      "mass_margin": tfds.features.Scalar(dtype=np.int64),
      "pathology": tfds.features.Scalar(dtype=np.int64),
      "pathology_raw": tfds.features.Text(),
      "assessment": tfds.features.Scalar(dtype=np.int64),
      "subtlety": tfds.features.Scalar(dtype=np.int64),
      "density": tfds.features.Scalar(dtype=np.int64),
  })


def polygon_mask(contour_xy: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
  """Boolean mask of the pixels whose centres lie inside a closed polygon.

  Args:
    contour_xy: ``[K, 2]`` vertices (x = column, y = row; pixel centres at
      integers), K >= 3.
    shape: (rows, columns) of the mask.
  """
  contour_xy = np.asarray(contour_xy, np.float64)
  if contour_xy.ndim != 2 or contour_xy.shape[1] != 2 or len(contour_xy) < 3:
    raise ValueError(
        f"a contour needs [K >= 3, 2] (x, y) vertices, got shape "
        f"{contour_xy.shape}")
  out = np.zeros(shape, bool)
  x0 = max(int(np.floor(contour_xy[:, 0].min())), 0)
  x1 = min(int(np.ceil(contour_xy[:, 0].max())) + 1, shape[1])
  y0 = max(int(np.floor(contour_xy[:, 1].min())), 0)
  y1 = min(int(np.ceil(contour_xy[:, 1].max())) + 1, shape[0])
  if x1 <= x0 or y1 <= y0:
    return out
  yy, xx = np.mgrid[y0:y1, x0:x1]
  inside = mpath.Path(contour_xy).contains_points(
      np.stack([xx.ravel(), yy.ravel()], 1))
  out[y0:y1, x0:x1] = inside.reshape(yy.shape)
  return out


def box_crop(
    image: np.ndarray, mask: np.ndarray, margin: float, size: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Square crop around the mask's bounding box, fitted to ``size``.

  Returns:
    ``(crop, crop_mask, box)``: uint8 ``[size, size]`` image and mask
    (255 inside) and the float32 ``(x0, y0, x1, y1)`` box in ``image``'s
    grid (parts outside the image are zero in the crop).
  """
  rows, cols = np.nonzero(mask)
  if not len(rows):
    raise ValueError("box_crop: the mask is empty")
  cy = (rows.min() + rows.max() + 1) / 2
  cx = (cols.min() + cols.max() + 1) / 2
  side = max(rows.max() + 1 - rows.min(), cols.max() + 1 - cols.min())
  half = max(side * (0.5 + margin), 8.0)
  x0, y0 = int(np.floor(cx - half)), int(np.floor(cy - half))
  x1, y1 = int(np.ceil(cx + half)), int(np.ceil(cy + half))
  h, w = image.shape
  sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
  canvas = np.zeros((y1 - y0, x1 - x0), np.float32)
  canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
  mask_canvas = np.zeros((y1 - y0, x1 - x0), np.float32)
  mask_canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = mask[sy0:sy1, sx0:sx1]
  crop = resample.fit_image(canvas, (size, size))
  crop_mask = resample.fit_image(mask_canvas, (size, size)) > 0.5
  return (base.to_uint8(crop), base.to_uint8(crop_mask),
          np.array([x0, y0, x1, y1], np.float32))


def index(value: Any, vocabulary: Sequence[str]) -> int:
  """Index of ``value`` in ``vocabulary``; -1 for None (unknown).

  Raises:
    ValueError: a value outside the vocabulary (the label policy of the
      source parser maps those to None or to an in-vocabulary value).
  """
  if value is None:
    return -1
  if value not in vocabulary:
    raise ValueError(
        f"label {value!r} is not in the vocabulary {list(vocabulary)}")
  return list(vocabulary).index(value)


def integer(value: Any) -> int:
  """``int(value)``, -1 for None / non-numbers."""
  try:
    return int(value)
  except (TypeError, ValueError):
    return -1


def roi_features(
    *,
    crop: np.ndarray,
    crop_mask: np.ndarray,
    crop_box: np.ndarray,
    roi_mask: np.ndarray,
    has_roi_mask: int,
    labels: Mapping[str, Any],
    vocabulary: Mapping[str, Sequence[str]],
) -> dict[str, Any]:
  """The ROI part of a mass-ROI example (all but the whole-image features).

  Args:
    crop, crop_mask, crop_box, roi_mask, has_roi_mask: the geometry.
    labels: ``mass_shape``, ``mass_margin`` (vocabulary strings or None),
      ``pathology`` ('benign' | 'malignant'), optional ``pathology_raw``,
      ``abnormality_id``, ``assessment``, ``subtlety``, ``density`` (1-4).
    vocabulary: the dataset's vocabularies.
  """
  pathology = labels["pathology"]
  if pathology not in PATHOLOGY:
    raise ValueError(
        f"pathology {pathology!r}: expected one of {list(PATHOLOGY)}")
  density = labels.get("density")
  return {
      "roi_mask": roi_mask,
      "has_roi_mask": int(has_roi_mask),
      "crop": crop,
      "crop_mask": crop_mask,
      "crop_box": np.asarray(crop_box, np.float32),
      "abnormality_id": integer(labels.get("abnormality_id")),
      "mass_shape": index(labels.get("mass_shape"), vocabulary["mass_shape"]),
      "mass_margin": index(labels.get("mass_margin"),
                           vocabulary["mass_margin"]),
      "pathology": PATHOLOGY.index(pathology),
      "pathology_raw": str(labels.get("pathology_raw") or ""),
      "assessment": integer(labels.get("assessment")),
      "subtlety": integer(labels.get("subtlety")),
      "density": density - 1 if density in (1, 2, 3, 4) else -1,
  }
