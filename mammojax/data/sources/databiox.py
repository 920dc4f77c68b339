"""Databiox: IDC histopathology images graded 1-3 at four magnifications.

Expected `manual_dir` (the grade folders may sit one folder deeper):

  BC_IDC_Grade_1/{4x,10x,20x,40x}/01_BC_G1_9057_40x_1.JPG
  BC_IDC_Grade_2/...            BC_IDC_Grade_3/...

File names are `<NN>_BC_G<grade>_<patient>_<mag>_<k>.<jpg|JPG>`. `NN` is a
per-grade running index that repeats across grades, so the 4-5 digit number
after the grade identifies the patient (`01_BC_G1_9057_40x_1.JPG` -> 9057).
Labels: `grade` (1-3, int), `magnification` ('4x' ... '40x'). A file whose
grade or magnification disagrees with its folders is skipped (counted).
Bad input: a folder named like a grade folder with another grade
(`BC_IDC_Grade_4`, `BC_IDC_Grade_x`) is skipped with every file in it
(counted); a grade folder without one of the four magnification folders is
counted (`missing magnification folder ...`; its other images are kept); a
patient whose images sit in two grade folders (with matching names) is
ambiguous: all of its images are skipped (counted, reason names the
grades). Unreadable and grayscale JPEGs are skipped by the builder.
No official split; not a mammogram, so records carry no annotation.
"""

from __future__ import annotations

import pathlib
import re
from typing import Iterable

from mammojax.data.sources import common

DATASET = 'databiox'
MAGNIFICATIONS = ('4x', '10x', '20x', '40x')
GRADE_FOLDER = re.compile(r'^BC_IDC_Grade_(?P<grade>[123])$', re.IGNORECASE)
# Anything that looks like a grade folder (for the "unknown grade" skip).
ANY_GRADE_FOLDER = re.compile(r'^BC_IDC_Grade_(?P<grade>.+)$', re.IGNORECASE)
FILE_NAME = re.compile(
  r'^(?P<index>\d+)_BC_G(?P<grade>[123])_(?P<patient>\d+)_'
  r'(?P<mag>\d+x)_(?P<k>\d+)\.(?:jpe?g)$',
  re.IGNORECASE,
)
_LAYOUT = 'folders BC_IDC_Grade_{1,2,3}/{4x,10x,20x,40x}/*.jpg'


def parse_databiox(
  manual_dir: common.PathLike,
  *,
  magnifications: Iterable[str] | None = None,
) -> tuple[list[common.SourceRecord], common.BuildReport]:
  """Parses a Databiox download into one record per image.

  Args:
    manual_dir: folder holding the BC_IDC_Grade_* folders.
    magnifications: keep only these (e.g. ['40x']); None keeps all.
      Images at other magnifications are counted, not reported as skips.

  Returns:
    (records, report).

  Raises:
    SourceError: no BC_IDC_Grade_* folder, or an unknown magnification.
  """
  root = common.require_dir(manual_dir, 'Databiox', _LAYOUT)
  wanted = None
  if magnifications is not None:
    wanted = {m.lower() for m in magnifications}
    unknown = wanted - set(MAGNIFICATIONS)
    if unknown:
      raise ValueError(f'Databiox: unknown magnification(s) {sorted(unknown)}'
                       f'; expected some of {MAGNIFICATIONS}')
  grade_dirs = sorted(
    p for base in [root, *sorted(q for q in root.iterdir() if q.is_dir())]
    for p in base.iterdir() if p.is_dir() and GRADE_FOLDER.match(p.name)
  )
  if not grade_dirs:
    raise common.SourceError(
      f'Databiox: no BC_IDC_Grade_1/2/3 folder found in {root}; expected '
      f'{_LAYOUT}')
  report = common.BuildReport(dataset=DATASET)
  parents = {p.parent for p in grade_dirs}
  for base in sorted(parents):
    for p in sorted(base.iterdir()):
      m = ANY_GRADE_FOLDER.match(p.name)
      if p.is_dir() and m and not GRADE_FOLDER.match(p.name):
        for f in sorted(q for q in p.rglob('*') if q.is_file()):
          report.skip(f, f'unknown grade folder {p.name} (expected '
                      'BC_IDC_Grade_1/2/3)')
  records = []
  for grade_dir in grade_dirs:
    folder_grade = int(GRADE_FOLDER.match(grade_dir.name)['grade'])
    mags = {q.name.lower() for q in grade_dir.iterdir() if q.is_dir()}
    for mag in MAGNIFICATIONS:
      if mag not in mags and (wanted is None or mag in wanted):
        report.count(f'missing magnification folder {grade_dir.name}/{mag}')
    for path in sorted(p for p in grade_dir.rglob('*') if p.is_file()):
      record = _record(path, grade_dir, folder_grade, root, wanted, report)
      if record is not None:
        records.append(record)
  grades_of: dict[str, set[int]] = {}
  for r in records:
    grades_of.setdefault(r.patient_id, set()).add(r.labels['grade'])
  kept = []
  for r in records:
    grades = grades_of[r.patient_id]
    if len(grades) > 1:
      report.skip(r.image_path, 'patient in two grades ('
                  + ', '.join(f'G{g}' for g in sorted(grades)) + ')')
    else:
      kept.append(r)
  return common.finish(kept, report)


def _record(
  path: pathlib.Path,
  grade_dir: pathlib.Path,
  folder_grade: int,
  root: pathlib.Path,
  wanted: set[str] | None,
  report: common.BuildReport,
) -> common.SourceRecord | None:
  """One image file -> record (None = filtered or skipped)."""
  if path.suffix.lower() not in ('.jpg', '.jpeg'):
    report.skip(path, 'not a .jpg/.JPG file')
    return None
  match = FILE_NAME.match(path.name)
  if match is None:
    report.skip(path, 'name not <NN>_BC_G<grade>_<patient>_<mag>_<k>.jpg')
    return None
  grade = int(match['grade'])
  mag = match['mag'].lower()
  folder_mag = path.parent.name.lower() if path.parent != grade_dir else None
  if grade != folder_grade:
    report.skip(path, f'grade G{grade} in name but folder {grade_dir.name}')
    return None
  if mag not in MAGNIFICATIONS:
    report.skip(path, f'unknown magnification {match["mag"]}')
    return None
  if folder_mag != mag:
    report.skip(path, f'magnification {mag} in name but folder '
                f'{folder_mag or "(none)"}')
    return None
  if wanted is not None and mag not in wanted:
    report.count(f'filtered out: magnification {mag}')
    return None
  if path.suffix != '.JPG':
    report.count(f'extension {path.suffix}')
  patient = match['patient']
  return common.SourceRecord(
    example_id=path.stem,
    patient_id=patient,
    image_path=path,
    labels={'grade': grade, 'magnification': mag},
    split=None,
  )
