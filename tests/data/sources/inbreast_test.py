"""Tests of the INbreast parser on real CSV rows and real XML annotations."""

import plistlib
import shutil

from absl.testing import absltest
import numpy as np

from mammojax.data import annotations
from mammojax.data.sources import common
from mammojax.data.sources import inbreast
from tests.data.sources import fixtures

DATA = fixtures.TESTDATA / 'inbreast'
HASH = '6c613a14b80a8591'  # seen in a real INbreast DICOM name
# (File Name, hash, side, view in the DICOM name); 22614074 has no DICOM.
DICOMS = (
  ('50997461', 'a1b2c3d4e5f60718', 'R', 'MLO'),
  ('24055445', '0f1e2d3c4b5a6978', 'L', 'MLO'),
  ('53582540', '1111222233334444', 'R', 'MLO'),
  ('20586908', HASH, 'R', 'CC'),
  ('20586934', HASH, 'L', 'CC'),
  ('20586960', HASH, 'R', 'ML'),  # 'ML' as in a real file name
  ('50994300', '5555666677778888', 'R', 'FB'),
  ('99999999', '9999999999999999', 'L', 'CC'),  # no CSV row
)


def make_tree(test):
  """INbreast release folder: trimmed CSV, real XMLs, header-only DICOMs."""
  root = fixtures.tmpdir(test) / 'INbreast Release 1.0'
  (root / 'AllDICOMs').mkdir(parents=True)
  shutil.copy(DATA / 'INbreast.csv', root / 'INbreast.csv')
  shutil.copytree(DATA / 'AllXML', root / 'AllXML')
  for file_id, hash_, side, view in DICOMS:
    # Real INbreast images are 3328 x 4084 (columns x rows); header-only
    # files declare that size so the XML coordinates fit.
    fixtures.write_dicom(
      root / 'AllDICOMs' / f'{file_id}_{hash_}_MG_{side}_{view}_ANON.dcm',
      rows=4084, columns=3328, header_only=True, image_laterality=side)
  (root / 'AllDICOMs' / 'notes.dcm').write_bytes(b'not a dicom')
  return root


class InbreastTest(absltest.TestCase):

  def test_records(self):
    root = make_tree(self)
    records, report = inbreast.parse_inbreast(root.parent)
    by_id = {r.example_id: r for r in records}
    self.assertCountEqual(by_id, ['50997461', '24055445', '53582540',
                                  '20586908', '20586934', '20586960',
                                  '50994300'])
    self.assertEqual(report.skip_counts, {
      'no DICOM named 22614074_*_MG_*_ANON.dcm': 1,
      'DICOM without a row in INbreast.csv': 1,
      'DICOM name not <File Name>_<hash>_MG_<L|R>_<view>_ANON.dcm': 1,
    })
    r = by_id['20586934']
    self.assertEqual(r.patient_id, HASH)
    self.assertEqual(r.labels, {'birads': '5', 'pathology': 'malignant',
                                'acr': 2, 'laterality': 'L', 'view': 'CC',
                                'has_annotation': 1})
    ann = r.annotation
    self.assertLen(ann['calcifications'], 60)
    self.assertLen(ann['masses'], 1)
    self.assertEqual([o['type'] for o in r.extras['other_findings']],
                     ['spiculated_region'])
    self.assertLen(r.extras['other_findings'][0]['contour_xy'], 200)
    # No Cluster ROI: all calcifications form one implicit cluster.
    self.assertEqual(ann['clusters'], [{'cluster_id': 0,
                                        'distribution': None,
                                        'calcification_ids': list(range(60))}])
    self.assertEqual(r.extras['implicit_cluster_id'], 0)
    self.assertEqual(ann['density'], 'b')
    self.assertEqual((ann['rows'], ann['columns']), (4084, 3328))
    r908 = by_id['20586908']
    first = r908.annotation['calcifications'][0]
    self.assertEqual(first['center_xy'], [2964.620117, 3427.97998])
    self.assertNotIn('contour_xy', first)
    self.assertEqual(r908.labels['pathology'], 'benign')
    self.assertLen(r908.annotation['calcifications'], 40)
    self.assertLen(r908.annotation['masses'], 2)
    self.assertEqual(by_id['20586960'].labels['view'], 'MLO')
    self.assertEqual(report.stats['view ML in DICOM name read as MLO'], 1)
    self.assertEqual(by_id['50994300'].labels['view'], 'FB')
    self.assertIsNone(by_id['53582540'].labels['acr'])
    self.assertNotIn('density', by_id['53582540'].annotation)
    self.assertEqual(by_id['50997461'].labels['birads'], '4a')
    self.assertEqual(by_id['24055445'].labels['pathology'], 'malignant')
    self.assertEqual(report.stats['calcification points'], 31 + 39 + 33)
    self.assertEqual(report.stats['calcification contours'], 9 + 21 + 10)
    self.assertEqual(report.stats['images without XML annotation'], 4)
    self.assertNotIn('calcifications centre outside the image', report.stats)
    self.assertEqual(report.label_counts['none']['pathology'],
                     {'malignant': 3, 'benign': 4})
    self.assertEqual(report.label_counts['none']['birads'],
                     {'4a': 1, '4c': 1, '1': 1, '2': 3, '5': 1})
    self.assertEqual(report.warnings, [])
    annotations.validate_annotations(annotations.make_annotations(
      [x.annotation for x in records], dataset='inbreast', vocabularies={}))

  def test_contour_centroid(self):
    square = np.array([[0, 0], [4, 0], [4, 2], [0, 2]], float)
    np.testing.assert_allclose(inbreast.polygon_centroid(square), [2, 1])
    self.assertTrue(inbreast.point_in_polygon([1, 1], square))
    self.assertFalse(inbreast.point_in_polygon([5, 1], square))
    self.assertEqual(inbreast.parse_point('(2964.620117, 3427.979980)'),
                     (2964.620117, 3427.97998))

  def test_clusters_and_name_variants(self):
    # Synthetic ROIs appended to a copy of a real XML: a Cluster around the
    # first calcification, and the other name spellings.
    root = make_tree(self)
    xml = root / 'AllXML' / '20586908.xml'
    with open(xml, 'rb') as f:
      plist = plistlib.load(f)
    rois = plist['Images'][0]['ROIs']
    x, y = 2964.62, 3427.98
    square = [f'({x + dx:.6f}, {y + dy:.6f})'
              for dx, dy in ((-5, -5), (5, -5), (5, 5), (-5, 5))]
    template = dict(rois[0])
    rois.append(dict(template, Name='Cluster', Point_px=square, Type=9,
                     NumberOfPoints=4))
    rois.append(dict(template, Name='Calcifications',
                     Point_px=['(100.0, 200.0)']))
    rois.append(dict(template, Name='Assymetry', Point_px=square))
    rois.append(dict(template, Name='Point 1'))
    with open(xml, 'wb') as f:
      plistlib.dump(plist, f)
    records, report = inbreast.parse_inbreast(root)
    r = {x.example_id: x for x in records}['20586908']
    ann = r.annotation
    self.assertLen(ann['calcifications'], 41)
    self.assertEqual(ann['calcifications'][0]['cluster_id'], 0)
    self.assertEqual(ann['calcifications'][40]['center_xy'], [100.0, 200.0])
    self.assertEqual(ann['clusters'][0]['calcification_ids'], [0])
    self.assertEqual(ann['clusters'][1]['calcification_ids'],
                     list(range(1, 41)))
    self.assertEqual(r.extras['implicit_cluster_id'], 1)
    self.assertLen(r.extras['cluster_contours_xy'][0], 4)
    self.assertEqual([o['type'] for o in r.extras['other_findings']],
                     ['asymmetry'])
    self.assertEqual(report.stats["ROI name 'Calcifications' read as "
                                  'calcification'], 1)
    self.assertEqual(report.stats["ROI name 'Assymetry' read as asymmetry"],
                     1)
    self.assertIn("ROI name 'Point 1' has no finding type",
                  report.skip_counts)
    annotations.validate_annotations(annotations.make_annotations(
      [ann], dataset='inbreast', vocabularies={}))

  def test_errors(self):
    empty = fixtures.tmpdir(self)
    with self.assertRaises(common.SourceError) as ctx:
      inbreast.parse_inbreast(empty)
    self.assertEqual(
      str(ctx.exception),
      f'INbreast: no INbreast.csv found in {empty}; expected the INbreast '
      'release folder with INbreast.csv, AllDICOMs/<File Name>_<hash>_MG_'
      '<L|R>_<view>_ANON.dcm and AllXML/<File Name>.xml')
    shutil.copy(DATA / 'INbreast.csv', empty / 'INbreast.csv')
    with self.assertRaisesRegex(
      common.SourceError,
      '^INbreast: no DICOM files named <File Name>_<hash>_MG_<L|R>_<view>'
      '_ANON.dcm found under '):
      inbreast.parse_inbreast(empty)
    bad = fixtures.tmpdir(self)
    (bad / 'INbreast.csv').write_text('a,b\r\n1,2\r\n')
    with self.assertRaisesRegex(common.SourceError, 'missing column'):
      inbreast.parse_inbreast(bad)


if __name__ == '__main__':
  absltest.main()
