"""CMMD: clinical table + NBIA manifest `metadata.csv` + DICOM series.

Expected `manual_dir` (up to two folders deep):

  CMMD_clinicaldata_revision.csv  (UTF-8 with BOM)  or  ..._revision.xlsx
  metadata.csv                    (NBIA Data Retriever manifest)
  CMMD/<Subject>/<study folder>/<series folder>/1-1.dcm ...

`File Location` in metadata.csv is a Windows path relative to the folder of
metadata.csv (`.\\CMMD\\D1-0001\\07-18-2010-NA-NA-79377\\1.000000-NA-70244`).
The clinical table has one row per affected breast (two rows for patients
with both breasts affected); images are matched to a row by subject and the
laterality in the DICOM header (ImageLaterality, else Laterality). Images of
a breast without a clinical row are skipped (counted): CMMD gives no label
for them. CMMD has no official split (split None).

Labels: `abnormality` (mass | calcification | both), `pathology`
(benign | malignant, from `classification`), `subtype` (luminal_a,
luminal_b, her2_enriched, triple_negative; None when empty, i.e. all benign
rows and all D1-* rows), `luminal` (luminal for Luminal A/B, non_luminal
for HER2-enriched and triple negative, None without subtype), `age`.
"""

from __future__ import annotations

import pathlib
from typing import Any, Mapping

from mammojax.data import dicom
from mammojax.data.sources import common

DATASET = 'cmmd'

CLINICAL_FILES = (
  'CMMD_clinicaldata_revision.csv',
  'CMMD_clinicaldata_revision.xlsx',
)
SUBTYPES = {
  'luminal a': 'luminal_a',
  'luminal b': 'luminal_b',
  'her2-enriched': 'her2_enriched',
  'triple negative': 'triple_negative',
}
LUMINAL = {
  'luminal_a': 'luminal',
  'luminal_b': 'luminal',
  'her2_enriched': 'non_luminal',
  'triple_negative': 'non_luminal',
}
ABNORMALITIES = ('mass', 'calcification', 'both')
CLASSIFICATIONS = {'benign': 'benign', 'malignant': 'malignant'}
_CLINICAL_COLUMNS = ('ID1', 'LeftRight', 'Age', 'abnormality',
                     'classification', 'subtype')
_METADATA_COLUMNS = ('Subject ID', 'File Location')
_LAYOUT = ('CMMD_clinicaldata_revision.csv (or .xlsx), the NBIA manifest '
           'metadata.csv and its CMMD/<Subject>/<study>/<series>/*.dcm tree')


def read_clinical(path: pathlib.Path) -> list[dict[str, str]]:
  """Rows of the clinical CSV (BOM-safe) or XLSX, all values as strings."""
  if path.suffix.lower() == '.xlsx':
    import openpyxl  # pylint: disable=g-import-not-at-top

    book = openpyxl.load_workbook(path, read_only=True, data_only=True)
    try:
      sheet = book.worksheets[0]
      values = list(sheet.iter_rows(values_only=True))
    finally:
      book.close()
    if not values:
      raise common.SourceError(f'CMMD: {path} has an empty first sheet')
    header = [str(h).strip() if h is not None else '' for h in values[0]]
    common.require_columns(path, header, _CLINICAL_COLUMNS)
    rows = []
    for row in values[1:]:
      if all(v is None for v in row):
        continue
      rows.append({h: '' if v is None else str(v)
                   for h, v in zip(header, row)})
    return rows
  header, rows = common.read_csv_rows(path)
  common.require_columns(path, header, _CLINICAL_COLUMNS)
  return rows


def parse_clinical_row(
  row: Mapping[str, str], item: str, report: common.BuildReport
) -> dict[str, common.LabelValue] | None:
  """Normalised labels of one clinical row (None = skipped, reported)."""
  abnormality = row['abnormality'].strip().lower()
  if abnormality not in ABNORMALITIES:
    report.skip(item, f'unknown abnormality {row["abnormality"]!r}')
    return None
  classification = row['classification'].strip().lower()
  if classification not in CLASSIFICATIONS:
    report.skip(item, f'unknown classification {row["classification"]!r}')
    return None
  raw_subtype = row['subtype'].strip()
  subtype = SUBTYPES.get(raw_subtype.lower()) if raw_subtype else None
  if raw_subtype and subtype is None:
    report.warn(f'CMMD: {item}: unknown subtype {raw_subtype!r} -> None')
    report.count('unknown subtype')
  if subtype is not None and classification == 'benign':
    report.count('subtype on a benign row')
  if subtype is None and classification == 'malignant':
    report.count('malignant row without subtype')
  try:
    age = int(float(row['Age']))
  except ValueError:
    age = None
  return {
    'abnormality': abnormality,
    'pathology': CLASSIFICATIONS[classification],
    'subtype': subtype,
    'luminal': LUMINAL.get(subtype) if subtype else None,
    'age': age,
  }


def _find_one(root: pathlib.Path, names) -> pathlib.Path | None:
  """First file (in `names` order) found under `root`."""
  for name in names:
    found = common.find_files(root, [name])
    if found:
      return found[0]
  return None


def parse_cmmd(
  manual_dir: common.PathLike,
  *,
  clinical_file: common.PathLike | None = None,
) -> tuple[list[common.SourceRecord], common.BuildReport]:
  """Parses a CMMD download into one record per labelled image.

  Args:
    manual_dir: the download folder.
    clinical_file: clinical CSV/XLSX to use (default: the CSV if present,
      else the XLSX found under `manual_dir`).

  Returns:
    (records, report).

  Raises:
    SourceError: missing clinical file, metadata.csv or DICOM series.
  """
  root = common.require_dir(manual_dir, 'CMMD', _LAYOUT)
  clinical = (pathlib.Path(clinical_file) if clinical_file
              else _find_one(root, CLINICAL_FILES))
  if clinical is None or not clinical.is_file():
    raise common.SourceError(
      f'CMMD: no clinical file found in {root}; expected '
      f'{" or ".join(CLINICAL_FILES)}')
  metadata = _find_one(root, ['metadata.csv'])
  if metadata is None:
    raise common.SourceError(
      f'CMMD: no metadata.csv (NBIA manifest) found in {root}; expected '
      f'{_LAYOUT}')
  report = common.BuildReport(dataset=DATASET)
  breasts: dict[tuple[str, str], dict[str, Any]] = {}
  for line, row in enumerate(read_clinical(clinical), start=2):
    subject = row['ID1'].strip()
    side = row['LeftRight'].strip().upper()
    item = f'{clinical.name}:{line} ({subject} {side})'
    if side not in ('L', 'R'):
      report.skip(item, f'unknown LeftRight {row["LeftRight"]!r}')
      continue
    if (subject, side) in breasts:
      report.skip(item, 'duplicate clinical row for this breast')
      continue
    labels = parse_clinical_row(row, item, report)
    if labels is not None:
      breasts[(subject, side)] = {'labels': labels, 'item': item, 'n': 0}
  header, meta_rows = common.read_csv_rows(metadata)
  common.require_columns(metadata, header, _METADATA_COLUMNS)
  series: dict[str, list[pathlib.Path]] = {}
  for row in meta_rows:
    location = row['File Location'].strip().replace('\\', '/')
    folder = (metadata.parent / location).resolve()
    series.setdefault(row['Subject ID'].strip(), []).append(folder)
  subjects = sorted({s for s, _ in breasts})
  found_any = False
  records = []
  ids = set()
  for subject in subjects:
    folders = series.get(subject)
    if not folders:
      for side in 'LR':
        if (subject, side) in breasts:
          report.skip(breasts[(subject, side)]['item'],
                      'subject not in metadata.csv')
          breasts[(subject, side)]['n'] = -1
      continue
    for folder in folders:
      if not folder.is_dir():
        report.skip(folder, f'series folder of {subject} not found')
        continue
      for path in dicom.find_dicom_files(folder):
        found_any = True
        record = _record(subject, path, root, breasts, report, ids)
        if record is not None:
          records.append(record)
  if breasts and not found_any:
    raise common.SourceError(
      f'CMMD: no DICOM files found in the series folders listed by '
      f'{metadata}; expected {_LAYOUT}')
  for (subject, side), breast in sorted(breasts.items()):
    if breast['n'] == 0:
      report.skip(breast['item'], 'no image of this breast found')
  for subject in sorted(set(series) - set(subjects)):
    report.count('metadata subjects without clinical row')
  return common.finish(records, report)


def _record(
  subject: str,
  path: pathlib.Path,
  root: pathlib.Path,
  breasts: dict[tuple[str, str], dict[str, Any]],
  report: common.BuildReport,
  ids: set[str],
) -> common.SourceRecord | None:
  """One DICOM of `subject` -> record (None = skipped, reason reported)."""
  try:
    header = common.read_header(path)
  except Exception as e:  # pylint: disable=broad-except
    report.skip(path, f'unreadable DICOM file ({type(e).__name__})')
    return None
  if header.laterality is None:
    report.skip(path, 'no ImageLaterality/Laterality in the DICOM header')
    return None
  breast = breasts.get((subject, header.laterality))
  if breast is None:
    report.skip(path, 'breast without clinical row (unlabelled)')
    return None
  breast['n'] += 1
  view = header.view
  if view is None:
    report.count('no view in DICOM header')
  example_id = f'{subject}_{header.laterality}_{view or "unknown"}'
  k = 2
  base = example_id
  while example_id in ids:
    example_id = f'{base}_{k}'
    k += 1
  ids.add(example_id)
  labels = dict(breast['labels'])
  labels['laterality'] = header.laterality
  labels['view'] = header.view
  annotation = common.image_entry(
    image_id=example_id,
    file=common.relative_file(path, root.resolve()),
    patient_id=subject,
    laterality=header.laterality,
    view=view or 'unknown',
    header=header,
  )
  return common.SourceRecord(
    example_id=example_id,
    patient_id=subject,
    image_path=path,
    annotation=annotation,
    labels=labels,
    split=None,
  )
