"""Tests of the generic DICOM folder parser (annotations.json or CSV)."""

from absl.testing import absltest

from mammojax.data import annotations
from mammojax.data.sources import common
from mammojax.data.sources import dicom_folder
from tests.data.sources import fixtures


def _image(image_id, file, split=None):
  """A minimal annotations.json image entry with one calcification."""
  labels = {'birads': 4}
  if split:
    labels['split'] = split
  return {
    'image_id': image_id, 'file': file, 'patient_id': 'P1',
    'laterality': 'L', 'view': 'CC', 'rows': 32, 'columns': 24,
    'calcifications': [{'id': 0, 'center_xy': [3.0, 4.0],
                        'morphology': 'amorphous', 'cluster_id': 0}],
    'clusters': [{'cluster_id': 0, 'distribution': 'grouped'}],
    'labels': labels,
  }


class DicomFolderTest(absltest.TestCase):

  def test_annotations_json(self):
    root = fixtures.tmpdir(self)
    fixtures.write_dicom(root / 'P1' / 'a.dcm', image_laterality='L')
    data = annotations.make_annotations(
      [_image('a', 'P1/a.dcm', 'train'), _image('b', 'P1/b.dcm')])
    annotations.save_annotations(root / 'annotations.json', data)
    records, report = dicom_folder.parse_dicom_folder(root)
    [record] = records
    self.assertEqual(record.example_id, 'a')
    self.assertEqual(record.split, 'train')
    self.assertEqual(record.labels['birads'], 4)
    self.assertEqual(record.annotation['calcifications'][0]['morphology'],
                     'amorphous')
    self.assertEqual(report.dataset, 'synthetic')
    self.assertEqual(report.skip_counts,
                     {"image 'b': file not found": 1})

  def test_csv(self):
    root = fixtures.tmpdir(self)
    fixtures.write_dicom(root / 'x' / '1.dcm', rows=40, columns=30)
    fixtures.write_dicom(root / 'x' / '2.dcm')
    (root / 'labels.csv').write_text(
      'file,patient_id,laterality,view,pathology,birads,split\r\n'
      'x/1.dcm,P7,L,CC,malignant,5,test\r\n'
      'x/2.dcm,P7,RIGHT,MLO,benign,,\r\n'
      'x/3.dcm,P8,L,CC,benign,2,train\r\n'
      'x/1.dcm,P7,X,CC,benign,2,train\r\n')
    records, report = dicom_folder.parse_dicom_folder(root)
    self.assertLen(records, 2)
    first, second = records
    self.assertEqual(first.labels, {'laterality': 'L', 'view': 'CC',
                                    'pathology': 'malignant', 'birads': 5})
    self.assertEqual(first.split, 'test')
    self.assertEqual(first.annotation['rows'], 40)
    self.assertEqual(second.labels['laterality'], 'R')
    self.assertIsNone(second.labels['birads'])
    self.assertIsNone(second.split)
    self.assertEqual(report.skip_counts, {
      'file not found: x/3.dcm': 1,
      "laterality 'X' is not L or R": 1})
    annotations.validate_annotations(annotations.make_annotations(
      [r.annotation for r in records], dataset='custom', vocabularies={}))

  def test_errors(self):
    empty = fixtures.tmpdir(self)
    with self.assertRaises(common.SourceError) as ctx:
      dicom_folder.parse_dicom_folder(empty)
    self.assertEqual(
      str(ctx.exception),
      f'DICOM folder: no annotations.json or labels CSV found in {empty}; '
      'expected annotations.json (mammojax-annotations format) or a CSV '
      'with columns file, patient_id, laterality, view and label columns')
    (empty / 'a.csv').write_text('file,patient\r\n')
    with self.assertRaisesRegex(common.SourceError,
                                r"missing column\(s\) \['patient_id', "):
      dicom_folder.parse_dicom_folder(empty)


if __name__ == '__main__':
  absltest.main()
