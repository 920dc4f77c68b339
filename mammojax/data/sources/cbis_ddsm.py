"""CBIS-DDSM: case-description CSVs + the NBIA DICOM download.

Expected `manual_dir` (the TCIA download, any nesting up to two folders):

  calc_case_description_train_set.csv   calc_case_description_test_set.csv
  mass_case_description_train_set.csv   mass_case_description_test_set.csv
  CBIS-DDSM/<Subject>/<study folder>/<series folder>/1-1.dcm

One record per CSV row, i.e. per abnormality in one view. The CSV paths read
`<Subject>/<StudyInstanceUID>/<SeriesInstanceUID>/000000.dcm`, which is not
how NBIA names downloaded files, so files are joined by the study and series
UIDs read from their DICOM headers (the folder is indexed once, headers
only); the CSV's literal relative path (under `manual_dir` or
`manual_dir/CBIS-DDSM`) is the fallback. Crop and ROI mask share or swap
file names and series between rows, so the ROI mask is recognised by
content: a binary 0/255 image of the full image's size. The other candidate
is the crop.

Label policies (all counted in `BuildReport.stats`):

* pathology: MALIGNANT -> 'malignant'; BENIGN and BENIGN_WITHOUT_CALLBACK ->
  'benign' (both were proven benign; "without callback" means the finding
  did not need a recall). The raw value is kept as `pathology_raw`.
* `calc type` / `calc distribution` / `mass shape` / `mass margins` are
  split on '-' into atoms (atoms never contain '-'), lower-cased, aliases
  applied (LUCENT_CENTERED -> lucent_center) and repeats removed. `N/A`
  gives None (unknown). Of the atoms inside the configured vocabulary, the
  policy `multi_label` picks one: 'most_suspicious' (default; the highest
  rank in `SUSPICION_RANK`, as BI-RADS reporting takes the most suspicious
  descriptor) or 'first' (first listed in-vocabulary atom).
* Atoms outside the vocabulary (rare classes such as vascular, coarse,
  lucent_center for the 5-class MT-GCN vocabulary) are ignored when another
  atom is in the vocabulary; when none is, `out_of_vocab='unknown'`
  (default) keeps the row with label None, 'drop' skips the row.
* density: raw 0-4 kept as int `density`; 1-4 -> ACR letters a-d in the
  annotation; 0 is not an ACR category -> annotation density unset.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Iterable, Mapping, Sequence

from mammojax.data import vocab as vocab_lib
from mammojax.data.sources import common

DATASET = 'cbis_ddsm'

CSV_FILES = {
  ('calcification', 'train'): 'calc_case_description_train_set.csv',
  ('calcification', 'test'): 'calc_case_description_test_set.csv',
  ('mass', 'train'): 'mass_case_description_train_set.csv',
  ('mass', 'test'): 'mass_case_description_test_set.csv',
}

# Vocabulary fields of `mammojax.data.vocab` ('cbis_ddsm') per CSV label.
VOCAB_FIELDS = {
  'calc_type': 'morphology',
  'calc_distribution': 'distribution',
  'mass_shape': 'mass_shape',
  'mass_margin': 'mass_margin',
}


def default_vocabularies(dataset: str = DATASET) -> dict[str, tuple[str, ...]]:
  """CSV label name -> terms, from `mammojax.data.vocab.VOCABULARIES`."""
  return {name: vocab_lib.get_vocabulary(dataset, field)
          for name, field in VOCAB_FIELDS.items()}


ALIASES = {'lucent_centered': 'lucent_center'}

# Higher = more suspicious of malignancy (BI-RADS descriptor order).
SUSPICION_RANK = {
  'calc_type': {
    'skin': 0, 'vascular': 0, 'coarse': 0, 'large_rodlike': 0,
    'round_and_regular': 1, 'lucent_center': 0, 'eggshell': 0,
    'milk_of_calcium': 0, 'dystrophic': 0, 'punctate': 2, 'amorphous': 3,
    'pleomorphic': 4, 'fine_linear_branching': 5,
  },
  'calc_distribution': {
    'diffusely_scattered': 0, 'regional': 1, 'clustered': 2, 'linear': 3,
    'segmental': 4,
  },
  'mass_shape': {
    'lymph_node': 0, 'round': 1, 'oval': 1, 'lobulated': 2,
    'asymmetric_breast_tissue': 2, 'focal_asymmetric_density': 3,
    'irregular': 4, 'architectural_distortion': 4,
  },
  'mass_margin': {
    'circumscribed': 0, 'obscured': 1, 'microlobulated': 2, 'ill_defined': 3,
    'spiculated': 4,
  },
}

PATHOLOGY = {
  'MALIGNANT': 'malignant',
  'BENIGN': 'benign',
  'BENIGN_WITHOUT_CALLBACK': 'benign',
}

# Canonical column keys: header names lower-cased with '_' read as ' ', so
# calc's 'breast density' and mass's 'breast_density' are one column.
_COMMON_COLUMNS = (
  'patient id', 'breast density', 'left or right breast', 'image view',
  'abnormality id', 'abnormality type', 'assessment', 'pathology',
  'subtlety', 'image file path', 'cropped image file path',
  'roi mask file path',
)
_TYPE_COLUMNS = {
  'calcification': ('calc type', 'calc distribution'),
  'mass': ('mass shape', 'mass margins'),
}
_LABEL_COLUMNS = {
  'calc type': 'calc_type',
  'calc distribution': 'calc_distribution',
  'mass shape': 'mass_shape',
  'mass margins': 'mass_margin',
}

_NBIA_LAYOUT = 'CBIS-DDSM/<Subject>/<study folder>/<series folder>/1-1.dcm'


@dataclasses.dataclass(frozen=True)
class LabelPolicy:
  """How multi-valued and rare CBIS-DDSM labels become one vocabulary term.

  Attributes:
    vocabularies: label name ('calc_type', 'calc_distribution', 'mass_shape',
      'mass_margin') -> allowed terms; default: the 'cbis_ddsm' vocabulary
      of `mammojax.data.vocab` (MT-GCN's 5 morphology and 5 distribution
      classes, all CBIS-DDSM mass shapes and margins).
    multi_label: 'most_suspicious' or 'first'.
    out_of_vocab: 'unknown' (label None) or 'drop' (skip the row).
  """

  vocabularies: Mapping[str, Sequence[str]] = dataclasses.field(
    default_factory=default_vocabularies
  )
  multi_label: str = 'most_suspicious'
  out_of_vocab: str = 'unknown'

  def __post_init__(self):
    if self.multi_label not in ('most_suspicious', 'first'):
      raise ValueError(
        f"LabelPolicy.multi_label={self.multi_label!r}; expected "
        "'most_suspicious' or 'first'"
      )
    if self.out_of_vocab not in ('unknown', 'drop'):
      raise ValueError(
        f"LabelPolicy.out_of_vocab={self.out_of_vocab!r}; expected "
        "'unknown' or 'drop'"
      )


@dataclasses.dataclass
class CaseRow:
  """One parsed row of a case-description CSV (no files resolved yet)."""

  example_id: str
  patient_id: str
  abnormality_type: str
  split: str
  laterality: str
  view: str
  labels: dict[str, common.LabelValue]
  image_path: str
  crop_path: str
  roi_mask_path: str
  csv_file: str
  csv_row: int


def split_atoms(raw: str) -> list[str]:
  """'PLEOMORPHIC-PLEOMORPHIC-FINE_LINEAR_BRANCHING' -> unique atoms.

  Returns lower-case atoms with aliases applied, in listed order, repeats
  removed; 'N/A' and empty give [].
  """
  atoms = []
  for part in raw.strip().split('-'):
    atom = part.strip().lower()
    if not atom or atom == 'n/a':
      continue
    atom = ALIASES.get(atom, atom)
    if atom not in atoms:
      atoms.append(atom)
  return atoms


def resolve_label(
  name: str,
  raw: str,
  policy: LabelPolicy,
  report: common.BuildReport,
) -> tuple[str | None, bool]:
  """Maps a raw multi-valued CSV label to one vocabulary term.

  Returns:
    (term or None, drop) where drop is True when the row must be skipped
    under `policy.out_of_vocab == 'drop'`.
  """
  atoms = split_atoms(raw)
  if not atoms:
    report.count(f'{name}: missing (N/A)')
    return None, False
  if '-' in raw:
    report.count(f'{name}: multi-valued')
    if len(atoms) < len(raw.split('-')):
      report.count(f'{name}: repeated atom removed')
  vocab = tuple(policy.vocabularies[name])
  inside = [a for a in atoms if a in vocab]
  outside = [a for a in atoms if a not in vocab]
  for atom in outside:
    report.count(f'{name}: out-of-vocabulary atom {atom}')
  if not inside:
    if policy.out_of_vocab == 'drop':
      return None, True
    report.count(f'{name}: out of vocabulary -> unknown')
    return None, False
  rank = SUSPICION_RANK.get(name, {})
  most = max(inside, key=lambda a: (rank.get(a, -1), -inside.index(a)))
  if len(inside) > 1:
    report.count(f'{name}: several in-vocabulary atoms')
    if most != inside[0]:
      report.count(f'{name}: first and most suspicious differ')
  if policy.multi_label == 'first':
    return inside[0], False
  return most, False


def _canonical(name: str) -> str:
  """Column name -> canonical key ('breast_density' -> 'breast density')."""
  return ' '.join(name.strip().lower().replace('_', ' ').split())


def _int_or_none(value: str) -> int | None:
  """'3' -> 3; anything else -> None."""
  try:
    return int(value.strip())
  except ValueError:
    return None


def find_csv_files(
  manual_dir: common.PathLike,
) -> dict[tuple[str, str], pathlib.Path]:
  """Locates the case-description CSVs; raises if there is none.

  Returns:
    (abnormality type, split) -> path, for the files found.
  """
  root = common.require_dir(
    manual_dir, 'CBIS-DDSM',
    'the TCIA download with calc_case_description_train_set.csv etc.',
  )
  found = {}
  by_name = {n: k for k, n in CSV_FILES.items()}
  for path in common.find_files(root, CSV_FILES.values()):
    key = by_name[path.name.lower()]
    found.setdefault(key, path)
  if not found:
    raise common.SourceError(
      f'CBIS-DDSM: no case-description CSV found in {root}; expected files '
      f'like calc_case_description_train_set.csv (any of '
      f'{sorted(CSV_FILES.values())})'
    )
  return found


def parse_case_descriptions(
  csv_files: Mapping[tuple[str, str], pathlib.Path],
  *,
  policy: LabelPolicy | None = None,
  report: common.BuildReport | None = None,
  abnormality_types: Iterable[str] = ('calcification', 'mass'),
) -> tuple[list[CaseRow], common.BuildReport]:
  """Parses the case-description CSVs into rows with normalised labels.

  A CSV of one of ``abnormality_types`` that is absent from ``csv_files`` is
  reported as missing; the other families were not asked for.

  Args:
    csv_files: (abnormality type, split) -> CSV path, e.g. from
      `find_csv_files`.
    policy: label policy (default `LabelPolicy()`).
    report: report to add to (a new one by default).

  Returns:
    (rows, report); the report counts labels per split, skipped rows and
    warns about patients present in both calc and mass files.
  """
  policy = policy or LabelPolicy()
  report = report or common.BuildReport(dataset=DATASET)
  rows: list[CaseRow] = []
  patients: dict[tuple[str, str], set[str]] = {}
  for (abn_type, split), path in sorted(csv_files.items()):
    header, raw_rows = common.read_csv_rows(path)
    canonical = [_canonical(h) for h in header]
    common.require_columns(
      path, canonical, _COMMON_COLUMNS + _TYPE_COLUMNS[abn_type]
    )
    names = dict(zip(canonical, header))
    for i, raw in enumerate(raw_rows):
      row = {c: raw[names[c]] for c in canonical}
      parsed = _parse_row(row, abn_type, split, path, i + 2, policy, report)
      if parsed is not None:
        rows.append(parsed)
        patients.setdefault((abn_type, split), set()).add(parsed.patient_id)
  for key in CSV_FILES:
    if key[0] in set(abnormality_types) and key not in csv_files:
      report.warn(f'CBIS-DDSM: {CSV_FILES[key]} not found; its rows are '
                  'not included')
  _warn_shared_patients(patients, report)
  seen = set()
  unique = []
  for row in rows:
    if row.example_id in seen:
      report.skip(f'{row.csv_file}:{row.csv_row}',
                  'duplicate abnormality id')
      continue
    seen.add(row.example_id)
    unique.append(row)
  for row in unique:
    report.add_labels(row.split, row.labels)
  return unique, report


def _parse_row(
  row: Mapping[str, str],
  abn_type: str,
  split: str,
  path: pathlib.Path,
  line: int,
  policy: LabelPolicy,
  report: common.BuildReport,
) -> CaseRow | None:
  """One CSV row -> CaseRow (None = skipped, with the reason reported)."""
  item = f'{path.name}:{line}'
  pathology_raw = row['pathology'].strip().upper()
  if pathology_raw not in PATHOLOGY:
    report.skip(item, f'unknown pathology {row["pathology"]!r}')
    return None
  if pathology_raw == 'BENIGN_WITHOUT_CALLBACK':
    report.count('pathology: BENIGN_WITHOUT_CALLBACK -> benign')
  side = row['left or right breast'].strip().upper()
  if side not in ('LEFT', 'RIGHT'):
    report.skip(item, f'unknown side {row["left or right breast"]!r}')
    return None
  paths = [row[c].strip() for c in (
    'image file path', 'cropped image file path', 'roi mask file path')]
  if not paths[0]:
    report.skip(item, 'empty image file path')
    return None
  labels: dict[str, common.LabelValue] = {
    'abnormality_type': abn_type,
    'abnormality_id': _int_or_none(row['abnormality id']),
    'pathology': PATHOLOGY[pathology_raw],
    'pathology_raw': pathology_raw,
    'assessment': _int_or_none(row['assessment']),
    'subtlety': _int_or_none(row['subtlety']),
    'density': _int_or_none(row['breast density']),
  }
  if labels['density'] == 0:
    report.count('density: 0 (not an ACR category)')
  for column in _TYPE_COLUMNS[abn_type]:
    name = _LABEL_COLUMNS[column]
    raw = row[column].strip()
    value, drop = resolve_label(name, raw, policy, report)
    if drop:
      report.skip(item, f'{name} out of vocabulary ({raw})')
      return None
    labels[name] = value
    labels[f'{name}_raw'] = raw
  patient_id = row['patient id'].strip()
  mask_folder = paths[2].split('/')[0] if paths[2] else ''
  view = row['image view'].strip().upper()
  example_id = mask_folder or (
    f'{"Calc" if abn_type == "calcification" else "Mass"}-'
    f'{"Training" if split == "train" else "Test"}_{patient_id}_{side}_'
    f'{view}_{labels["abnormality_id"]}'
  )
  return CaseRow(
    example_id=example_id,
    patient_id=patient_id,
    abnormality_type=abn_type,
    split=split,
    laterality=side[0],
    view=view,
    labels=labels,
    image_path=paths[0],
    crop_path=paths[1],
    roi_mask_path=paths[2],
    csv_file=path.name,
    csv_row=line,
  )


def _warn_shared_patients(
  patients: Mapping[tuple[str, str], set[str]], report: common.BuildReport
) -> None:
  """Warns about patients in both calc and mass files (split leakage)."""
  def union(*keys):
    out = set()
    for key in keys:
      out |= patients.get(key, set())
    return out

  calc = union(('calcification', 'train'), ('calcification', 'test'))
  mass = union(('mass', 'train'), ('mass', 'test'))
  shared = sorted(calc & mass)
  report.stats['patients in calc and mass files'] = len(shared)
  cross = {
    'patients in calc train and mass test': (
      ('calcification', 'train'), ('mass', 'test')),
    'patients in mass train and calc test': (
      ('mass', 'train'), ('calcification', 'test')),
  }
  for name, (a, b) in cross.items():
    report.stats[name] = len(union(a) & union(b))
  if shared:
    report.warn(
      f'CBIS-DDSM: {len(shared)} patients occur in both the calc and the '
      'mass case-description files (pooling calc and mass splits leaks '
      f'patients: {report.stats["patients in calc train and mass test"]} '
      'calc-train/mass-test, '
      f'{report.stats["patients in mass train and calc test"]} '
      f'mass-train/calc-test): {", ".join(shared)}'
    )


def parse_cbis_ddsm(
  manual_dir: common.PathLike,
  *,
  policy: LabelPolicy | None = None,
  abnormality_types: Iterable[str] = ('calcification', 'mass'),
  verify_mask_pixels: bool = True,
) -> tuple[list[common.SourceRecord], common.BuildReport]:
  """Parses a CBIS-DDSM download into one record per abnormality row.

  Args:
    manual_dir: folder with the four CSVs and the NBIA `CBIS-DDSM/` tree.
    policy: label policy for multi-valued / rare labels.
    abnormality_types: which CSV families to read.
    verify_mask_pixels: load candidate masks to check they are binary
      (0/255 or 0/1); otherwise a full-size candidate is taken as the mask.

  Returns:
    (records, report). Rows whose full image cannot be found are skipped
    with the reason; rows without a found ROI mask or crop are kept with
    the path None and counted.

  Raises:
    SourceError: no CSV or no DICOM file under `manual_dir`.
  """
  csv_files = find_csv_files(manual_dir)
  root = pathlib.Path(manual_dir)
  wanted = set(abnormality_types)
  unknown = wanted - {'calcification', 'mass'}
  if unknown:
    raise ValueError(
      f'abnormality_types {sorted(unknown)} not understood; expected '
      "'calcification' and/or 'mass'"
    )
  csv_files = {k: v for k, v in csv_files.items() if k[0] in wanted}
  report = common.BuildReport(dataset=DATASET)
  if not csv_files:
    raise common.SourceError(
      f'CBIS-DDSM: no case-description CSV for {sorted(wanted)} found in '
      f'{root}; expected files like calc_case_description_train_set.csv'
    )
  # Labels are counted again below for the records that survive.
  rows, _ = parse_case_descriptions(
      csv_files, policy=policy, report=report, abnormality_types=wanted
  )
  report.num_records.clear()
  report.label_counts.clear()
  index = common.DicomIndex(root, report)
  if not len(index):
    raise common.SourceError(
      f'CBIS-DDSM: no DICOM files (*.dcm) found under {root}; expected the '
      f'NBIA download folder {_NBIA_LAYOUT} next to the CSVs'
    )
  resolver = _Resolver(root, index, report, verify_mask_pixels)
  records = []
  for row in rows:
    record = resolver.record(row)
    if record is not None:
      records.append(record)
  for name in ('roi mask', 'crop'):
    missing = resolver.missing[name]
    if missing:
      report.warn(
        f'CBIS-DDSM: {len(missing)} rows kept without a {name} (not found '
        f'by UID or literal path): {", ".join(missing[:20])}'
        + (' ...' if len(missing) > 20 else '')
      )
  return common.finish(records, report)


class _Resolver:
  """Finds the full image, crop and ROI mask files of CSV rows."""

  def __init__(
    self,
    root: pathlib.Path,
    index: common.DicomIndex,
    report: common.BuildReport,
    verify_mask_pixels: bool,
  ) -> None:
    self.root = root
    self.index = index
    self.report = report
    self.verify = verify_mask_pixels
    self.missing: dict[str, list[str]] = {'roi mask': [], 'crop': []}
    self._binary: dict[pathlib.Path, bool] = {}

  def lookup(self, csv_path: str) -> list[common.DicomHeader]:
    """Headers of the files a CSV path refers to: by UID, else literally."""
    if not csv_path:
      return []
    parts = csv_path.split('/')
    if len(parts) >= 3:
      hits = self.index.series(parts[-3], parts[-2])
      if hits:
        self.report.count('files joined by study/series UID')
        return sorted(hits, key=lambda h: str(h.path))
    for base in (self.root, self.root / 'CBIS-DDSM'):
      path = base / csv_path
      if path.is_file():
        header = self.index.add(path, self.report)
        if header is not None:
          self.report.count('files joined by literal CSV path')
          return [header]
    return []

  def is_mask(self, header: common.DicomHeader, shape: tuple[int, int]) -> bool:
    """Full-image size and (if verifying) binary 0/255 content."""
    if (header.rows, header.columns) != shape:
      return False
    if not self.verify:
      return True
    if header.path not in self._binary:
      self._binary[header.path] = common.is_binary_mask(header.path, shape)
    return self._binary[header.path]

  def record(self, row: CaseRow) -> common.SourceRecord | None:
    """Resolves a row's files; None (reported) when the image is missing."""
    item = f'{row.csv_file}:{row.csv_row} ({row.example_id})'
    images = self.lookup(row.image_path)
    if not images:
      self.report.skip(item, 'full image not found (no DICOM with its '
                       'study/series UID, no file at the CSV path)')
      return None
    if len(images) > 1:
      self.report.warn(
        f'CBIS-DDSM: {len(images)} files in the full-image series of '
        f'{row.example_id}; using the largest')
      images.sort(key=lambda h: -h.rows * h.columns)
    image = images[0]
    shape = (image.rows, image.columns)
    candidates: dict[pathlib.Path, common.DicomHeader] = {}
    for csv_path in (row.crop_path, row.roi_mask_path):
      for header in self.lookup(csv_path):
        if header.path != image.path:
          candidates.setdefault(header.path, header)
    masks = [h for h in candidates.values() if self.is_mask(h, shape)]
    crops = [h for h in candidates.values()
             if (h.rows, h.columns) != shape]
    if len(masks) > 1:
      self.report.warn(f'CBIS-DDSM: {len(masks)} mask candidates for '
                       f'{row.example_id}; using {masks[0].path.name}')
    if len(crops) > 1:
      self.report.warn(f'CBIS-DDSM: {len(crops)} crop candidates for '
                       f'{row.example_id}; using {crops[0].path.name}')
    rejected = len(candidates) - len(masks) - len(crops)
    if rejected:
      self.report.count('full-size ROI candidates that are not binary',
                        rejected)
    mask = masks[0].path if masks else None
    crop = crops[0].path if crops else None
    if mask is None:
      self.missing['roi mask'].append(row.example_id)
      self.report.count('rows without roi mask')
    if crop is None:
      self.missing['crop'].append(row.example_id)
      self.report.count('rows without crop')
    if image.laterality and image.laterality != row.laterality:
      self.report.warn(
        f'CBIS-DDSM: {row.example_id}: DICOM laterality '
        f'{image.laterality} differs from the CSV ({row.laterality})')
    density = row.labels['density']
    annotation = common.image_entry(
      image_id=row.image_path.split('/')[0],
      file=common.relative_file(image.path, self.root),
      patient_id=row.patient_id,
      laterality=row.laterality,
      view=row.view,
      header=image,
      density=common.density_letter(str(density)),
    )
    return common.SourceRecord(
      example_id=row.example_id,
      patient_id=row.patient_id,
      image_path=image.path,
      roi_mask_path=mask,
      crop_path=crop,
      annotation=annotation,
      labels=dict(row.labels),
      split=row.split,
    )
