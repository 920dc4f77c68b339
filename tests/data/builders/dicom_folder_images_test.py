"""End-to-end test of the whole-image DICOM-folder builder."""

from absl.testing import absltest
import tensorflow_datasets as tfds

from mammojax.data import annotations
from mammojax.data.builders import dicom_folder_images  # pylint: disable=unused-import
from mammojax.data.builders import whole_image
from mammojax.data.sources import common
from tests.data.builders import trees
from tests.data.sources import dicom_folder_test
from tests.data.sources import fixtures

NAME = 'dicom_folder_images'
LEAK = 'patient also in the test split (leak)'


class DicomFolderImagesTest(absltest.TestCase):

  def test_csv(self):
    root = fixtures.tmpdir(self)
    for file in ('a/1.dcm', 'a/2.dcm', 'b/1.dcm', 'b/2.dcm', 'c/1.dcm'):
      fixtures.write_dicom(root / file, rows=40, columns=30)
    (root / 'labels.csv').write_text(
      'file,patient_id,laterality,view,pathology,calcification,mass,subtype,'
      'split\r\n'
      'a/1.dcm,P1,L,CC,malignant,1,0,Luminal B,train\r\n'
      'a/2.dcm,P1,RIGHT,MLO,benign,0,1,,train\r\n'
      'b/1.dcm,P2,L,CC,malignant,,1,triple negative,test\r\n'
      'b/2.dcm,P2,L,MLO,malignant,,1,triple negative,train\r\n'
      'c/1.dcm,P3,R,CC,benign,0,0,,\r\n'
      'c/9.dcm,P3,R,MLO,benign,0,0,,\r\n')
    examples, metadata = trees.build(NAME, 'tiny', root,
                                     fixtures.tmpdir(self))
    ids = {k: [e['example_id'] for e in v] for k, v in examples.items()}
    self.assertEqual(ids, {'train': ['a/1', 'a/2', 'c/1'], 'test': ['b/1']})
    a1, a2, c1 = examples['train']
    [b1] = examples['test']
    keys = ('calcification', 'mass', 'malignant', 'subtype', 'luminal')
    self.assertEqual([a1[k] for k in keys], [1, 0, 1, 1, 1])
    self.assertEqual([a2[k] for k in keys], [0, 1, 0, -1, -1])
    self.assertEqual([b1[k] for k in keys], [-1, 1, 1, 3, 0])
    self.assertEqual((a2['laterality'], a2['view'], a2['patient_id']),
                     ('R', 'MLO', 'P1'))
    self.assertEqual(c1['image'].shape, (64, 40))
    report = metadata['build_report']
    self.assertEqual(report['skip_counts'], {'file not found: c/9.dcm': 1,
                                             LEAK: 1})
    self.assertIn('b/2', {s['item'] for s in report['skipped']})
    self.assertEqual(report['stats']['images without split -> train'], 1)
    self.assertEqual(report['num_records'], {'train': 3, 'test': 1})
    self.assertEqual(report['label_counts']['train']['malignant'],
                     {'1': 1, '0': 2})

  def test_annotations_json(self):
    root = fixtures.tmpdir(self)
    fixtures.write_dicom(root / 'P1' / 'a.dcm', image_laterality='R',
                         rows=40, columns=30)
    data = annotations.make_annotations(
      [dicom_folder_test._image('a', 'P1/a.dcm')])  # pylint: disable=protected-access
    annotations.save_annotations(root / 'annotations.json', data)
    examples, _ = trees.build(NAME, 'tiny', root, fixtures.tmpdir(self))
    [ex] = examples['full']
    # One calcification, no mass listed; no malignancy label.
    self.assertEqual((ex['calcification'], ex['mass'], ex['malignant']),
                     (1, 0, -1))
    self.assertEqual(ex['laterality'], 'R')

  def test_labels(self):
    self.assertEqual(whole_image.subtype_index('HER2-enriched'), 2)
    self.assertEqual(whole_image.luminal_from_subtype(0), 1)
    with self.assertRaisesRegex(ValueError, "subtype 'luminal c'"):
      whole_image.subtype_index('luminal c')
    with self.assertRaisesRegex(ValueError, "mass 'maybe': expected 0 / 1"):
      whole_image.binary('maybe', field='mass')

  def test_errors(self):
    empty = fixtures.tmpdir(self)
    builder = tfds.builder(NAME, data_dir=str(fixtures.tmpdir(self)),
                           config='tiny', file_format='array_record')
    with self.assertRaisesRegex(
      common.SourceError,
      '^DICOM folder: no annotations.json or labels CSV found in '):
      builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(empty)))


if __name__ == '__main__':
  absltest.main()
