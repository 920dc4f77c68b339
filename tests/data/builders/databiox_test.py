"""End-to-end test of the Databiox builder on generated JPEGs."""

from absl.testing import absltest
import numpy as np
from PIL import Image
import tensorflow_datasets as tfds

from mammojax.data.builders import databiox  # pylint: disable=unused-import
from mammojax.data.sources import common
from tests.data.builders import trees
from tests.data.sources import databiox_test
from tests.data.sources import fixtures


def make_tree(test):
  """The parser test's names, as real (tiny, 60 x 80) JPEG files."""
  root = fixtures.tmpdir(test)
  rng = np.random.default_rng(0)
  for name in databiox_test.FILES:
    path = root / 'Databiox' / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == '.jpg':
      pixels = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(path, format='JPEG')
    else:
      path.write_bytes(b'not an image')
  return root


class DataboxBuilderTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = make_tree(trees.ClassScope(cls))

  def test_all_magnifications(self):
    examples, metadata = trees.build('databiox', 'tiny', self.root,
                                     fixtures.tmpdir(self))
    by_id = {e['example_id']: e for e in examples['full']}
    self.assertLen(by_id, 7)
    ex = by_id['01_BC_G1_9057_40x_1']
    self.assertEqual((ex['patient_id'], ex['grade'], ex['magnification']),
                     ('9057', 0, '40x'))
    self.assertEqual(ex['image'].shape, (48, 64, 3))
    self.assertEqual(ex['image'].dtype, np.uint8)
    self.assertEqual(by_id['01_BC_G3_10349_40x_1']['grade'], 2)
    self.assertEqual(by_id['01_BC_G3_10349_40x_1']['patient_id'], '10349')
    report = metadata['build_report']
    self.assertEqual(report['label_counts']['full']['grade'],
                     {'grade_1': 3, 'grade_2': 2, 'grade_3': 2})
    self.assertEqual(report['label_counts']['full']['magnification'],
                     {'40x': 4, '4x': 1, '10x': 1, '20x': 1})
    self.assertEqual(report['skip_counts'], {
      'grade G2 in name but folder BC_IDC_Grade_3': 1,
      'magnification 40x in name but folder 10x': 1,
      'not a .jpg/.JPG file': 1,
      'name not <NN>_BC_G<grade>_<patient>_<mag>_<k>.jpg': 1,
    })
    self.assertEqual(metadata['vocabularies']['grade'],
                     ['grade_1', 'grade_2', 'grade_3'])

  def test_magnification_config(self):
    examples, metadata = trees.build('databiox', 'mag_40x', self.root,
                                     fixtures.tmpdir(self))
    self.assertEqual(sorted(e['example_id'] for e in examples['full']), [
      '01_BC_G1_9057_40x_1', '01_BC_G1_9057_40x_2', '01_BC_G2_8986_40x_1',
      '01_BC_G3_10349_40x_1'])
    self.assertEqual(examples['full'][0]['image'].shape, (384, 512, 3))
    stats = metadata['build_report']['stats']
    self.assertEqual(stats['filtered out: magnification 4x'], 1)

  def test_errors(self):
    empty = fixtures.tmpdir(self)
    builder = tfds.builder('databiox', data_dir=str(fixtures.tmpdir(self)),
                           config='tiny', file_format='array_record')
    with self.assertRaisesRegex(
      common.SourceError,
      '^Databiox: no BC_IDC_Grade_1/2/3 folder found in '):
      builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(empty)))


if __name__ == '__main__':
  absltest.main()
