"""What every TFDS builder of ``mammojax.data.builders`` shares.

* ``manual_dir``: the user's download folder, handed to the source parsers
  without TFDS's own check, so that their ``SourceError`` (naming the
  expected layout) surfaces unchanged.
* ``read_dataset`` / ``read_mask``: a DICOM file (or ROI mask) read into
  memory, decompressed and optionally block-averaged (``downsample``) for
  fast builds; the dataset then goes through ``mammojax.data.dicom.load_dicom``
  like a file.
* ``to_uint8``: the stored form of float images in [0, 1].
* The build machinery: ``PlannedItem`` (one unit of work), ``ItemResult``
  (what processing it gave), ``pool_mapper`` (in-order process pool) and
  ``LazyBuild`` (split planning, the patient-leak guard, lazy example
  generation and the build report in ``info.metadata['build_report']``).

Builders import this module (and ``whole_image`` / ``graph_examples`` for
their feature sets), never each other.
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
from mammojax.data.sources import common

FULL_SPLIT = "full"
# Most held-out first: a patient in several splits stays in the first one.
SPLIT_PRIORITY = ("test", "validation", "train", FULL_SPLIT)


# ---------------------------------------------------------------------------
# Reading the download.
# ---------------------------------------------------------------------------


def manual_dir(dl_manager: Any) -> pathlib.Path:
  """The user's manual_dir, without TFDS's own existence check.

  ``dl_manager.manual_dir`` raises a generic AssertionError for a missing or
  empty folder; the parsers raise a ``SourceError`` that names the expected
  layout instead, so the raw path is handed to them.

  Returns:
    The manual_dir path as given.
  """
  # pylint: disable-next=protected-access
  return pathlib.Path(str(dl_manager._manual_dir))


def to_uint8(image01: np.ndarray) -> np.ndarray:
  """Returns a float image in [0, 1] as uint8 (``round(x * 255)``, clipped)."""
  return np.clip(np.round(np.asarray(image01) * 255.0), 0, 255).astype(
      np.uint8
  )


def block_reduce(image: np.ndarray, factor: int, how: str = "mean"):
  """Downsamples ``image`` [H, W] by an integer factor (edges trimmed).

  Returns:
    ``[H // factor, W // factor]`` block means (``how="max"``: maxima);
    ``image`` itself when ``factor <= 1``.
  """
  if factor <= 1:
    return image
  h = image.shape[0] // factor * factor
  w = image.shape[1] // factor * factor
  blocks = image[:h, :w].reshape(h // factor, factor, w // factor, factor)
  if how == "max":
    return blocks.max(axis=(1, 3))
  return blocks.mean(axis=(1, 3))


def load_options(config: Any) -> dict[str, Any]:
  """``load_dicom`` keywords from a builder config's ingestion fields.

  ``accept_non_mg`` (rules accepting non-MG files, e.g. digitised films
  stored as Secondary Capture) and ``for_processing`` ('display' | 'min_max'),
  set from ``config.dataset`` by the pipeline (``pipeline.INGESTION_KEYS``).
  """
  return {
      "accept_non_mg": tuple(getattr(config, "accept_non_mg", ()) or ()),
      "for_processing": getattr(config, "for_processing", "display"),
  }


def ingestion_counts(mammo: dicom.Mammogram) -> dict[str, int]:
  """Build-report counters of how one file was ingested.

  ``ingestion: <presentation intent> <pixel intensity relationship> ->
  <VOI applied>`` for every file, and ``ingestion: accepted non-MG
  (<rule>)`` for files accepted by an ``accept_non_mg`` rule.
  """
  meta = mammo.meta
  intent = meta.presentation_intent or "intent unknown"
  relation = meta.pixel_intensity_relationship or "-"
  counts = {f"ingestion: {intent} {relation} -> {mammo.voi}": 1}
  if mammo.accepted_by not in ("MG", "mammography SOP class"):
    counts[f"ingestion: accepted non-MG ({mammo.accepted_by})"] = 1
  return counts


def add_counts(total: dict[str, int], counts: Mapping[str, int]) -> None:
  """Adds ``counts`` into ``total`` in place."""
  for key, n in counts.items():
    total[key] = total.get(key, 0) + n


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

  Returns:
    The in-memory dataset (uncompressed pixel data).

  Raises:
    DicomError: no pixel data, or not one 2-D frame when downsampling.
  """
  ds = dicom.read_dataset(path)
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
  """Reads a binary ROI mask stored as DICOM.

  Returns:
    bool ``shape`` mask in the stored grid, downsampled like the image (a
    block is inside when any of its pixels is).

  Raises:
    DicomError: the mask's shape is not ``shape``.
  """
  pixels = pydicom.dcmread(path).pixel_array
  mask = block_reduce(np.asarray(pixels) > 0, downsample, "max")
  if mask.shape != tuple(shape):
    raise dicom.DicomError(
        str(path), f"ROI mask shape {mask.shape} != image shape {tuple(shape)}"
    )
  return mask.astype(bool)


# ---------------------------------------------------------------------------
# Build machinery.
# ---------------------------------------------------------------------------


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


def drop_leaking_patients(
    items: Sequence[PlannedItem], report: common.BuildReport
) -> list[PlannedItem]:
  """Keeps each patient in one split only (its most held-out split).

  Items of the patient in other splits are skipped (reported), so no
  patient leaks across train / validation / test.

  Returns:
    The kept items, in their order.
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
  """Returns ``map``, or one that runs in ``workers`` spawned processes.

  The pool's results come in the order of the payloads.
  """
  if workers <= 1:
    return map

  def mapper(fn, payloads):
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
      yield from pool.imap(fn, payloads, chunksize=1)

  return mapper


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

    Returns:
      One generator of ``(key, features)`` per split, sorted by split name.

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
    """Recomputes, (logs) and stores the build report and vocabularies.

    Returns:
      The build report as stored in ``info.metadata['build_report']``.
    """
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
