"""Tests of the CMMD parser: real clinical rows and manifest, tiny DICOMs."""

import collections
import shutil

from absl.testing import absltest

from mammojax.data import annotations
from mammojax.data.sources import cmmd
from mammojax.data.sources import common
from tests.data.sources import fixtures

DATA = fixtures.TESTDATA / 'cmmd'
# Lateralities of the images written per subject (from `Number of Images`
# in metadata.csv: 2 = one breast, 4 = both). D1-0002's folder is left out.
IMAGES = {
  'D1-0001': 'R',
  'D1-0021': 'LR',
  'D1-0242': 'R',
  'D1-1042': 'L',
  'D2-0005': 'LR',
  'D2-0007': 'LR',
  'D2-0013': 'LR',
  'D2-0026': 'LR',
}


def make_tree(test, clinical='CMMD_clinicaldata_revision.csv'):
  """NBIA download: clinical file, manifest, CMMD/<Subject>/... DICOMs."""
  root = fixtures.tmpdir(test)
  manifest = root / 'manifest-1616439774456'
  manifest.mkdir()
  shutil.copy(DATA / clinical, root / clinical)
  shutil.copy(DATA / 'metadata.csv', manifest / 'metadata.csv')
  header, rows = common.read_csv_rows(DATA / 'metadata.csv')
  del header
  for row in rows:
    subject = row['Subject ID']
    if subject not in IMAGES:
      continue
    folder = manifest / row['File Location'].replace('\\', '/')
    k = 1
    for side in IMAGES[subject]:
      for view in ('CC', 'MLO'):
        fixtures.write_dicom(folder / f'1-{k}.dcm', image_laterality=side,
                             view=view, patient_id=subject)
        k += 1
  return root


class CmmdTest(absltest.TestCase):

  def test_records(self):
    root = make_tree(self)
    records, report = cmmd.parse_cmmd(root)
    self.assertLen(records, 20)
    by_id = {r.example_id: r for r in records}
    r = by_id['D2-0026_L_MLO']
    self.assertEqual(r.labels, {
      'abnormality': 'calcification', 'pathology': 'malignant',
      'subtype': 'luminal_b', 'luminal': 'luminal', 'age': 46,
      'laterality': 'L', 'view': 'MLO'})
    self.assertEqual(by_id['D2-0026_R_CC'].labels['pathology'], 'benign')
    self.assertIsNone(by_id['D2-0026_R_CC'].labels['luminal'])
    self.assertEqual(by_id['D2-0013_L_CC'].labels['subtype'],
                     'triple_negative')
    self.assertEqual(by_id['D2-0005_R_CC'].labels['luminal'], 'non_luminal')
    self.assertEqual(by_id['D2-0007_R_CC'].labels['subtype'], 'luminal_a')
    self.assertEqual(by_id['D1-0242_R_CC'].labels['abnormality'], 'both')
    self.assertEqual(by_id['D1-1042_L_CC'].labels['abnormality'], 'mass')
    self.assertEqual(r.annotation['file'].split('/')[:3],
                     ['manifest-1616439774456', 'CMMD', 'D2-0026'])
    self.assertIsNone(r.split)
    counts = report.label_counts['none']
    self.assertEqual(counts['luminal'],
                     {'null': 12, 'luminal': 4, 'non_luminal': 4})
    self.assertEqual(counts['pathology'], {'benign': 10, 'malignant': 10})
    self.assertEqual(report.skip_counts, {
      'series folder of D1-0002 not found': 1,
      'no image of this breast found': 1,
      'breast without clinical row (unlabelled)': 6,
    })
    self.assertEqual(report.stats['malignant row without subtype'], 1)
    annotations.validate_annotations(annotations.make_annotations(
      [x.annotation for x in records], dataset='cmmd', vocabularies={}))

  def test_xlsx_equals_csv(self):
    xlsx = cmmd.read_clinical(DATA / 'CMMD_clinicaldata_revision.xlsx')
    csv_rows = cmmd.read_clinical(DATA / 'CMMD_clinicaldata_revision.csv')
    self.assertLen(xlsx, 1872)
    subjects = {r['ID1'] for r in csv_rows}
    self.assertEqual([r for r in xlsx if r['ID1'] in subjects], csv_rows)
    # Label counts over the whole real clinical table.
    report = common.BuildReport(dataset='cmmd')
    labels = [cmmd.parse_clinical_row(r, r['ID1'], report) for r in xlsx]
    self.assertEqual(report.skipped, [])
    count = lambda key: collections.Counter(x[key] for x in labels)
    self.assertEqual(count('subtype'), {
      None: 1123, 'luminal_b': 376, 'luminal_a': 152, 'her2_enriched': 135,
      'triple_negative': 86})
    self.assertEqual(count('luminal'),
                     {None: 1123, 'luminal': 528, 'non_luminal': 221})
    self.assertEqual(count('abnormality'),
                     {'mass': 1149, 'both': 461, 'calcification': 262})
    self.assertEqual(count('pathology'), {'malignant': 1316, 'benign': 556})

  def test_xlsx_tree(self):
    root = make_tree(self, 'CMMD_clinicaldata_revision.xlsx')
    records, report = cmmd.parse_cmmd(root)
    self.assertLen(records, 20)
    # All other subjects of the full table have no series in the manifest.
    self.assertEqual(report.skip_counts['subject not in metadata.csv'],
                     1872 - 11)

  def test_errors(self):
    empty = fixtures.tmpdir(self)
    with self.assertRaises(common.SourceError) as ctx:
      cmmd.parse_cmmd(empty)
    self.assertEqual(
      str(ctx.exception),
      f'CMMD: no clinical file found in {empty}; expected '
      'CMMD_clinicaldata_revision.csv or CMMD_clinicaldata_revision.xlsx')
    shutil.copy(DATA / 'CMMD_clinicaldata_revision.csv', empty)
    with self.assertRaisesRegex(
      common.SourceError,
      r'^CMMD: no metadata.csv \(NBIA manifest\) found in '):
      cmmd.parse_cmmd(empty)
    shutil.copy(DATA / 'metadata.csv', empty)
    with self.assertRaisesRegex(
      common.SourceError,
      '^CMMD: no DICOM files found in the series folders listed by '):
      cmmd.parse_cmmd(empty)


if __name__ == '__main__':
  absltest.main()
