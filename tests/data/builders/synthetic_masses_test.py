"""Tests of the mass-ROI features and the synthetic_masses builder."""

from absl.testing import absltest
import numpy as np
import tensorflow_datasets as tfds

from mammojax.data import synthetic
from mammojax.data.builders import mass_rois
from mammojax.data.builders import synthetic_masses
from tests.data.builders import trees
from tests.data.sources import fixtures


class MassRoiTest(absltest.TestCase):

  def test_polygon_mask(self):
    # A 4 x 3 axis-aligned rectangle with vertices on pixel centres +- 0.5.
    square = np.array([[1.5, 0.5], [5.5, 0.5], [5.5, 3.5], [1.5, 3.5]])
    mask = mass_rois.polygon_mask(square, (6, 8))
    expected = np.zeros((6, 8), bool)
    expected[1:4, 2:6] = True
    np.testing.assert_array_equal(mask, expected)
    # Outside the image: nothing; too few vertices: an error.
    self.assertFalse(mass_rois.polygon_mask(square + 100, (6, 8)).any())
    with self.assertRaisesRegex(ValueError, r'K >= 3'):
      mass_rois.polygon_mask(square[:2], (6, 8))

  def test_box_crop_pads_the_box(self):
    image = np.zeros((100, 100), np.float32)
    mask = np.zeros((100, 100), bool)
    mask[40:60, 30:50] = True  # A 20 px box centred at (40, 50) (x, y).
    image[mask] = 1.0
    crop, crop_mask, box = mass_rois.box_crop(image, mask, 0.3, 32)
    # Side 20 x 1.6 = 32 px around the centre: one output pixel per input.
    np.testing.assert_array_equal(box, [24, 34, 56, 66])
    self.assertEqual(crop.shape, (32, 32))
    np.testing.assert_array_equal(crop_mask > 0, crop > 127)
    self.assertEqual(int((crop_mask > 0).sum()), 400)
    # A box over the image border is zero-padded there.
    corner = np.zeros((100, 100), bool)
    corner[:10, :10] = True
    crop, crop_mask, box = mass_rois.box_crop(image + 0.5, corner, 0.3, 16)
    self.assertEqual(tuple(box), (-3.0, -3.0, 13.0, 13.0))
    self.assertEqual(crop[0, 0], 0)
    self.assertGreater(crop[8, 8], 0)
    with self.assertRaisesRegex(ValueError, 'mask is empty'):
      mass_rois.box_crop(image, np.zeros_like(mask), 0.3, 16)

  def test_labels(self):
    vocab = mass_rois.vocabularies(['round', 'oval'], ['circumscribed'])
    roi = mass_rois.roi_features(
      crop=np.zeros((4, 4), np.uint8), crop_mask=np.zeros((4, 4), np.uint8),
      crop_box=[0, 0, 4, 4], roi_mask=np.zeros((2, 2), np.uint8),
      has_roi_mask=0,
      labels={'mass_shape': 'oval', 'mass_margin': None,
              'pathology': 'malignant', 'density': 4, 'subtlety': 3},
      vocabulary=vocab)
    self.assertEqual(
      (roi['mass_shape'], roi['mass_margin'], roi['pathology'],
       roi['density'], roi['subtlety'], roi['assessment']),
      (1, -1, 1, 3, 3, -1))
    with self.assertRaisesRegex(ValueError, r"'lobulated' is not in the"):
      mass_rois.roi_features(
        crop=None, crop_mask=None, crop_box=[0] * 4, roi_mask=None,
        has_roi_mask=0, vocabulary=vocab,
        labels={'mass_shape': 'lobulated', 'pathology': 'benign'})
    with self.assertRaisesRegex(ValueError, r"pathology 'unknown'"):
      mass_rois.roi_features(
        crop=None, crop_mask=None, crop_box=[0] * 4, roi_mask=None,
        has_roi_mask=0, vocabulary=vocab, labels={'pathology': 'unknown'})


class SyntheticMassesTest(absltest.TestCase):

  def test_build_tiny(self):
    examples, metadata = trees.build(
      'synthetic_masses', 'tiny', fixtures.tmpdir(self),
      fixtures.tmpdir(self))
    self.assertEqual(list(examples), ['full'])
    exs = examples['full']
    vocab = metadata['vocabularies']
    self.assertEqual(vocab['mass_shape'], list(synthetic.MASS_SHAPES))
    self.assertEqual(vocab['mass_margin'], list(synthetic.MASS_MARGINS))
    self.assertEqual(vocab['pathology'], ['benign', 'malignant'])
    report = metadata['build_report']
    self.assertEqual(report['images_planned'], 24)
    self.assertEqual(report['examples'] + sum(report['skipped'].values()), 24)
    self.assertLen(exs, report['examples'])
    self.assertGreaterEqual(len(exs), 20)
    # Both classes, and every example agrees with the generator's plan.
    self.assertEqual(set(e['pathology'] for e in exs), {0, 1})
    config = synthetic_masses.SyntheticMasses.builder_configs['tiny']
    gen = synthetic_masses.generator_config(config)
    for index in (0, 5):
      ann = synthetic.generate_image(gen, config.seed, index).annotation
      mass = ann['masses'][0]
      ex = next(e for e in exs
                if e['example_id'] == f"{ann['image_id']}_M{mass['id']}")
      self.assertEqual(
        (vocab['mass_shape'][ex['mass_shape']],
         vocab['mass_margin'][ex['mass_margin']],
         vocab['pathology'][ex['pathology']], ex['malignant'],
         ex['patient_id'], ex['view'], ex['mass'], ex['calcification']),
        (mass['shape'], mass['margin'], mass['pathology'],
         int(mass['pathology'] == 'malignant'), ann['patient_id'],
         ann['view'], 1, 0))
    for ex in exs:
      self.assertEqual(ex['crop'].shape, (32, 32))
      inside = ex['crop_mask'] > 0
      # The outline's box padded 1.6x: the mass fills the crop's middle and
      # none of its border, and is brighter (denser) than its surround.
      self.assertTrue(inside[16, 16])
      self.assertFalse(inside[0].any() or inside[-1].any())
      self.assertFalse(inside[:, 0].any() or inside[:, -1].any())
      self.assertBetween(inside.mean(), 0.15, 0.45)
      self.assertGreater(ex['crop'][inside].mean(), ex['crop'][~inside].mean())
      self.assertEqual(ex['roi_mask'].max(), 255)
      self.assertEqual(ex['has_roi_mask'], 1)
      x0, y0, x1, y1 = ex['crop_box']
      self.assertAlmostEqual(x1 - x0, y1 - y0, delta=1)
    # CC and MLO of one breast: one patient, the same labels.
    by_patient = {}
    for ex in exs:
      by_patient.setdefault(ex['patient_id'], set()).add(
        (ex['mass_shape'], ex['mass_margin'], ex['pathology']))
    self.assertTrue(all(len(v) == 1 for v in by_patient.values()))
    self.assertLess(len(by_patient), len(exs))

  def test_registered_like_cbis_masses(self):
    from mammojax.data.builders import cbis_ddsm  # pylint: disable=g-import-not-at-top
    synth = tfds.builder('synthetic_masses', config='tiny',
                         data_dir=str(fixtures.tmpdir(self)))
    real = tfds.builder('cbis_ddsm_masses', config='tiny',
                        data_dir=str(fixtures.tmpdir(self)))
    self.assertEqual(
      {k: (v.shape, v.np_dtype) for k, v in synth.info.features.items()},
      {k: (v.shape, v.np_dtype) for k, v in real.info.features.items()})
    del cbis_ddsm


if __name__ == '__main__':
  absltest.main()
