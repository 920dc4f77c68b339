"""Shared pieces of the real-dataset parsers: records, reports, DICOM index.

Every parser in `mammojax.data.sources` turns a manually downloaded dataset
folder (`manual_dir`) into a list of `SourceRecord`s plus a `BuildReport`.
The report counts every record per split and label value, and every item
that was skipped together with the reason, so nothing is dropped silently.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import io
import json
import os
import pathlib
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np
import pydicom

from mammojax.data import dicom

PathLike = str | os.PathLike

# Labels that are counted in the report are scalars; anything else is ignored.
LabelValue = str | int | None

class SourceError(ValueError):
  """A manual download folder is missing or not laid out as expected."""


@dataclasses.dataclass
class SourceRecord:
  """One example found in a real dataset download.

  Attributes:
    example_id: unique id of the example within the dataset.
    patient_id: patient (or specimen) id as written by the dataset.
    image_path: path of the full view (DICOM, or JPEG for Databiox).
    roi_mask_path: binary ROI mask of the abnormality, when the source has it.
    crop_path: cropped ROI image, when the source has it.
    annotation: one entry of the `images` list of `annotations.json`
      (coordinates in the stored pixel grid), or None for non-mammograms.
    labels: example-level labels (strings or ints; None = unknown).
    split: the source's official split ('train' | 'test'), or None.
    extras: source-specific data that annotations.json has no field for
      (e.g. INbreast cluster contours and other findings).
  """

  example_id: str
  patient_id: str
  image_path: pathlib.Path
  roi_mask_path: pathlib.Path | None = None
  crop_path: pathlib.Path | None = None
  annotation: dict[str, Any] | None = None
  labels: dict[str, LabelValue] = dataclasses.field(default_factory=dict)
  split: str | None = None
  extras: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class BuildReport:
  """What a parser found: counts per split and label, skips and warnings.

  Attributes:
    dataset: dataset name, e.g. 'cbis_ddsm'.
    num_records: records per split ('none' for sources without a split).
    label_counts: split -> label name -> value -> count (None = 'null').
    skipped: one entry per skipped item: {'item': ..., 'reason': ...}.
    warnings: free-text warnings (one line each).
    stats: named counters of policy decisions (e.g. multi-valued labels).
  """

  dataset: str
  num_records: dict[str, int] = dataclasses.field(default_factory=dict)
  label_counts: dict[str, dict[str, dict[str, int]]] = dataclasses.field(
    default_factory=dict
  )
  skipped: list[dict[str, str]] = dataclasses.field(default_factory=list)
  warnings: list[str] = dataclasses.field(default_factory=list)
  stats: dict[str, int] = dataclasses.field(default_factory=dict)

  def add_record(self, record: SourceRecord) -> None:
    """Counts `record` under its split and each of its scalar labels."""
    self.add_labels(record.split, record.labels)

  def add_labels(
    self, split: str | None, labels: Mapping[str, LabelValue]
  ) -> None:
    """Counts one example with `labels` under `split`."""
    split = split or 'none'
    self.num_records[split] = self.num_records.get(split, 0) + 1
    per_label = self.label_counts.setdefault(split, {})
    for name, value in labels.items():
      if value is not None and not isinstance(value, (str, int)):
        continue
      key = 'null' if value is None else str(value)
      counts = per_label.setdefault(name, {})
      counts[key] = counts.get(key, 0) + 1

  def skip(self, item: Any, reason: str) -> None:
    """Records that `item` (a path or row id) was skipped and why."""
    self.skipped.append({'item': str(item), 'reason': reason})

  def warn(self, message: str) -> None:
    """Adds a warning line."""
    self.warnings.append(message)

  def count(self, name: str, n: int = 1) -> None:
    """Increments the named policy counter."""
    self.stats[name] = self.stats.get(name, 0) + n

  @property
  def skip_counts(self) -> dict[str, int]:
    """Number of skipped items per reason."""
    return dict(collections.Counter(s['reason'] for s in self.skipped))

  def total(self, label: str, value: str, split: str | None = None) -> int:
    """Count of `label == value`, over one split or over all splits."""
    splits = [split] if split is not None else list(self.label_counts)
    return sum(
      self.label_counts.get(s, {}).get(label, {}).get(value, 0)
      for s in splits
    )

  def to_dict(self) -> dict[str, Any]:
    """Returns the report as plain JSON-serialisable data."""
    out = dataclasses.asdict(self)
    out['skip_counts'] = self.skip_counts
    return out

  def to_json(self, indent: int | None = 2) -> str:
    """Serialises the report (sorted keys, stable for diffs)."""
    return json.dumps(self.to_dict(), indent=indent, sort_keys=True)


def finish(
  records: list[SourceRecord], report: BuildReport
) -> tuple[list[SourceRecord], BuildReport]:
  """Counts all records into the report and returns both."""
  for record in records:
    report.add_record(record)
  return records, report


def require_dir(
  manual_dir: PathLike, dataset: str, expected: str
) -> pathlib.Path:
  """Returns `manual_dir` as a Path, or raises naming what was expected."""
  path = pathlib.Path(manual_dir)
  if not path.is_dir():
    raise SourceError(
      f'{dataset}: manual_dir {path} does not exist or is not a folder; '
      f'expected {expected}'
    )
  return path


def find_files(
  root: pathlib.Path, names: Iterable[str], max_depth: int = 2
) -> list[pathlib.Path]:
  """Files under `root` (at most `max_depth` folders deep) with a given name.

  Names are compared case-insensitively; results are sorted.
  """
  wanted = {n.lower() for n in names}
  found = []
  for dirpath, dirnames, filenames in os.walk(root):
    depth = len(pathlib.Path(dirpath).relative_to(root).parts)
    if depth >= max_depth:
      dirnames[:] = []
    dirnames.sort()
    for name in filenames:
      if name.lower() in wanted:
        found.append(pathlib.Path(dirpath) / name)
  return sorted(found)


def iter_files(
  root: pathlib.Path, suffixes: Sequence[str]
) -> Iterator[pathlib.Path]:
  """All files under `root` whose suffix (case-insensitive) is in `suffixes`."""
  wanted = {s.lower() for s in suffixes}
  for dirpath, dirnames, filenames in os.walk(root):
    dirnames.sort()
    for name in sorted(filenames):
      if pathlib.Path(name).suffix.lower() in wanted:
        yield pathlib.Path(dirpath) / name


def read_text(path: pathlib.Path) -> str:
  """Reads a text file; strips a UTF-8 BOM; keeps line endings for csv."""
  return path.read_bytes().decode('utf-8-sig')


def read_csv_rows(
  path: pathlib.Path, delimiter: str = ','
) -> tuple[list[str], list[dict[str, str]]]:
  """Reads a CSV file as (header, rows) with every value kept as a string.

  The csv module copes with CRLF line ends and quoted embedded newlines;
  values are not converted (so the literal `N/A` stays `N/A`). Header names
  are stripped of surrounding whitespace.
  """
  reader = csv.reader(io.StringIO(read_text(path), newline=''),
                      delimiter=delimiter)
  try:
    header = [h.strip() for h in next(reader)]
  except StopIteration:
    raise SourceError(f'{path}: empty CSV file, expected a header row')
  rows = []
  for values in reader:
    if not any(v.strip() for v in values):
      continue
    if len(values) != len(header):
      raise SourceError(
        f'{path}: row {len(rows) + 2} has {len(values)} fields, expected '
        f'{len(header)} ({delimiter!r}-separated, header {header})'
      )
    rows.append(dict(zip(header, values)))
  return header, rows


def require_columns(
  path: pathlib.Path, header: Sequence[str], columns: Iterable[str]
) -> None:
  """Raises naming the missing columns of a CSV file."""
  missing = [c for c in columns if c not in header]
  if missing:
    raise SourceError(
      f'{path}: missing column(s) {missing}; found columns {list(header)}'
    )


# --------------------------------------------------------------------------
# DICOM header index.


@dataclasses.dataclass(frozen=True)
class DicomHeader:
  """The few header fields the parsers need, read without pixel data."""

  path: pathlib.Path
  study_uid: str
  series_uid: str
  sop_uid: str
  patient_id: str
  rows: int
  columns: int
  laterality: str | None
  view: str | None
  pixel_spacing_mm: tuple[float, float] | None


def read_header(path: pathlib.Path) -> DicomHeader:
  """Reads the indexing fields of one DICOM file (no pixel data).

  Uses `mammojax.data.dicom.read_metadata`, so laterality and view come from
  the same fallbacks as everywhere else (ImageLaterality / Laterality,
  ViewPosition / ViewCodeSequence / PatientOrientation).

  Raises:
    dicom.DicomError: not a DICOM file, or truncated.
  """
  meta = dicom.read_metadata(path)
  return DicomHeader(
    path=path,
    study_uid=meta.study_uid or '',
    series_uid=meta.series_uid or '',
    sop_uid=meta.sop_uid or '',
    patient_id=meta.patient_id or '',
    rows=meta.rows or 0,
    columns=meta.columns or 0,
    laterality=meta.laterality,
    view=meta.view,
    pixel_spacing_mm=meta.pixel_spacing_mm,
  )


class DicomIndex:
  """All DICOM files under a folder, indexed by (study UID, series UID).

  The folder is walked once and each header read with `stop_before_pixels`.
  Unreadable files are recorded in `report` as skipped.
  """

  def __init__(
    self, root: pathlib.Path, report: BuildReport | None = None
  ) -> None:
    self.root = root
    self.headers: list[DicomHeader] = []
    self.by_series: dict[tuple[str, str], list[DicomHeader]] = {}
    self.by_path: dict[pathlib.Path, DicomHeader] = {}
    for path in dicom.find_dicom_files(root):
      self.add(path, report)

  def add(
    self, path: pathlib.Path, report: BuildReport | None = None
  ) -> DicomHeader | None:
    """Indexes one file; returns its header or None if unreadable."""
    if path in self.by_path:
      return self.by_path[path]
    try:
      header = read_header(path)
    except Exception as e:  # pylint: disable=broad-except
      if report is not None:
        report.skip(path, f'unreadable DICOM file ({e})')
      return None
    self.headers.append(header)
    self.by_path[path] = header
    key = (header.study_uid, header.series_uid)
    self.by_series.setdefault(key, []).append(header)
    return header

  def series(self, study_uid: str, series_uid: str) -> list[DicomHeader]:
    """Headers of the files of one series (possibly empty)."""
    return self.by_series.get((study_uid, series_uid), [])

  def __len__(self) -> int:
    return len(self.headers)


def load_pixels(path: pathlib.Path) -> np.ndarray:
  """Stored pixel values of a DICOM file (no rescaling or windowing)."""
  return pydicom.dcmread(path).pixel_array


def is_binary_mask(
  path: pathlib.Path, shape: tuple[int, int] | None = None
) -> bool:
  """True if the DICOM holds a 0/255 (or 0/1) mask, of `shape` if given."""
  try:
    pixels = load_pixels(path)
  except Exception:  # pylint: disable=broad-except
    return False
  if pixels.ndim != 2 or (shape is not None and pixels.shape != shape):
    return False
  values = np.unique(pixels)
  return bool(values.size <= 2 and set(values.tolist()) <= {0, 1, 255})


ACR_TO_DENSITY = {'1': 'a', '2': 'b', '3': 'c', '4': 'd'}


def density_letter(value: str) -> str | None:
  """ACR category 1-4 -> BI-RADS density letter a-d (None otherwise)."""
  return ACR_TO_DENSITY.get(str(value).strip())


def image_entry(
  *,
  image_id: str,
  file: str,
  patient_id: str,
  laterality: str | None,
  view: str | None,
  header: DicomHeader | None = None,
  density: str | None = None,
  labels: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
  """An `images` entry of annotations.json without findings."""
  entry: dict[str, Any] = {
    'image_id': image_id,
    'file': file,
    'patient_id': patient_id,
    'laterality': laterality,
    'view': view,
  }
  if header is not None:
    entry['rows'] = header.rows
    entry['columns'] = header.columns
    if header.pixel_spacing_mm is not None:
      entry['pixel_spacing_mm'] = list(header.pixel_spacing_mm)
  if density is not None:
    entry['density'] = density
  entry['calcifications'] = []
  entry['clusters'] = []
  entry['masses'] = []
  entry['labels'] = dict(labels or {})
  return entry


def relative_file(path: pathlib.Path, root: pathlib.Path) -> str:
  """`path` relative to `root` with '/' separators (absolute if outside)."""
  try:
    return path.relative_to(root).as_posix()
  except ValueError:
    return path.as_posix()
