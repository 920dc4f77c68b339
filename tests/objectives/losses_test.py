"""Tests for mammojax.objectives.losses against torch formulas (numpy)."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
from sklearn.utils import class_weight

from mammojax.objectives import losses


def _np_log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _torch_cross_entropy(logits, labels, weight, eps):
  """torch.nn.functional.cross_entropy(reduction='mean', ignore_index=-1)."""
  c = logits.shape[-1]
  weight = np.ones(c) if weight is None else np.asarray(weight, np.float64)
  keep = labels >= 0
  logp = _np_log_softmax(logits[keep].astype(np.float64))
  y = labels[keep]
  w_y = weight[y]
  nll = (w_y * -logp[np.arange(len(y)), y]).sum() / w_y.sum()
  smooth = (-(logp * weight).sum(-1)).sum() / w_y.sum()
  return (1 - eps) * nll + eps / c * smooth


class WeightedCrossEntropyTest(parameterized.TestCase):

  @parameterized.product(weighted=[False, True], eps=[0.0, 0.1])
  def test_matches_torch_formula(self, weighted, eps):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(7, 5)).astype(np.float32) * 3
    labels = np.array([0, 4, -1, 2, 2, 1, 3])
    mask = np.array([True, True, True, True, False, True, True])
    weights = rng.uniform(0.2, 3.0, 5) if weighted else None
    got = losses.weighted_cross_entropy(
        logits,
        labels,
        class_weights=weights,
        mask=mask,
        label_smoothing=eps,
    )
    want = _torch_cross_entropy(
        logits, np.where(mask, labels, -1), weights, eps
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)

  def test_leading_axes(self):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 3, 4)).astype(np.float32)
    labels = rng.integers(0, 4, (2, 3))
    got = losses.weighted_cross_entropy(logits, labels)
    want = _torch_cross_entropy(
        logits.reshape(6, 4), labels.reshape(6), None, 0.0
    )
    np.testing.assert_allclose(got, want, rtol=1e-5)

  def test_no_valid_item_is_zero_with_finite_grad(self):
    logits = jnp.array([[np.nan, np.inf, 1.0], [1.0, 2.0, 3.0]])
    labels = jnp.array([1, -1])
    mask = jnp.array([False, True])
    weights = jnp.array([1.0, 2.0, 3.0])
    fn = lambda z: losses.weighted_cross_entropy(
        z, labels, mask=mask, class_weights=weights, label_smoothing=0.1
    )
    value, grad = jax.value_and_grad(fn)(logits)
    self.assertEqual(float(value), 0.0)
    np.testing.assert_array_equal(grad, np.zeros((2, 3)))

  def test_padding_garbage_does_not_leak(self):
    logits = jnp.array([[np.nan, 0.0, 1.0], [1.0, 2.0, 3.0]])
    labels = jnp.array([0, 2])
    mask = jnp.array([False, True])
    fn = lambda z: losses.weighted_cross_entropy(z, labels, mask=mask)
    value, grad = jax.value_and_grad(fn)(logits)
    want = -_np_log_softmax(np.array([1.0, 2.0, 3.0]))[2]
    np.testing.assert_allclose(value, want, rtol=1e-6)
    self.assertTrue(np.all(np.isfinite(grad)))
    np.testing.assert_array_equal(grad[0], 0.0)


class ClassWeightsTest(absltest.TestCase):

  def test_inverse_matches_sklearn_balanced(self):
    counts = np.array([10, 3, 0, 7])
    y = np.repeat(np.arange(4), counts)
    present = np.unique(y)
    want = class_weight.compute_class_weight("balanced", classes=present, y=y)
    got = losses.class_weights_from_counts(counts, scheme="inverse")
    np.testing.assert_allclose(got[present], want, rtol=1e-6)
    self.assertEqual(got[2], 0.0)

  def test_effective_number(self):
    counts = np.array([100, 10, 1])
    beta = 0.99
    raw = (1 - beta) / (1 - beta ** counts)
    got = losses.class_weights_from_counts(
        counts, scheme="effective", beta=beta
    )
    np.testing.assert_allclose(got, raw / raw.sum() * 3, rtol=1e-6)
    self.assertAlmostEqual(float(got.sum()), 3.0, places=5)

  def test_bad_input(self):
    with self.assertRaisesRegex(ValueError, "scheme"):
      losses.class_weights_from_counts([1, 2], scheme="sqrt")
    with self.assertRaisesRegex(ValueError, "all zero"):
      losses.class_weights_from_counts([0, 0])


class BinaryCrossEntropyTest(absltest.TestCase):

  def test_matches_torch_formula_with_mask(self):
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(5, 3)).astype(np.float32) * 4
    labels = (rng.uniform(size=(5, 3)) > 0.5).astype(np.float32)
    mask = rng.uniform(size=(5, 3)) > 0.3
    pos_weight = np.array([1.0, 2.0, 0.5])
    got = losses.binary_cross_entropy_with_logits(
        logits, labels, mask=mask, pos_weight=pos_weight
    )
    x = logits.astype(np.float64)
    sig = 1 / (1 + np.exp(-x))
    per = -(pos_weight * labels * np.log(sig) + (1 - labels) * np.log(1 - sig))
    np.testing.assert_allclose(got, per[mask].mean(), rtol=1e-5)

  def test_item_mask_broadcasts_and_empty_is_zero(self):
    logits = jnp.array([[np.nan, 1.0], [0.0, 0.0]])
    labels = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    item_mask = jnp.array([[False], [True]])
    fn = lambda z, m: losses.binary_cross_entropy_with_logits(
        z, labels, mask=m
    )
    np.testing.assert_allclose(fn(logits, item_mask), np.log(2.0), rtol=1e-6)
    grad = jax.grad(fn)(logits, jnp.zeros((2, 1), bool))
    self.assertEqual(float(fn(logits, jnp.zeros((2, 1), bool))), 0.0)
    np.testing.assert_array_equal(grad, 0.0)


if __name__ == "__main__":
  absltest.main()
