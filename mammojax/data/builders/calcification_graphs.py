"""TFDS builders of calcification-cluster graph samples (array_record).

One example per calcification cluster: the node inputs MT-GCN consumes
(full-resolution patches, normalised coordinates, morphology labels), the
cluster's distribution label, a crop of the mammogram around the cluster (for
drawing graphs), a downsampled full view (for image models) and the patient
id (for patient-wise splits).

Two sources share one ingestion path (``examples_from_image``), so synthetic
and real data are processed identically:

* ``synthetic_calcifications`` runs the project's synthetic mammogram
  generator in memory (no download) and reads each generated DICOM dataset
  through ``mammojax.data.dicom.load_dicom``;
* ``dicom_folder_calcifications`` reads a folder of DICOM files plus an
  ``annotations.json`` (docs/architecture.md) given as ``manual_dir``.

Both write ``array_record`` files and are read with ``tfds.data_source``; no
TensorFlow is needed. A build is cached under the TFDS data dir and skipped
when it already exists.
"""

import dataclasses
import hashlib
import json
import multiprocessing
import os
import pathlib
import pickle
from typing import Any, Iterator, Optional

from absl import logging
import numpy as np
from scipy import ndimage
import tensorflow_datasets as tfds
import tqdm

from mammojax.data import annotations as annotations_lib
from mammojax.data import calcifications
from mammojax.data import dicom
from mammojax.data import synthetic

FULL_SPLIT = "full"


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


def _features(config: CalcGraphConfig) -> tfds.features.FeaturesDict:
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


def _to_uint8(image01: np.ndarray) -> np.ndarray:
  return np.clip(np.round(image01 * 255.0), 0, 255).astype(np.uint8)


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
  return _to_uint8(crop), box


def _fit_view(image01: np.ndarray, view_size: tuple[int, int]) -> np.ndarray:
  """Resizes keeping aspect and pads (bottom/right) to ``view_size``."""
  h, w = image01.shape
  th, tw = view_size
  scale = min(th / h, tw / w)
  small = ndimage.zoom(image01, scale, order=1)[:th, :tw]
  out = np.zeros((th, tw), np.float32)
  out[: small.shape[0], : small.shape[1]] = small
  return _to_uint8(out)


def examples_from_image(
    source: Any,
    annotation: dict[str, Any],
    vocabularies: dict[str, list[str]],
    config: CalcGraphConfig,
    *,
    where: str,
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, int]]:
  """Turns one mammogram + its annotation into per-cluster examples.

  Args:
    source: a DICOM path or an in-memory ``pydicom.Dataset``.
    annotation: one entry of ``annotations.json``'s ``images``.
    vocabularies: label vocabularies (``morphology``, ``distribution``).
    config: build options (patch, crop and view sizes).
    where: a description of the source used in error messages.

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
  full = dicom.load_dicom(source, orient=True, crop=False)
  view = dicom.load_dicom(source, orient=True, crop=True)
  view_image = _fit_view(view.image, config.view_size)
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
            "image_shape": np.asarray([height, width], np.int64),
            "pixel_spacing_mm": spacing,
            "crop": crop,
            "crop_box": box,
            "view_image": view_image,
        },
    ))
  del where
  return examples, skipped


def _synthetic_worker(args):
  gen_config, seed, index, vocabularies, config, cache_file = args
  if cache_file is not None and os.path.exists(cache_file):
    try:
      with open(cache_file, "rb") as f:
        return pickle.load(f)
    except (OSError, EOFError, pickle.UnpicklingError):
      pass  # A partial file from an interrupted build: render again.
  image = synthetic.generate_image(gen_config, seed, index)
  result = examples_from_image(
      image.dataset,
      image.annotation,
      vocabularies,
      config,
      where=f"synthetic image {index}",
  )
  if cache_file is not None:
    tmp = f"{cache_file}.{os.getpid()}.tmp"
    with open(tmp, "wb") as f:
      pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(tmp, cache_file)
  return result


def image_cache_dir(
    data_dir_root: str, gen_config: Any, config: CalcGraphConfig
) -> str:
  """Per-image cache folder keyed by everything that shapes an example.

  The synthetic stream is deterministic per (generator config, seed, image
  index), so cached images are reused by a larger or interrupted build.
  """
  key = repr((
      dataclasses.asdict(gen_config),
      config.seed,
      config.patch_size,
      tuple(config.view_size),
      config.crop_size,
      "v1",
  ))
  digest = hashlib.sha256(key.encode()).hexdigest()[:16]
  return os.path.join(data_dir_root, "_mammojax_cache", "synthetic", digest)


def summarise(
    results: list[tuple[list[tuple[str, dict[str, Any]]], dict[str, int]]],
    vocabularies: dict[str, list[str]],
) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, Any]]:
  """Flattens per-image results and counts examples, labels and skips."""
  report = {
      "examples": 0,
      "nodes": 0,
      "morphology": {},
      "distribution": {},
      "skipped": {},
  }
  examples = []
  for image_examples, skipped in results:
    for reason, n in skipped.items():
      report["skipped"][reason] = report["skipped"].get(reason, 0) + n
    for key, ex in image_examples:
      report["examples"] += 1
      report["nodes"] += len(ex["morphology"])
      d = ex["distribution"]
      name = "unknown" if d < 0 else vocabularies["distribution"][d]
      report["distribution"][name] = report["distribution"].get(name, 0) + 1
      for m in ex["morphology"]:
        name = "unknown" if m < 0 else vocabularies["morphology"][m]
        report["morphology"][name] = report["morphology"].get(name, 0) + 1
      examples.append((key, ex))
  logging.info("build report: %s", json.dumps(report))
  return examples, report


class SyntheticCalcifications(tfds.core.GeneratorBasedBuilder):
  """Calcification graphs from the embedded synthetic mammogram generator."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [
      CalcGraphConfig(
          name="default",
          description="The paper's size: about 390 images, 200 patients.",
      ),
      CalcGraphConfig(
          name="tiny",
          description="24 small images from 12 patients, for tests.",
          num_images=24,
          num_patients=None,
          generator_overrides=(("breast_scale", 0.5),),
          workers=1,
      ),
  ]

  def _generator_config(self) -> "synthetic.SyntheticConfig":
    return synthetic.SyntheticConfig(**dict(self.builder_config.generator_overrides))

  def _info(self) -> tfds.core.DatasetInfo:
    from mammojax.data import vocab  # pylint: disable=g-import-not-at-top

    vocabularies = {
        k: list(v) for k, v in vocab.VOCABULARIES["synthetic"].items()
    }
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=_features(self.builder_config),
        metadata=tfds.core.MetadataDict(vocabularies=vocabularies),
    )

  def _split_generators(self, dl_manager):
    del dl_manager
    config = self.builder_config
    vocabularies = dict(self.info.metadata["vocabularies"])
    gen_config = self._generator_config()
    plan = synthetic.plan_dataset(
        gen_config, config.num_images, config.num_patients, config.seed
    )
    cache = image_cache_dir(self.data_dir_root, gen_config, config)
    os.makedirs(cache, exist_ok=True)
    args = [
        (gen_config, config.seed, i, vocabularies, config,
         os.path.join(cache, f"{i:06d}.pkl"))
        for i in range(len(plan))
    ]
    cached = sum(os.path.exists(a[-1]) for a in args)
    logging.info("%d of %d synthetic images come from the cache %s",
                 cached, len(args), cache)
    if config.workers > 1:
      ctx = multiprocessing.get_context("spawn")
      with ctx.Pool(config.workers) as pool:
        results = list(
            tqdm.tqdm(
                pool.imap(_synthetic_worker, args, chunksize=2),
                total=len(args),
                desc="synthetic mammograms",
            )
        )
    else:
      results = [
          _synthetic_worker(a)
          for a in tqdm.tqdm(args, desc="synthetic mammograms")
      ]
    examples, report = summarise(results, vocabularies)
    self.info.metadata["build_report"] = report
    return {FULL_SPLIT: self._generate_examples(examples)}

  def _generate_examples(self, examples):
    yield from examples


class DicomFolderCalcifications(tfds.core.GeneratorBasedBuilder):
  """Calcification graphs from a DICOM folder + ``annotations.json``.

  ``manual_dir`` is the folder holding ``annotations.json``; image paths in
  it are relative to that folder. The same format is what
  ``python -m mammojax.data.synthesize`` writes.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = [CalcGraphConfig(name="default")]
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at a folder with annotations.json (see "
      "docs/architecture.md) and the DICOM files it lists."
  )

  def _annotations_path(self, manual_dir: os.PathLike) -> pathlib.Path:
    path = pathlib.Path(manual_dir) / "annotations.json"
    if not path.exists():
      raise FileNotFoundError(
          f"dicom_folder_calcifications: {path} not found; expected "
          "manual_dir to hold annotations.json and the DICOM files it lists"
      )
    return path

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=_features(self.builder_config),
        metadata=tfds.core.MetadataDict(),
    )

  def _split_generators(self, dl_manager):
    path = self._annotations_path(dl_manager.manual_dir)
    data = annotations_lib.load_annotations(path)
    vocabularies = {k: list(v) for k, v in data["vocabularies"].items()}
    results = []
    for entry in tqdm.tqdm(data["images"], desc="DICOM images"):
      file = path.parent / entry["file"]
      if not file.exists():
        logging.warning(
            "%s: image %r: file %s not found; skipped",
            path, entry["image_id"], file,
        )
        results.append(([], {"missing DICOM file": 1}))
        continue
      results.append(
          examples_from_image(
              file,
              entry,
              vocabularies,
              self.builder_config,
              where=f"{path}: image {entry['image_id']!r}",
          )
      )
    examples, report = summarise(results, vocabularies)
    self.info.metadata["vocabularies"] = vocabularies
    self.info.metadata["build_report"] = report
    return {FULL_SPLIT: self._generate_examples(examples)}

  def _generate_examples(self, examples):
    yield from examples
