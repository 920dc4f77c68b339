"""layers.conv_general_dilated: lax's values and gradients, as patches times
kernel where the output is smaller than the kernel."""

from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from mammojax.models.cnn import layers
from mammojax.models.cnn import mobilenet
from mammojax.models.cnn import resnet

DN = jax.lax.conv_dimension_numbers((1,) * 4, (1,) * 4, ('NHWC', 'HWIO', 'NHWC'))


def _conv(fn, strides, padding, groups):
  return lambda x, w: fn(x, w, strides, padding, dimension_numbers=DN,
                         feature_group_count=groups)


def _loss(fn, g):
  return lambda x, w: jnp.sum(fn(x, w) * g)


class ConvGeneralDilatedTest(parameterized.TestCase):

  @parameterized.named_parameters(
      # name, input, kernel, strides, padding, groups, patches path taken
      ('3x3_on_2x2', (4, 2, 2, 8), (3, 3, 8, 6), (1, 1), ((1, 1), (1, 1)), 1,
       True),
      ('3x3_on_1x1', (4, 1, 1, 8), (3, 3, 8, 6), (1, 1), ((1, 1), (1, 1)), 1,
       True),
      ('stride2_4x4_to_2x2', (4, 4, 4, 8), (3, 3, 8, 6), (2, 2),
       ((1, 1), (1, 1)), 1, True),
      ('elongated_1x5', (3, 1, 5, 8), (3, 3, 8, 6), (1, 1), ((1, 1), (1, 1)),
       1, True),
      ('depthwise', (3, 2, 2, 8), (3, 3, 1, 8), (1, 1), ((1, 1), (1, 1)), 8,
       True),
      ('groups4_strided', (3, 2, 3, 8), (3, 3, 2, 8), (2, 1),
       ((1, 1), (1, 1)), 4, True),
      ('asymmetric_pad', (2, 2, 3, 4), (3, 3, 4, 5), (1, 1),
       ((2, 0), (0, 1)), 1, True),
      ('valid_string', (2, 3, 3, 4), (3, 3, 4, 5), (1, 1), 'VALID', 1, True),
      ('same_string', (2, 2, 2, 4), (3, 3, 4, 5), (1, 1), 'SAME', 1, True),
      # Output not smaller than the kernel, or a 1 x 1 kernel: lax's conv.
      ('3x3_on_6x6', (2, 6, 6, 4), (3, 3, 4, 5), (1, 1), ((1, 1), (1, 1)), 1,
       False),
      ('1x1_stride2', (4, 2, 2, 8), (1, 1, 8, 6), (2, 2), ((0, 0), (0, 0)), 1,
       False),
  )
  def test_matches_lax(self, xs, ws, strides, padding, groups, patches):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=xs), jnp.float32)
    w = jnp.asarray(rng.normal(size=ws), jnp.float32)
    ref = _conv(jax.lax.conv_general_dilated, strides, padding, groups)
    got = _conv(layers.conv_general_dilated, strides, padding, groups)
    want = ref(x, w)
    out = jax.jit(got)(x, w)
    self.assertEqual(out.shape, want.shape)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    g = jnp.asarray(rng.normal(size=want.shape), jnp.float32)
    grads = jax.jit(jax.grad(_loss(got, g), (0, 1)))(x, w)
    grads_ref = jax.grad(_loss(ref, g), (0, 1))(x, w)
    for a, b in zip(grads, grads_ref):
      np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # The path taken: no convolution at all in the step's HLO, or lax's.
    hlo = jax.jit(jax.grad(_loss(got, g), (0, 1))).lower(x, w).as_text()
    self.assertEqual('convolution' not in hlo, patches, hlo[:2000])

  def test_dilation_and_other_layouts_go_to_lax(self):
    x = jnp.ones((1, 2, 2, 3))
    w = jnp.ones((3, 3, 3, 4))
    with mock.patch.object(jax.lax, 'conv_general_dilated',
                           wraps=jax.lax.conv_general_dilated) as spy:
      layers.conv_general_dilated(x, w, (1, 1), ((2, 2), (2, 2)),
                                  rhs_dilation=(2, 2), dimension_numbers=DN)
      self.assertEqual(spy.call_count, 1)
      layers.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                  dimension_numbers=DN)
      self.assertEqual(spy.call_count, 1)  # patches: lax not called.
      nchw = jax.lax.conv_dimension_numbers(
          (1, 3, 2, 2), (4, 3, 3, 3), ('NCHW', 'OIHW', 'NCHW'))
      layers.conv_general_dilated(
          jnp.ones((1, 3, 2, 2)), jnp.ones((4, 3, 3, 3)), (1, 1),
          ((1, 1), (1, 1)), dimension_numbers=nchw)
      self.assertEqual(spy.call_count, 2)

  # MobileNetV2 in inference mode: its train-mode step on 4 patches is so
  # ill-conditioned (batch norm over 4 x 1 x 1 values, 17 blocks) that
  # lax's float32 gradients are 25 % from float64's on the worst array, and
  # the patches path's just as far.
  @parameterized.parameters((resnet.ResNet18, True),
                            (mobilenet.MobileNetV2, False))
  def test_backbone_on_patches_matches_lax(self, cls, train):
    """A backbone on 32 x 32 patches (last stages 2 x 2 and 1 x 1): the
    same logits, batch statistics and gradients as with lax's conv."""
    model = cls(num_classes=3, dropout=0.0)
    x = jax.random.uniform(jax.random.key(0), (4, 32, 32, 1))
    variables = model.init(jax.random.key(1), x, train=False)

    def make_step():  # A new function each time: no shared trace cache.
      def loss(params):
        logits, upd = model.apply(
            {'params': params, 'batch_stats': variables['batch_stats']}, x,
            train=train, mutable=['batch_stats'])
        return jnp.sum(logits * jnp.arange(3.0)), (logits, upd)
      return jax.jit(jax.value_and_grad(loss, has_aux=True))

    step = make_step()
    (_, (logits, stats)), grads = step(variables['params'])
    hlo = step.lower(variables['params']).as_text()
    with mock.patch.object(layers, 'conv_general_dilated',
                           jax.lax.conv_general_dilated):
      step_ref = make_step()
      (_, (logits_ref, stats_ref)), grads_ref = step_ref(variables['params'])
      hlo_ref = step_ref.lower(variables['params']).as_text()
    # Training-mode batch norm over 4 x 1 x 1 values amplifies float
    # rounding in single elements, so each array is compared as a whole:
    # L2 error within 1e-3 of its norm, plus 1e-3 for the arrays that are
    # zero in exact arithmetic (a bias followed by batch norm).
    for a, b in zip(jax.tree.leaves((logits, stats, grads)),
                    jax.tree.leaves((logits_ref, stats_ref, grads_ref))):
      self.assertLessEqual(float(jnp.linalg.norm(a - b)),
                           1e-3 * float(jnp.linalg.norm(b)) + 1e-3)
    self.assertLess(hlo.count('stablehlo.convolution'),
                    hlo_ref.count('stablehlo.convolution'))


if __name__ == '__main__':
  absltest.main()
