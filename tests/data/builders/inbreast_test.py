"""End-to-end test of the INbreast calcification-graph builder."""

import plistlib

from absl.testing import absltest
import numpy as np
import tensorflow_datasets as tfds

from mammojax.data.builders import graph_examples
from mammojax.data.builders import inbreast  # pylint: disable=unused-import
from mammojax.data.sources import common
from mammojax.data.sources import inbreast as inbreast_source
from tests.data.builders import trees
from tests.data.sources import fixtures
from tests.data.sources import inbreast_test

NAME = 'inbreast_calcifications'


def make_tree(test):
  """The parser test's tree; the three images with an XML get pixels."""
  root = inbreast_test.make_tree(test)
  rows, columns = 4084, 3328  # real INbreast size: the XML points fit
  pixels = np.zeros((rows, columns), np.uint8)
  pixels[:, : columns // 2] = 120  # "tissue" on one side
  for file_id, hash_, side, view in inbreast_test.DICOMS:
    if (root / 'AllXML' / f'{file_id}.xml').exists():
      fixtures.write_dicom(
        root / 'AllDICOMs' / f'{file_id}_{hash_}_MG_{side}_{view}_ANON.dcm',
        pixels=pixels if side == 'L' else pixels[:, ::-1],
        image_laterality=side)
  return root


class InbreastBuilderTest(absltest.TestCase):

  def test_build(self):
    root = make_tree(self)
    data_dir = fixtures.tmpdir(self)
    examples, metadata = trees.build(NAME, 'tiny', root.parent, data_dir)
    self.assertEqual(list(examples), ['full'])
    by_id = {e['example_id']: e for e in examples['full']}
    self.assertCountEqual(by_id, ['20586908/c0', '20586934/c0',
                                  '20586960/c0'])
    config = tfds.builder(NAME, data_dir=str(data_dir),
                          config='tiny').builder_config
    self.assertEqual(
      tfds.builder(NAME, data_dir=str(data_dir),
                   config='tiny').info.features.get_serialized_info(),
      graph_examples.features(config).get_serialized_info())
    ex = by_id['20586934/c0']  # L CC, BI-RADS 5: 60 calcifications
    self.assertEqual(ex['patches'].shape, (60, 14, 14))
    self.assertEqual(ex['morphology'].tolist(), [-1] * 60)
    self.assertEqual(ex['distribution'], -1)
    self.assertEqual(ex['patient_id'], inbreast_test.HASH)
    self.assertEqual((ex['laterality'], ex['view']), ('L', 'CC'))
    self.assertEqual(ex['image_shape'].tolist(), [4084 // 4, 3328 // 4])
    self.assertLen(by_id['20586908/c0']['morphology'], 40)
    self.assertLen(by_id['20586960/c0']['morphology'], 43)
    # The first calcification of 20586908 (R CC) is the XML point
    # (2964.62, 3427.98), scaled by 1/4 and mirrored (right breast).
    first = by_id['20586908/c0']['centers_xy'][0]
    x4 = (2964.620117 + 0.5) / 4 - 0.5
    y4 = (3427.97998 + 0.5) / 4 - 0.5
    np.testing.assert_allclose(first, [3328 // 4 - 1 - x4, y4], atol=1e-3)
    self.assertTrue(np.all((ex['coords'] >= 0) & (ex['coords'] <= 1)))
    report = metadata['build_report']
    self.assertEqual(report['num_records'], {'full': 3})
    self.assertEqual(report['label_counts']['full']['birads'],
                     {'2': 2, '5': 1})
    self.assertEqual(report['label_counts']['full']['pathology'],
                     {'benign': 2, 'malignant': 1})
    self.assertEqual(report['stats']['graphs: nodes'], 143)
    self.assertEqual(report['skip_counts'], {
      'no DICOM named 22614074_*_MG_*_ANON.dcm': 1,
      'DICOM without a row in INbreast.csv': 1,
      'DICOM name not <File Name>_<hash>_MG_<L|R>_<view>_ANON.dcm': 1,
      'image without XML annotation': 4,
    })
    self.assertEqual(report['example_labels']['20586934/c0'], {
      'birads': '5', 'pathology': 'malignant', 'acr': 2, 'laterality': 'L',
      'view': 'CC'})
    self.assertEqual(metadata['vocabularies']['birads'],
                     ['1', '2', '3', '4a', '4b', '4c', '5', '6'])

  def test_errors(self):
    empty = fixtures.tmpdir(self)
    with self.assertRaises(common.SourceError) as ctx:
      inbreast_source.parse_inbreast(empty)
    builder = tfds.builder(NAME, data_dir=str(fixtures.tmpdir(self)),
                           config='tiny', file_format='array_record')
    with self.assertRaises(common.SourceError) as built:
      builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(manual_dir=str(empty)))
    self.assertEqual(str(built.exception), str(ctx.exception))
    self.assertStartsWith(str(built.exception),
                          'INbreast: no INbreast.csv found in ')


class InbreastMassesBuilderTest(absltest.TestCase):

  def test_build_and_mass_outside_the_image(self):
    root = make_tree(self)
    # Move the masses of 20586960 off the image: skipped and counted.
    xml = root / 'AllXML' / '20586960.xml'
    with open(xml, 'rb') as f:
      plist = plistlib.load(f)
    moved = 0
    for roi in plist['Images'][0]['ROIs']:
      if roi['Name'] == 'Mass':
        roi['Point_px'] = [f'({x + 9000.0}, {y})' for x, y in
                           (inbreast_source.parse_point(p)
                            for p in roi['Point_px'])]
        moved += 1
    with open(xml, 'wb') as f:
      plistlib.dump(plist, f)
    data_dir = fixtures.tmpdir(self)
    examples, metadata = trees.build('inbreast_masses', 'tiny', root.parent,
                                     data_dir)
    by_id = {e['example_id']: e for e in examples['full']}
    records, _ = inbreast_source.parse_inbreast(root.parent)
    expected = {f'{r.example_id}/m{m["id"]}': r for r in records
                if r.labels['has_annotation'] and r.example_id != '20586960'
                for m in r.annotation['masses']}
    self.assertCountEqual(by_id, expected)
    self.assertGreater(moved, 0)
    self.assertEqual(
        metadata['build_report']['skip_counts'].get(
            'mass outline outside the image'), moved)
    ex = by_id['20586934/m0']  # L CC, BI-RADS 5: malignant
    self.assertEqual(ex['crop'].shape, (32, 32))
    self.assertEqual(ex['pathology'], 1)
    self.assertEqual(ex['assessment'], 5)
    self.assertEqual((ex['mass_shape'], ex['mass_margin']), (-1, -1))
    self.assertEqual(ex['patient_id'], inbreast_test.HASH)
    # The box padded 1.6x: the outline spans about 1 / 1.6 of the crop.
    rows = np.flatnonzero(ex['crop_mask'].max(axis=1))
    cols = np.flatnonzero(ex['crop_mask'].max(axis=0))
    side = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    self.assertAlmostEqual(side / 32, 1 / 1.6, delta=0.1)
    for key, e in by_id.items():
      benign = expected[key].labels['birads'] in ('1', '2', '3')
      self.assertEqual(e['pathology'], 0 if benign else 1)
    self.assertEqual(metadata['vocabularies']['pathology'],
                     ['benign', 'malignant'])


if __name__ == '__main__':
  absltest.main()
