"""Breast crop under acquisition artefacts (edge bands, collimator, labels)."""

from absl.testing import absltest
import numpy as np

from mammojax.data import breast_region
from mammojax.data import synthetic
from mammojax.data.synthetic import artefacts


class StripBandsTest(absltest.TestCase):

  def test_band_joined_to_the_breast(self):
    image = np.zeros((120, 80))
    image[20:100, :50] = np.random.default_rng(0).uniform(0.3, 1.0, (80, 50))
    image[112:] = 0.9  # A flat bottom band (6 % of the height) ...
    image[100:112, :8] = 0.6  # ... joined to the breast by a bridge.
    mask = image > 0.1
    stripped = breast_region.strip_border_bands(mask, image)
    self.assertFalse(stripped[111:].any())  # The band and one more row.
    np.testing.assert_array_equal(stripped[:111], mask[:111])
    # The crop ends at the bridge, not at the image's bottom right.
    self.assertEqual(breast_region.breast_bbox(image, margin=0),
                     (0, 20, 50, 111))

  def test_chest_wall_kept(self):
    # The breast covers the whole chest-wall column and is textured: no band.
    rng = np.random.default_rng(1)
    image = np.zeros((60, 40))
    rows = np.arange(60)[:, None]
    cols = np.arange(40)[None, :]
    inside = cols < 30 * np.sqrt(np.clip(1 - ((rows - 30) / 32.0) ** 2, 0, 1))
    image[inside] = rng.uniform(0.2, 1.0, inside.sum())
    mask = image > 0.1
    np.testing.assert_array_equal(
        breast_region.strip_border_bands(mask, image), mask)

  def test_background_threshold(self):
    image = np.zeros((100, 100))
    image[:, :50] = np.linspace(0.02, 1.0, 50)[None, :]  # Dim periphery in.
    otsu = breast_region.otsu_threshold(image)
    t = breast_region.background_threshold(image)
    self.assertAlmostEqual(t, 0.3 * otsu)  # 30 % of the way to Otsu's.
    self.assertGreater(otsu, 0.3)
    # Noise raises it to 4 sigma above the background.
    noisy = image + np.random.default_rng(2).normal(0, 0.05, image.shape)
    self.assertBetween(breast_region.background_threshold(noisy),
                       4 * 0.045, 0.8 * breast_region.otsu_threshold(noisy))


class ArtefactCropTest(absltest.TestCase):

  def test_crop_iou_with_the_true_breast_box(self):
    config = synthetic.SyntheticConfig(pixel_spacings_mm=(0.3,))
    rng = np.random.default_rng(0)
    worst = {}
    for index in range(4):  # CC and MLO views of two patients.
      image = synthetic.generate_image(config, 7, index)
      display, mask = image.display, image.breast_mask
      if image.spec.laterality == "R":
        display, mask = display[:, ::-1], mask[:, ::-1]
      for kind in artefacts.ARTEFACTS:
        shown, changed = artefacts.add_artefact(display, kind, rng)
        if kind != "none":
          self.assertTrue(changed.any())
        truth = artefacts.mask_box(mask & ~changed)
        iou = artefacts.box_iou(
            breast_region.breast_bbox(shown, margin=0), truth)
        worst[kind] = min(worst.get(kind, 1.0), iou)
    self.assertEqual(set(worst), set(artefacts.ARTEFACTS))
    for kind, iou in worst.items():
      self.assertGreaterEqual(iou, 0.95, kind)

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, "artefact 'smudge'"):
      artefacts.add_artefact(np.zeros((8, 8)), "smudge",
                             np.random.default_rng(0))


if __name__ == "__main__":
  absltest.main()
