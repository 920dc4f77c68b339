"""The calcification-graph examples shared by the graph builders.

``synthetic_calcifications``, ``dicom_folder_calcifications``,
``cbis_ddsm_calcifications`` and ``inbreast_calcifications`` emit one
example per calcification cluster with the same features (``features``):
the node inputs MT-GCN consumes (full-resolution patches, normalised
coordinates, morphology labels), the cluster's distribution label and
subtlety (1-5, -1 unknown; the annotation's cluster ``subtlety``), a crop of
the mammogram around the cluster (for drawing graphs), a downsampled full
view (for image models) and the patient id (for patient-wise splits).

All of them turn a mammogram plus its annotation (the ``annotations.json``
entry of docs/architecture.md) into examples with ``examples_from_image``,
so synthetic and real data are processed identically.
"""

import dataclasses
from typing import Any, Optional

import numpy as np
from scipy import ndimage
import tensorflow_datasets as tfds

from mammojax.data import calcifications
from mammojax.data import dicom
from mammojax.data import resample
from mammojax.data.builders import base


@dataclasses.dataclass
class CalcGraphConfig(tfds.core.BuilderConfig):
  """Build options; part of the cache key through the config name."""

  num_images: int = 390
  num_patients: Optional[int] = 200
  seed: int = 0
  patch_size: int = 14
  view_size: tuple[int, int] = (256, 160)
  crop_size: int = 192
  generator_overrides: tuple[tuple[str, Any], ...] = ()
  workers: int = 2
  # DICOM ingestion options (``base.load_options``; set from
  # ``config.dataset.accept_non_mg`` / ``for_processing`` by the pipeline).
  accept_non_mg: tuple[str, ...] = ()
  for_processing: str = "display"


def features(config: CalcGraphConfig) -> tfds.features.FeaturesDict:
  """Returns the features of one calcification-graph example."""
  m = config.patch_size
  return tfds.features.FeaturesDict({
      "example_id": tfds.features.Text(),
      "patient_id": tfds.features.Text(),
      "image_id": tfds.features.Text(),
      "laterality": tfds.features.Text(),
      "view": tfds.features.Text(),
      "patches": tfds.features.Tensor(shape=(None, m, m), dtype=np.float32),
      "centers_xy": tfds.features.Tensor(shape=(None, 2), dtype=np.float32),
      "coords": tfds.features.Tensor(shape=(None, 2), dtype=np.float32),
      "morphology": tfds.features.Tensor(shape=(None,), dtype=np.int64),
      "distribution": tfds.features.Scalar(dtype=np.int64),
      "subtlety": tfds.features.Scalar(dtype=np.int64),
      "image_shape": tfds.features.Tensor(shape=(2,), dtype=np.int64),
      "pixel_spacing_mm": tfds.features.Tensor(shape=(2,), dtype=np.float32),
      "crop": tfds.features.Tensor(
          shape=(config.crop_size, config.crop_size),
          dtype=np.uint8,
          encoding="zlib",
      ),
      "crop_box": tfds.features.Tensor(shape=(4,), dtype=np.float32),
      "view_image": tfds.features.Tensor(
          shape=tuple(config.view_size), dtype=np.uint8, encoding="zlib"
      ),
  })


def _square_crop(
    image01: np.ndarray, centers_xy: np.ndarray, spacing_mm: float, size: int
) -> tuple[np.ndarray, np.ndarray]:
  """A square crop around the nodes (5 mm margin), resampled to ``size``."""
  height, width = image01.shape
  lo = centers_xy.min(axis=0)
  hi = centers_xy.max(axis=0)
  margin = 5.0 / max(spacing_mm, 1e-3)
  half = max((hi - lo).max() / 2 + margin, size / 4)
  centre = (lo + hi) / 2
  x0, y0 = centre - half
  x1, y1 = centre + half
  box = np.array([x0, y0, x1, y1], np.float32)
  ix0, iy0 = int(np.floor(x0)), int(np.floor(y0))
  ix1, iy1 = int(np.ceil(x1)), int(np.ceil(y1))
  canvas = np.zeros((iy1 - iy0, ix1 - ix0), np.float32)
  sx0, sy0 = max(ix0, 0), max(iy0, 0)
  sx1, sy1 = min(ix1, width), min(iy1, height)
  canvas[sy0 - iy0 : sy1 - iy0, sx0 - ix0 : sx1 - ix0] = image01[
      sy0:sy1, sx0:sx1
  ]
  zoom = (size / canvas.shape[0], size / canvas.shape[1])
  crop = ndimage.zoom(canvas, zoom, order=1)[:size, :size]
  crop = np.pad(crop, ((0, size - crop.shape[0]), (0, size - crop.shape[1])))
  box = np.array([ix0, iy0, ix1, iy1], np.float32)
  return base.to_uint8(crop), box


def examples_from_image(
    source: Any,
    annotation: dict[str, Any],
    vocabularies: dict[str, list[str]],
    config: CalcGraphConfig,
    *,
    where: str,
    counts: dict[str, int] | None = None,
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, int]]:
  """Turns one mammogram + its annotation into per-cluster examples.

  Args:
    source: a DICOM path or an in-memory ``pydicom.Dataset``.
    annotation: one entry of ``annotations.json``'s ``images``.
    vocabularies: label vocabularies (``morphology``, ``distribution``).
    config: build options (patch, crop and view sizes).
    where: a description of the source used in error messages.
    counts: if given, the file's ``base.ingestion_counts`` are added to it.

  Returns:
    ``(examples, skipped)``: ``(key, features)`` pairs and counts of skipped
    clusters by reason.
  """
  skipped: dict[str, int] = {}
  clusters = annotation.get("clusters") or []
  calcs = annotation.get("calcifications") or []
  if not clusters and calcs:
    # Unclustered calcifications form one implicit cluster of the image.
    clusters = [{
        "cluster_id": 0,
        "distribution": None,
        "calcification_ids": [c["id"] for c in calcs],
    }]
  if not clusters:
    skipped["image without calcifications"] = 1
    return [], skipped
  options = base.load_options(config)
  full = dicom.load_dicom(source, orient=True, crop=False, **options)
  view = dicom.load_dicom(source, orient=True, crop=True, **options)
  if counts is not None:
    base.add_counts(counts, base.ingestion_counts(full))
  view_image = base.to_uint8(
      resample.fit_image(view.image, config.view_size, method="zoom"))
  image = full.image
  height, width = image.shape
  spacing = full.meta.pixel_spacing_mm
  spacing = (
      np.asarray(spacing, np.float32)
      if spacing is not None
      else np.asarray(annotation.get("pixel_spacing_mm", (0.1, 0.1)),
                      np.float32)
  )
  by_id = {c["id"]: c for c in calcs}
  morph_vocab = list(vocabularies["morphology"])
  dist_vocab = list(vocabularies["distribution"])
  examples = []
  for cluster in clusters:
    ids = [i for i in cluster["calcification_ids"] if i in by_id]
    if not ids:
      skipped["cluster without calcifications"] = (
          skipped.get("cluster without calcifications", 0) + 1
      )
      continue
    stored_xy = np.asarray([by_id[i]["center_xy"] for i in ids], np.float32)
    centers = np.asarray(full.to_output_xy(stored_xy), np.float32)
    morph = np.asarray(
        [
            -1
            if by_id[i].get("morphology") is None
            else morph_vocab.index(by_id[i]["morphology"])
            for i in ids
        ],
        np.int64,
    )
    dist = cluster.get("distribution")
    dist_idx = -1 if dist is None else dist_vocab.index(dist)
    subtlety = cluster.get("subtlety")
    crop, box = _square_crop(
        image, centers, float(spacing[1]), config.crop_size
    )
    example_id = f"{annotation['image_id']}/c{cluster['cluster_id']}"
    examples.append((
        example_id,
        {
            "example_id": example_id,
            "patient_id": str(annotation["patient_id"]),
            "image_id": str(annotation["image_id"]),
            "laterality": str(annotation.get("laterality") or ""),
            "view": str(annotation.get("view") or ""),
            "patches": calcifications.extract_patches(
                image, centers, config.patch_size
            ).astype(np.float32),
            "centers_xy": centers,
            "coords": calcifications.normalise_coords(
                centers, image.shape
            ).astype(np.float32),
            "morphology": morph,
            "distribution": dist_idx,
            "subtlety": -1 if subtlety is None else int(subtlety),
            "image_shape": np.asarray([height, width], np.int64),
            "pixel_spacing_mm": spacing,
            "crop": crop,
            "crop_box": box,
            "view_image": view_image,
        },
    ))
  del where
  return examples, skipped
