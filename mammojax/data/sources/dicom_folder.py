"""Any DICOM folder with an `annotations.json` or a labels CSV.

Expected `manual_dir`, either:

  annotations.json   the mammojax annotation format (what the synthetic
                     generator writes); `file` is relative to the json
  <name>.csv         columns file, patient_id, laterality, view, then any
                     label columns (an optional `split` column gives
                     'train' / 'test' / 'validation')

One record per image. Integer-looking CSV values become ints and empty
values None. Images whose file is missing or unreadable are skipped with
the reason.
"""

from __future__ import annotations

import pathlib
from typing import Any

from mammojax.data import annotations as annotations_lib
from mammojax.data.sources import common

DATASET = 'dicom_folder'
CSV_COLUMNS = ('file', 'patient_id', 'laterality', 'view')
SPLITS = ('train', 'test', 'validation')
_LAYOUT = ('annotations.json (mammojax-annotations format) or a CSV with '
           'columns file, patient_id, laterality, view and label columns')


def _scalar(value: str) -> common.LabelValue:
  """'3' -> 3, '' -> None, other strings unchanged (stripped)."""
  value = value.strip()
  if not value:
    return None
  try:
    return int(value)
  except ValueError:
    return value


def _split(value: Any, item: str, report: common.BuildReport) -> str | None:
  """A split name from a label value (None if absent; counted if unknown)."""
  if value is None:
    return None
  if str(value).lower() in SPLITS:
    return str(value).lower()
  report.count(f'unknown split {value!r} -> None')
  report.warn(f'DICOM folder: {item}: unknown split {value!r}; expected one '
              f'of {SPLITS}')
  return None


def parse_dicom_folder(
  manual_dir: common.PathLike,
  *,
  annotations_file: common.PathLike | None = None,
  labels_csv: common.PathLike | None = None,
) -> tuple[list[common.SourceRecord], common.BuildReport]:
  """Parses a DICOM folder described by annotations.json or a labels CSV.

  Args:
    manual_dir: the folder.
    annotations_file: explicit annotation file (default
      `manual_dir/annotations.json` when it exists).
    labels_csv: explicit labels CSV (default: the only *.csv directly in
      `manual_dir`, used when there is no annotations.json).

  Returns:
    (records, report).

  Raises:
    SourceError: neither file found, several CSVs, or missing columns.
    AnnotationError: invalid annotations.json.
  """
  root = common.require_dir(manual_dir, 'DICOM folder', _LAYOUT)
  report = common.BuildReport(dataset=DATASET)
  if annotations_file is None and labels_csv is None:
    default = root / 'annotations.json'
    if default.is_file():
      annotations_file = default
    else:
      csvs = sorted(root.glob('*.csv'))
      if len(csvs) > 1:
        raise common.SourceError(
          f'DICOM folder: several CSV files in {root} '
          f'({[p.name for p in csvs]}) and no annotations.json; pass '
          'labels_csv= to choose one')
      if not csvs:
        raise common.SourceError(
          f'DICOM folder: no annotations.json or labels CSV found in '
          f'{root}; expected {_LAYOUT}')
      labels_csv = csvs[0]
  if annotations_file is not None:
    records = _from_annotations(pathlib.Path(annotations_file), report)
  else:
    records = _from_csv(pathlib.Path(labels_csv), report)
  return common.finish(records, report)


def _from_annotations(
  path: pathlib.Path, report: common.BuildReport
) -> list[common.SourceRecord]:
  """Records from a validated annotations.json."""
  data = annotations_lib.load_annotations(path)
  report.dataset = data['dataset']
  records = []
  for image in data['images']:
    file = annotations_lib.resolve_file(path, image)
    if not file.is_file():
      report.skip(file, f'image {image["image_id"]!r}: file not found')
      continue
    labels = {k: v for k, v in image['labels'].items()
              if v is None or isinstance(v, (str, int))}
    labels.setdefault('laterality', image['laterality'])
    labels.setdefault('view', image['view'])
    records.append(common.SourceRecord(
      example_id=image['image_id'],
      patient_id=image['patient_id'],
      image_path=file,
      annotation=image,
      labels=labels,
      split=_split(image['labels'].get('split'), image['image_id'], report),
    ))
  return records


def _from_csv(
  path: pathlib.Path, report: common.BuildReport
) -> list[common.SourceRecord]:
  """Records from a labels CSV (headers read from the DICOM files)."""
  header, rows = common.read_csv_rows(path)
  common.require_columns(path, header, CSV_COLUMNS)
  records = []
  ids = set()
  for line, row in enumerate(rows, start=2):
    item = f'{path.name}:{line}'
    rel = row['file'].strip()
    file = path.parent / rel
    if not file.is_file():
      report.skip(item, f'file not found: {rel}')
      continue
    side = row['laterality'].strip().upper()[:1]
    if side not in ('L', 'R'):
      report.skip(item, f'laterality {row["laterality"]!r} is not L or R')
      continue
    try:
      header_ = common.read_header(file)
    except Exception as e:  # pylint: disable=broad-except
      report.skip(item, f'unreadable DICOM file ({e})')
      continue
    example_id = pathlib.PurePosixPath(rel).with_suffix('').as_posix()
    if example_id in ids:
      report.skip(item, f'duplicate file {rel}')
      continue
    ids.add(example_id)
    view = row['view'].strip().upper()
    labels = {k: _scalar(v) for k, v in row.items()
              if k not in ('file', 'patient_id', 'split')}
    labels['laterality'] = side
    labels['view'] = view
    patient_id = row['patient_id'].strip()
    records.append(common.SourceRecord(
      example_id=example_id,
      patient_id=patient_id,
      image_path=file,
      annotation=common.image_entry(
        image_id=example_id,
        file=common.relative_file(file, path.parent),
        patient_id=patient_id,
        laterality=side,
        view=view or 'unknown',
        header=header_,
      ),
      labels=labels,
      split=_split(_scalar(row.get('split', '')), item, report),
    ))
  return records
