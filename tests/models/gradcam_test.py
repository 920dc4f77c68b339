"""Tests for Grad-CAM and its PNG overlay."""

import functools
import pathlib
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
from matplotlib import image as mpl_image
import numpy as np

from mammojax.models import gradcam as gc
from mammojax.models.cnn import resnet
from mammojax.reporting import gradcam_overlay


def _cam_reference(features, kernel, targets, size):
  """Class activation mapping (Zhou et al.): sum_k W[k, c] A^k, normalised."""
  cam = np.einsum('bhwk,kb->bhw', features, kernel[:, targets])
  cam = jax.nn.relu(cam)
  cam = jax.image.resize(cam, (cam.shape[0], *size), method='bilinear')
  return gc.normalize_per_image(cam)


class GradCamTest(parameterized.TestCase):

  def test_gap_linear_head_equals_cam(self):
    rng = np.random.RandomState(0)
    features = jnp.asarray(rng.randn(3, 5, 4, 8).astype(np.float32))
    kernel = rng.randn(8, 6).astype(np.float32)
    bias = rng.randn(6).astype(np.float32)

    def head_fn(a):
      return a.mean(axis=(1, 2)) @ kernel + bias

    out = gc.gradcam_from_features(head_fn, features, image_size=(20, 16))
    np.testing.assert_array_equal(out.targets, np.argmax(head_fn(features), -1))
    np.testing.assert_allclose(
        out.cam,
        _cam_reference(features, kernel, np.asarray(out.targets), (20, 16)),
        atol=1e-5,
    )
    self.assertEqual(out.cam_lowres.shape, (3, 5, 4))
    self.assertBetween(float(out.cam.min()), 0.0, 1e-6)
    self.assertBetween(float(out.cam.max()), 1.0 - 1e-5, 1.0)

  def test_resnet_layer4_equals_cam_and_is_per_sample(self):
    model = resnet._ResNetTiny(num_classes=4)
    x = jax.random.uniform(jax.random.key(0), (2, 64, 48, 1))
    variables = jax.jit(functools.partial(model.init, train=False))(
        jax.random.key(1), x
    )
    run = jax.jit(
        functools.partial(gc.gradcam, model, layer='layer4'),
        static_argnames='targets',
    )
    out = run(variables, x, targets=2)
    np.testing.assert_array_equal(out.targets, [2, 2])
    self.assertEqual(out.cam.shape, (2, 64, 48))
    _, feats = model.apply(variables, x, train=False, return_features=True)
    kernel = np.asarray(variables['params']['fc']['kernel'])
    np.testing.assert_allclose(
        out.cam, _cam_reference(feats['layer4'], kernel, [2, 2], (64, 48)),
        atol=1e-5,
    )
    single = run(variables, x[1:], targets=2)
    np.testing.assert_allclose(single.cam[0], out.cam[1], atol=1e-5)

  def test_unknown_layer_is_named(self):
    model = resnet._ResNetTiny(num_classes=2)
    x = jnp.zeros((1, 32, 32, 1))
    variables = jax.eval_shape(
        lambda: model.init(jax.random.key(0), x, train=False)
    )
    variables = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), variables)
    with self.assertRaisesRegex(KeyError, 'layer9.*layer4'):
      gc.gradcam(model, variables, x, layer='layer9')


class OverlayTest(absltest.TestCase):

  def test_overlay_blend_and_png(self):
    image = np.linspace(0, 1, 40 * 30, dtype=np.float32).reshape(40, 30)
    cam = np.zeros_like(image)
    rgb = gradcam_overlay.overlay_rgb(image, cam, alpha=0.5)
    self.assertEqual(rgb.shape, (40, 30, 3))
    self.assertEqual(rgb.dtype, np.uint8)
    # jet(0) is dark blue: the blue channel is lifted, red is not.
    self.assertGreater(int(rgb[0, 0, 2]), int(rgb[0, 0, 0]))
    with tempfile.TemporaryDirectory() as d:
      path = gradcam_overlay.save_gradcam_overlay(
          pathlib.Path(d) / 'sub' / 'cam.png', image, cam + 0.5, title='x'
      )
      png = mpl_image.imread(path)
      self.assertEqual(png.ndim, 3)
      self.assertEqual(png.shape[1], 60)  # two 30-pixel panels


if __name__ == '__main__':
  absltest.main()
