"""gnn.dropout (draws from 8 / 16-bit integers) and DeepGCN's use of it."""

from absl.testing import absltest
from absl.testing import parameterized
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mammojax.models import gnn


class DropoutTest(parameterized.TestCase):

  @parameterized.parameters(8, 16, 32)
  def test_rate_and_unbiased(self, bits):
    x = jnp.ones((400, 250), jnp.float32)
    out = np.asarray(jax.jit(
        lambda k: gnn.dropout(k, x, 0.1, bits=bits))(jax.random.key(0)))
    applied = round(0.1 * 2**bits) / 2**bits
    kept = out != 0
    # 100 000 draws: the kept fraction within 4 standard errors (~0.0038).
    self.assertAlmostEqual(kept.mean(), 1 - applied, delta=0.0038)
    np.testing.assert_allclose(out[kept], 1 / (1 - applied), rtol=1e-6)
    self.assertAlmostEqual(out.mean(), 1.0, delta=0.005)
    # Masks differ between keys and are not constant along an axis.
    other = np.asarray(gnn.dropout(jax.random.key(1), x, 0.1, bits=bits))
    self.assertGreater(np.mean(kept != (other != 0)), 0.1)
    self.assertGreater(kept[:, 0].std(), 0.2)

  def test_sixteen_bit_rate_is_exact_to_2e5(self):
    self.assertAlmostEqual(round(0.1 * 2**16) / 2**16, 0.1, delta=2**-17)
    x = jnp.ones((7,), jnp.float32)  # Odd size: the last word half used.
    out = gnn.dropout(jax.random.key(2), x, 0.5, bits=16)
    self.assertEqual(out.shape, (7,))
    self.assertTrue(set(np.unique(np.asarray(out))) <= {0.0, 2.0})

  def test_zero_rate_and_errors(self):
    x = jnp.arange(6.0)
    np.testing.assert_array_equal(gnn.dropout(jax.random.key(0), x, 0.0), x)
    with self.assertRaisesRegex(ValueError, 'dropout bits: expected one of'):
      gnn.dropout(jax.random.key(0), x, 0.1, bits=12)
    with self.assertRaisesRegex(ValueError, r'dropout rate: expected 0 <= rate'):
      gnn.dropout(jax.random.key(0), x, 1.0)

  def _deepgcn_out(self, bits, train=True):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 8)).astype(np.float32)
    s = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], np.int32)
    r = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0], np.int32)
    model = gnn.DeepGCN(hidden=8, num_layers=3, dropout=0.3, scan=False,
                        dropout_bits=bits)
    params = model.init(jax.random.key(0), x, s, r)
    return model.apply(params, x, s, r, train=train,
                       rngs={'dropout': jax.random.key(5)})

  def test_deepgcn_dropout_bits(self):
    a16, b16 = self._deepgcn_out(16), self._deepgcn_out(16)
    np.testing.assert_array_equal(a16, b16)  # Deterministic given the key.
    a32 = self._deepgcn_out(32)
    self.assertFalse(np.allclose(a16, a32))  # Another bit stream.
    np.testing.assert_array_equal(  # Eval: no dropout, bits irrelevant.
        self._deepgcn_out(16, train=False), self._deepgcn_out(32, train=False))
    with self.assertRaisesRegex(ValueError, 'DeepGCN.dropout_bits'):
      self._deepgcn_out(12)

  def test_deepgcn_32_bits_is_flax_dropout(self):
    """dropout_bits=32 applies flax's nn.Dropout itself (earlier runs'
    masks): the layer's output equals conv(flax-dropped h) + x."""
    from mammojax.models.gnn import deepgcn

    class Probe(nn.Module):
      bits: int

      @nn.compact
      def __call__(self, h):
        return deepgcn._dropout_fn(self, 0.3, self.bits, False)(h)

    class Flax(nn.Module):

      @nn.compact
      def __call__(self, h):
        return nn.Dropout(0.3, deterministic=False)(h)

    h = jnp.ones((64, 8))
    rngs = {'dropout': jax.random.key(3)}
    ref = Flax().apply({}, h, rngs=rngs)
    np.testing.assert_array_equal(Probe(32).apply({}, h, rngs=rngs), ref)
    self.assertFalse(np.array_equal(Probe(16).apply({}, h, rngs=rngs), ref))


if __name__ == '__main__':
  absltest.main()
