"""Tests of mammojax.data.resample.fit_image."""

from absl.testing import absltest
import numpy as np
from scipy import ndimage

from mammojax.data import resample


class FitImageTest(absltest.TestCase):

  def test_area_keeps_aspect_and_pads_bottom_right(self):
    image = np.random.default_rng(0).uniform(size=(100, 40))
    out = resample.fit_image(image, (64, 40))
    self.assertEqual((out.shape, out.dtype), ((64, 40), np.float32))
    # Scale min(64 / 100, 40 / 40) = 0.64: content 64 x 26, zeros right.
    np.testing.assert_array_equal(
        out[:, :26], resample.resize_image(image, (64, 26)))
    np.testing.assert_array_equal(out[:, 26:], 0)

  def test_zoom_is_scipy_linear_zoom(self):
    image = np.random.default_rng(1).uniform(size=(30, 90)).astype(np.float32)
    out = resample.fit_image(image, (32, 60), method="zoom")
    small = ndimage.zoom(image, 60 / 90, order=1)
    self.assertEqual(small.shape, (20, 60))
    np.testing.assert_array_equal(out[:20], small)
    np.testing.assert_array_equal(out[20:], 0)
    # The two methods sample differently.
    self.assertFalse(np.array_equal(out, resample.fit_image(image, (32, 60))))

  def test_unknown_method(self):
    with self.assertRaisesRegex(ValueError, "method 'cubic'"):
      resample.fit_image(np.zeros((4, 4)), (2, 2), method="cubic")


if __name__ == "__main__":
  absltest.main()
