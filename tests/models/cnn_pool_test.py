"""layers.max_pool: nn.max_pool's values and first-maximum gradient."""

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mammojax.models.cnn import layers


class MaxPoolTest(parameterized.TestCase):

  @parameterized.parameters(
      ((2, 17, 12, 3), 3, 2, 1),
      ((2, 16, 10, 4), 3, 2, 1),
      ((1, 9, 7, 2), 2, 2, 0),
      ((1, 5, 5, 1), 3, 1, 1),
  )
  def test_matches_reduce_window(self, shape, k, s, p):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape).astype(np.float32)
    ref_fn = lambda x: nn.max_pool(x, (k, k), strides=(s, s),
                                   padding=((p, p), (p, p)))
    g = rng.normal(size=ref_fn(x).shape).astype(np.float32)
    # Post-ReLU inputs: many windows tie at 0 (the gradient goes to the
    # first maximum, as reduce_window's select_and_scatter does).
    for xx in (x, np.maximum(x, 0.0), np.round(x)):
      out = layers.max_pool(jnp.asarray(xx), k, s, p)
      np.testing.assert_array_equal(out, ref_fn(xx))
      got = jax.jit(jax.grad(
          lambda v: jnp.sum(layers.max_pool(v, k, s, p) * g)))(xx)
      want = jax.grad(lambda v: jnp.sum(ref_fn(v) * g))(xx)
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
      # Each window's gradient lands on exactly one input.
      self.assertAlmostEqual(float(jnp.sum(got)), float(np.sum(g)), places=3)

  def test_resnet_stem_uses_it(self):
    x = jnp.ones((1, 8, 8, 2))
    np.testing.assert_array_equal(
        layers.max_pool_3x3_s2(x),
        nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))))


if __name__ == '__main__':
  absltest.main()
