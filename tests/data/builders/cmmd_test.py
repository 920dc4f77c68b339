"""End-to-end test of the CMMD whole-image builder."""

from absl.testing import absltest
import numpy as np
import tensorflow_datasets as tfds

from mammojax.data.builders import cmmd  # pylint: disable=unused-import
from mammojax.data.sources import cmmd as cmmd_source
from mammojax.data.sources import common
from tests.data.builders import trees
from tests.data.sources import cmmd_test
from tests.data.sources import fixtures

WHOLE_IMAGE_KEYS = {
  'example_id', 'patient_id', 'image_id', 'laterality', 'view', 'image',
  'calcification', 'mass', 'malignant', 'subtype', 'luminal'}


class CmmdBuilderTest(absltest.TestCase):

  def test_build(self):
    root = cmmd_test.make_tree(self)
    examples, metadata = trees.build('cmmd', 'tiny', root,
                                     fixtures.tmpdir(self))
    self.assertEqual(list(examples), ['full'])
    by_id = {e['example_id']: e for e in examples['full']}
    self.assertLen(by_id, 20)
    ex = by_id['D2-0026_L_MLO']  # calcification, Malignant, Luminal B
    self.assertEqual(set(ex), WHOLE_IMAGE_KEYS)
    self.assertEqual(
      {k: ex[k] for k in ('patient_id', 'laterality', 'view',
                          'calcification', 'mass', 'malignant', 'subtype',
                          'luminal')},
      {'patient_id': 'D2-0026', 'laterality': 'L', 'view': 'MLO',
       'calcification': 1, 'mass': 0, 'malignant': 1, 'subtype': 1,
       'luminal': 1})
    self.assertEqual(ex['image'].shape, (64, 40))
    self.assertEqual(ex['image'].dtype, np.uint8)
    benign = by_id['D2-0026_R_CC']
    self.assertEqual((benign['malignant'], benign['subtype'],
                      benign['luminal']), (0, -1, -1))
    self.assertEqual(by_id['D2-0013_L_CC']['subtype'], 3)  # triple negative
    self.assertEqual(by_id['D2-0013_L_CC']['luminal'], 0)
    self.assertEqual(by_id['D2-0005_R_CC']['luminal'], 0)
    self.assertEqual(by_id['D2-0007_R_CC']['subtype'], 0)  # Luminal A
    both = by_id['D1-0242_R_CC']
    self.assertEqual((both['calcification'], both['mass']), (1, 1))
    mass = by_id['D1-1042_L_CC']
    self.assertEqual((mass['calcification'], mass['mass']), (0, 1))
    self.assertEqual(metadata['vocabularies']['subtype'], [
      'luminal_a', 'luminal_b', 'her2_enriched', 'triple_negative'])
    report = metadata['build_report']
    counts = report['label_counts']['full']
    self.assertEqual(report['num_records'], {'full': 20})
    self.assertEqual(counts['luminal'], {'-1': 12, '1': 4, '0': 4})
    self.assertEqual(counts['malignant'], {'0': 10, '1': 10})
    self.assertEqual(counts['abnormality'],
                     {'calcification': 16, 'both': 2, 'mass': 2})
    self.assertEqual(counts['subtype'], {
      'null': 12, 'luminal_a': 2, 'luminal_b': 2, 'her2_enriched': 2,
      'triple_negative': 2})
    self.assertEqual(report['skip_counts'], {
      'series folder of D1-0002 not found': 1,
      'no image of this breast found': 1,
      'breast without clinical row (unlabelled)': 6,
    })

  def test_errors(self):
    empty = fixtures.tmpdir(self)
    with self.assertRaises(common.SourceError) as ctx:
      cmmd_source.parse_cmmd(empty)
    builder = tfds.builder('cmmd', data_dir=str(fixtures.tmpdir(self)),
                           config='tiny', file_format='array_record')
    with self.assertRaises(common.SourceError) as built:
      builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(empty)))
    self.assertEqual(str(built.exception), str(ctx.exception))
    self.assertStartsWith(str(built.exception),
                          'CMMD: no clinical file found in ')


if __name__ == '__main__':
  absltest.main()
