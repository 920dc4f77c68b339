"""Whole-mammogram TFDS builder for any DICOM folder + labels CSV / JSON.

``dicom_folder_images`` reads ``manual_dir`` with
``mammojax.data.sources.parse_dicom_folder``: either an ``annotations.json``
(docs/architecture.md) or one CSV with the columns ``file, patient_id,
laterality, view`` plus label columns, and emits one example per image with
the whole-image features of docs/architecture.md ("Whole-image datasets").

Label columns (CSV) or ``labels`` entries (annotations.json) read:

* ``calcification``, ``mass``, ``malignant``: 0 / 1 (empty = -1 unknown).
  With annotations.json and no such label, ``calcification`` / ``mass`` are
  1 when the image lists calcifications / masses and 0 otherwise.
* ``pathology`` (benign | malignant) gives ``malignant`` when there is no
  ``malignant`` column.
* ``subtype`` (luminal_a, luminal_b, her2_enriched, triple_negative; the
  spellings 'Luminal A', 'HER2-enriched', 'triple negative' are accepted)
  and ``luminal`` (0 / 1, or luminal / non_luminal; derived from ``subtype``
  when absent).
* ``split`` (train | validation | test): the split of the image. Images
  without one go to ``train`` when any image has a split; when none has,
  everything is in one split ``full`` and the pipeline splits patient-wise.
  A patient found in several splits keeps only the examples of its most
  held-out split (test > validation > train); the others are skipped and
  counted (no patient leaks across splits).

This module also holds the pieces shared by the other real-data builders
(``cmmd``, ``cbis_ddsm``, ``inbreast``, ``databiox``): the whole-image
feature set, DICOM downsampling, the manual_dir lookup that lets the
parsers' ``SourceError`` surface unchanged, the patient-leak guard and the
build report.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import multiprocessing
import pathlib
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

from absl import logging
import numpy as np
import pydicom
from pydicom import uid as pydicom_uid
import tensorflow_datasets as tfds
import tqdm

from mammojax.data import dicom
from mammojax.data import resample
from mammojax.data import vocab as vocab_lib
from mammojax.data.sources import common
from mammojax.data.sources import dicom_folder

FULL_SPLIT = "full"
# Most held-out first: a patient in several splits stays in the first one.
SPLIT_PRIORITY = ("test", "validation", "train", FULL_SPLIT)
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


# ---------------------------------------------------------------------------
# Shared helpers.
# ---------------------------------------------------------------------------


def manual_dir(dl_manager: Any) -> pathlib.Path:
  """The user's manual_dir, without TFDS's own existence check.

  ``dl_manager.manual_dir`` raises a generic AssertionError for a missing or
  empty folder; the parsers raise a ``SourceError`` that names the expected
  layout instead, so the raw path is handed to them.
  """
  # pylint: disable-next=protected-access
  return pathlib.Path(str(dl_manager._manual_dir))


def to_uint8(image01: np.ndarray) -> np.ndarray:
  """float image in [0, 1] -> uint8."""
  return np.clip(np.round(np.asarray(image01) * 255.0), 0, 255).astype(
      np.uint8
  )


def block_reduce(image: np.ndarray, factor: int, how: str = "mean"):
  """Downsamples ``image`` [H, W] by an integer factor (edges trimmed)."""
  if factor <= 1:
    return image
  h = image.shape[0] // factor * factor
  w = image.shape[1] // factor * factor
  blocks = image[:h, :w].reshape(h // factor, factor, w // factor, factor)
  if how == "max":
    return blocks.max(axis=(1, 3))
  return blocks.mean(axis=(1, 3))


def read_dataset(
    path: pathlib.Path,
    *,
    downsample: int = 1,
    laterality: str | None = None,
) -> pydicom.Dataset:
  """Reads a DICOM file into memory, decompressed and optionally shrunk.

  The returned dataset goes through ``mammojax.data.dicom.load_dicom`` like
  a file (same windowing, polarity and orientation code). With
  ``downsample > 1`` the stored pixels are block-averaged by that factor and
  Rows / Columns / pixel spacings updated, so coordinates in the stored grid
  divide by ``downsample``. ``laterality`` is written to ImageLaterality
  when the header has no laterality (CBIS-DDSM gives it in the CSV).
  """
  ds = pydicom.dcmread(path)
  if "PixelData" not in ds:
    raise dicom.DicomError(str(path), "no PixelData element")
  if ds.file_meta.TransferSyntaxUID.is_compressed:
    ds.decompress()
  if laterality and not dicom.read_metadata(ds).laterality:
    ds.ImageLaterality = laterality
  if downsample > 1:
    pixels = ds.pixel_array
    if pixels.ndim != 2:
      raise dicom.DicomError(
          str(path), f"expected one 2-D frame, got shape {pixels.shape}"
      )
    small = block_reduce(pixels.astype(np.float64), downsample)
    small = np.round(small).astype(pixels.dtype)
    ds.PixelData = np.ascontiguousarray(small).tobytes()
    ds.Rows, ds.Columns = small.shape
    ds.file_meta.TransferSyntaxUID = pydicom_uid.ExplicitVRLittleEndian
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
      if keyword in ds:
        try:
          ds[keyword].value = [float(v) * downsample for v in ds[keyword].value]
        except (TypeError, ValueError):
          del ds[keyword]
  return ds


def read_mask(
    path: pathlib.Path, shape: tuple[int, int], downsample: int = 1
) -> np.ndarray:
  """Binary ROI mask (bool, stored grid, downsampled like the image)."""
  pixels = pydicom.dcmread(path).pixel_array
  mask = block_reduce(np.asarray(pixels) > 0, downsample, "max")
  if mask.shape != tuple(shape):
    raise dicom.DicomError(
        str(path), f"ROI mask shape {mask.shape} != image shape {tuple(shape)}"
    )
  return mask.astype(bool)


def map_to_view(
    stored: np.ndarray, view: dicom.Mammogram, size: tuple[int, int]
) -> np.ndarray:
  """Maps a stored-grid array (e.g. an ROI mask) into ``view``'s geometry.

  Applies the same crop, mirror and resize (``view`` must come from
  ``load_dicom(..., resize=size)`` with a (H, W) size) and zero-pads.
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


def fit_image(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Resizes keeping aspect and zero-pads (bottom / right) to ``size``."""
  h, w = image.shape[:2]
  scale = min(size[0] / h, size[1] / w)
  content = (
      min(size[0], max(1, int(round(h * scale)))),
      min(size[1], max(1, int(round(w * scale)))),
  )
  out = np.zeros(size, np.float32)
  out[: content[0], : content[1]] = resample.resize_image(
      np.asarray(image, np.float32), content
  )
  return out


def drop_leaking_patients(
    items: Sequence[PlannedItem], report: common.BuildReport
) -> list[PlannedItem]:
  """Keeps each patient in one split only (its most held-out split).

  Items of the patient in other splits are skipped (reported), so no
  patient leaks across train / validation / test.
  """
  splits_of: dict[str, set[str]] = {}
  for item in items:
    splits_of.setdefault(item.patient_id, set()).add(item.split)

  def rank(split):
    return (SPLIT_PRIORITY.index(split) if split in SPLIT_PRIORITY
            else len(SPLIT_PRIORITY))

  keep_split = {p: min(s, key=rank) for p, s in splits_of.items()}
  leaked = sorted(p for p, s in splits_of.items() if len(s) > 1)
  if leaked:
    report.warn(
        f"{report.dataset}: {len(leaked)} patients occur in several splits; "
        "only their examples in the most held-out split are kept: "
        + ", ".join(leaked)
    )
  out = []
  for item in items:
    target = keep_split[item.patient_id]
    if item.split != target:
      report.skip(item.key, f"patient also in the {target} split (leak)")
      continue
    out.append(item)
  return out


def pool_mapper(workers: int) -> Callable[..., Iterable[Any]]:
  """``map``, or one that runs in ``workers`` spawned processes, in order."""
  if workers <= 1:
    return map

  def mapper(fn, payloads):
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      yield from pool.imap(fn, payloads, chunksize=1)

  return mapper


@dataclasses.dataclass
class PlannedItem:
  """One unit of work (usually one source record) of a build."""

  split: str
  key: str
  patient_id: str
  payload: Any


@dataclasses.dataclass
class ItemResult:
  """What processing one item gave.

  Attributes:
    examples: ``(key, features, summary)``; ``summary`` holds the readable
      labels counted in the build report.
    skipped: ``(item, reason)`` pairs.
    counts: named counters added to the report's stats.
    example_labels: example id -> source labels that have no feature;
      stored in ``info.metadata['build_report']['example_labels']``.
  """

  examples: list[tuple[str, dict[str, Any], dict[str, Any]]] = (
      dataclasses.field(default_factory=list)
  )
  skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
  counts: dict[str, int] = dataclasses.field(default_factory=dict)
  example_labels: dict[str, dict[str, Any]] = dataclasses.field(
      default_factory=dict
  )


class LazyBuild:
  """Split planning, lazy example generation and the build report.

  Examples are produced while TFDS writes them (nothing large is held in
  memory); the report in ``info.metadata['build_report']`` is refreshed
  after each split, and TFDS writes the metadata after the last one.
  ``num_records`` / ``label_counts`` of the report count the examples
  actually written (per split and label); what the parser found is kept
  under ``source``.
  """

  def __init__(
      self,
      builder: tfds.core.GeneratorBasedBuilder,
      report: common.BuildReport,
      vocabularies: Mapping[str, Sequence[str]],
      extra: Mapping[str, Any] | None = None,
  ) -> None:
    self.builder = builder
    self.report = report
    self.name = builder.name
    self.vocabularies = {k: list(v) for k, v in vocabularies.items()}
    self.extra = dict(extra or {})
    self.source = {
        "num_records": dict(report.num_records),
        "label_counts": copy.deepcopy(report.label_counts),
    }
    self.built: list[tuple[str, dict[str, Any]]] = []

  def splits(
      self,
      items: Sequence[PlannedItem],
      process: Callable[[Any], ItemResult],
      mapper: Callable[..., Iterable[ItemResult]] = map,
  ) -> dict[str, Iterator[tuple[str, dict[str, Any]]]]:
    """``{split: generator}`` for ``_split_generators`` to return.

    Args:
      items: the planned items (patient leaks are removed here).
      process: payload -> ItemResult (a top-level function when ``mapper``
        runs it in other processes).
      mapper: ``map`` or e.g. a process pool's ``imap``.

    Raises:
      SourceError: nothing to build.
    """
    items = drop_leaking_patients(items, self.report)
    by_split: dict[str, list[PlannedItem]] = {}
    for item in items:
      by_split.setdefault(item.split, []).append(item)
    if not by_split:
      raise common.SourceError(
          f"{self.name}: nothing to build from the download; skipped: "
          f"{self.report.skip_counts}; warnings: {self.report.warnings[:5]}"
      )
    self.finish(log=False)
    return {
        split: self._generate(split, split_items, process, mapper)
        for split, split_items in sorted(by_split.items())
    }

  def _generate(self, split, items, process, mapper):
    n = 0
    results = mapper(process, [item.payload for item in items])
    for result in tqdm.tqdm(results, total=len(items),
                            desc=f"{self.name} {split}"):
      for item, reason in result.skipped:
        self.report.skip(item, reason)
      for name, k in result.counts.items():
        self.report.count(name, k)
      if result.example_labels:
        self.extra.setdefault("example_labels", {}).update(
            result.example_labels)
      for key, ex, summary in result.examples:
        n += 1
        self.built.append((split, summary))
        yield key, ex
    self.finish()
    if not n:
      raise common.SourceError(
          f"{self.name}: no example of split {split!r} could be built from "
          f"its {len(items)} items; skipped: {self.report.skip_counts}"
      )

  def finish(self, log: bool = True) -> dict[str, Any]:
    """Recomputes, (logs) and stores the build report and vocabularies."""
    report = copy.deepcopy(self.report)
    report.num_records.clear()
    report.label_counts.clear()
    for split, labels in self.built:
      report.add_labels(split, labels)
    out = report.to_dict()
    out["source"] = self.source
    out.update(self.extra)
    out = json.loads(json.dumps(out, default=str))
    if log:
      for warning in report.warnings:
        logging.warning("%s", warning)
      brief = {k: out[k] for k in ("num_records", "label_counts",
                                   "skip_counts", "stats")}
      logging.info("%s build report (full report in "
                   "info.metadata['build_report']): %s",
                   self.name, json.dumps(brief))
    self.builder.info.metadata["vocabularies"] = self.vocabularies
    self.builder.info.metadata["build_report"] = out
    return out


# ---------------------------------------------------------------------------
# Whole-image features (docs/architecture.md, "Whole-image datasets").
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class WholeImageConfig(tfds.core.BuilderConfig):
  """Build options of the whole-image builders (part of the cache key).

  Attributes:
    image_size: (H, W) of the stored ``image``.
    downsample: integer block-average factor applied to the stored pixels
      before anything else (faster builds of large files; 1 = off).
  """

  image_size: tuple[int, int] = (256, 160)
  downsample: int = 1


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
  """The whole-image feature set (plus ``extra`` features)."""
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
  """Vocabularies of the whole-image labels."""
  return {
      "subtype": list(SUBTYPES),
      "luminal": ["non_luminal", "luminal"],
      "binary": ["no", "yes"],
  }


def subtype_index(value: Any) -> int:
  """Subtype name (several spellings) -> index in ``SUBTYPES``; -1 unknown."""
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
  """0 / 1 / -1 from 0/1 (int or text), a name in ``yes`` / ``no``, or None."""
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


def load_view(
    path: pathlib.Path,
    config: WholeImageConfig,
    *,
    laterality: str | None = None,
) -> tuple[pydicom.Dataset, dicom.Mammogram]:
  """(in-memory dataset, laterality-normalised breast-cropped view)."""
  ds = read_dataset(path, downsample=config.downsample, laterality=laterality)
  view = dicom.load_dicom(
      ds, orient=True, crop=True, resize=tuple(config.image_size)
  )
  return ds, view


def whole_image_example(
    view: dicom.Mammogram,
    *,
    example_id: str,
    patient_id: str,
    image_id: str,
    view_name: str | None,
    labels: Mapping[str, int],
) -> dict[str, Any]:
  """The whole-image features of one mammogram."""
  return {
      "example_id": example_id,
      "patient_id": patient_id,
      "image_id": image_id,
      "laterality": view.laterality or "",
      "view": view_name or "",
      "image": to_uint8(view.image),
      "calcification": int(labels.get("calcification", -1)),
      "mass": int(labels.get("mass", -1)),
      "malignant": int(labels.get("malignant", -1)),
      "subtype": int(labels.get("subtype", -1)),
      "luminal": int(labels.get("luminal", -1)),
  }


def label_summary(ex: Mapping[str, Any], vocabularies) -> dict[str, Any]:
  """Readable labels of a whole-image example for the build report."""
  out = {k: int(ex[k]) for k in ("calcification", "mass", "malignant",
                                 "luminal")}
  s = int(ex["subtype"])
  out["subtype"] = vocabularies["subtype"][s] if s >= 0 else None
  out["laterality"] = ex["laterality"]
  out["view"] = ex["view"]
  return out


# ---------------------------------------------------------------------------
# dicom_folder_images.
# ---------------------------------------------------------------------------


def folder_labels(
    record: common.SourceRecord, *, from_findings: bool = False
) -> dict[str, int]:
  """Whole-image labels of a DICOM-folder record (see module docstring).

  Args:
    record: a record of ``parse_dicom_folder``.
    from_findings: derive missing calcification / mass flags from the
      findings listed in the annotation (annotations.json input).
  """
  labels = record.labels
  annotation = record.annotation or {}
  out = {}
  try:
    for name, key in (("calcification", "calcifications"),
                      ("mass", "masses")):
      out[name] = binary(labels.get(name), field=name)
      if out[name] < 0 and from_findings and labels.get(name) is None:
        out[name] = int(bool(annotation.get(key)))
    if labels.get("malignant") is not None:
      out["malignant"] = binary(labels["malignant"], field="malignant",
                                yes=("malignant",), no=("benign",))
    else:
      out["malignant"] = binary(labels.get("pathology"), field="pathology",
                                yes=("malignant",), no=("benign",))
    out["subtype"] = subtype_index(labels.get("subtype"))
    if labels.get("luminal") is not None:
      out["luminal"] = binary(labels["luminal"], field="luminal",
                              yes=("luminal",), no=("non_luminal",))
    else:
      out["luminal"] = luminal_from_subtype(out["subtype"])
  except ValueError as e:
    raise ValueError(f"dicom_folder_images: image {record.example_id!r}: "
                     f"{e}") from None
  return out


def _folder_item(payload) -> ItemResult:
  """One DICOM-folder record -> its whole-image example."""
  record, labels, config = payload
  annotation = record.annotation or {}
  try:
    _, view = load_view(record.image_path, config,
                        laterality=annotation.get("laterality"))
  except dicom.DicomError as e:
    return ItemResult(skipped=[(str(record.image_path),
                                f"unreadable DICOM ({e.reason})")])
  ex = whole_image_example(
      view,
      example_id=record.example_id,
      patient_id=record.patient_id,
      image_id=str(annotation.get("image_id", record.example_id)),
      view_name=annotation.get("view") or record.labels.get("view"),
      labels=labels,
  )
  return ItemResult(examples=[(record.example_id, ex,
                               label_summary(ex, whole_image_vocabularies()))])


class DicomFolderImages(tfds.core.GeneratorBasedBuilder):
  """Whole mammograms + image-level labels from a DICOM folder."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "Initial release."}
  BUILDER_CONFIGS = WHOLE_IMAGE_CONFIGS
  MANUAL_DOWNLOAD_INSTRUCTIONS = (
      "Point manual_dir at a folder with the DICOM files and either "
      "annotations.json (docs/architecture.md) or one CSV with columns "
      "file, patient_id, laterality, view and label columns (docs/datasets.md)."
  )

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__,
        features=whole_image_features(self.builder_config),
        metadata=tfds.core.MetadataDict(
            vocabularies=whole_image_vocabularies()
        ),
    )

  def _split_generators(self, dl_manager):
    root = manual_dir(dl_manager)
    records, report = dicom_folder.parse_dicom_folder(root)
    from_json = (root / "annotations.json").is_file()
    any_split = any(r.split for r in records)
    items = []
    for record in records:
      split = record.split or ("train" if any_split else FULL_SPLIT)
      if any_split and not record.split:
        report.count("images without split -> train")
      payload = (record, folder_labels(record, from_findings=from_json),
                 self.builder_config)
      items.append(PlannedItem(split, record.example_id, record.patient_id,
                               payload))
    build = LazyBuild(self, report, whole_image_vocabularies())
    return build.splits(items, _folder_item)

  def _generate_examples(self, examples):
    yield from examples
