"""Tests of the Databiox parser on a tree of file names seen in public code."""

from absl.testing import absltest

from mammojax.data.sources import common
from mammojax.data.sources import databiox
from tests.data.sources import fixtures

# Names follow the ones quoted in /work/shared/fixtures/SOURCES.md §6.
FILES = (
  'BC_IDC_Grade_1/40x/01_BC_G1_9057_40x_1.JPG',
  'BC_IDC_Grade_1/40x/01_BC_G1_9057_40x_2.JPG',
  'BC_IDC_Grade_1/4x/01_BC_G1_9057_4x_1.jpg',
  'BC_IDC_Grade_2/10x/11_BC_G2_9500_10x_1.JPG',
  'BC_IDC_Grade_2/40x/01_BC_G2_8986_40x_1.JPG',
  'BC_IDC_Grade_3/20x/01_BC_G3_10349_20x_1.JPG',
  'BC_IDC_Grade_3/40x/01_BC_G3_10349_40x_1.jpg',
  # Problems: wrong grade folder, wrong magnification folder, bad names.
  'BC_IDC_Grade_3/40x/02_BC_G2_9500_40x_1.JPG',
  'BC_IDC_Grade_1/10x/01_BC_G1_9057_40x_3.JPG',
  'BC_IDC_Grade_1/40x/Thumbs.db',
  'BC_IDC_Grade_1/40x/scan.JPG',
)


class DatabioxTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.root = fixtures.tmpdir(self)
    for name in FILES:
      path = self.root / 'Databiox' / name
      path.parent.mkdir(parents=True, exist_ok=True)
      path.write_bytes(b'\xff\xd8\xff\xd9')

  def test_records(self):
    records, report = databiox.parse_databiox(self.root)
    by_id = {r.example_id: r for r in records}
    self.assertLen(records, 7)
    r = by_id['01_BC_G1_9057_40x_1']
    self.assertEqual(r.patient_id, '9057')
    self.assertEqual(r.labels, {'grade': 1, 'magnification': '40x'})
    self.assertEqual(by_id['01_BC_G3_10349_40x_1'].patient_id, '10349')
    self.assertEqual(by_id['01_BC_G1_9057_4x_1'].image_path.suffix, '.jpg')
    self.assertEqual(report.label_counts['none']['grade'],
                     {'1': 3, '2': 2, '3': 2})
    self.assertEqual(report.skip_counts, {
      'grade G2 in name but folder BC_IDC_Grade_3': 1,
      'magnification 40x in name but folder 10x': 1,
      'not a .jpg/.JPG file': 1,
      'name not <NN>_BC_G<grade>_<patient>_<mag>_<k>.jpg': 1,
    })
    self.assertEqual(report.stats['extension .jpg'], 2)

  def test_magnification_filter(self):
    records, report = databiox.parse_databiox(
      self.root, magnifications=['40x'])
    self.assertEqual(sorted(r.patient_id for r in records),
                     ['10349', '8986', '9057', '9057'])
    self.assertEqual(report.stats['filtered out: magnification 4x'], 1)
    with self.assertRaisesRegex(ValueError, 'unknown magnification'):
      databiox.parse_databiox(self.root, magnifications=['100x'])

  def test_missing_layout(self):
    empty = fixtures.tmpdir(self)
    with self.assertRaises(common.SourceError) as ctx:
      databiox.parse_databiox(empty)
    self.assertEqual(
      str(ctx.exception),
      f'Databiox: no BC_IDC_Grade_1/2/3 folder found in {empty}; expected '
      'folders BC_IDC_Grade_{1,2,3}/{4x,10x,20x,40x}/*.jpg')


if __name__ == '__main__':
  absltest.main()
