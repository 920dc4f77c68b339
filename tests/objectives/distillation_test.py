"""Tests for mammojax.objectives.distillation."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from mammojax.objectives import distillation
from mammojax.objectives import losses


def _np_softmax(x):
  e = np.exp(x - x.max(-1, keepdims=True))
  return e / e.sum(-1, keepdims=True)


class DistillationTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(0)
    self.student = jnp.asarray(rng.normal(size=(6, 4)), jnp.float32)
    self.teacher = jnp.asarray(rng.normal(size=(6, 4)) * 2, jnp.float32)
    self.labels = jnp.array([0, 1, 2, 3, -1, 1])
    self.mask = jnp.array([True, True, True, True, True, False])

  def test_alpha_one_is_soft_target_cross_entropy(self):
    t = 3.0
    got = distillation.distillation_loss(
        self.student, self.teacher, self.labels, temperature=t, alpha=1.0,
        mask=self.mask,
    )
    q = _np_softmax(np.asarray(self.teacher, np.float64) / t)
    log_p = np.log(_np_softmax(np.asarray(self.student, np.float64) / t))
    ce = -(q * log_p).sum(-1)[np.asarray(self.mask)].mean()
    np.testing.assert_allclose(got, t**2 * ce, rtol=1e-5)

  def test_alpha_zero_is_hard_cross_entropy(self):
    weights = jnp.array([1.0, 2.0, 0.5, 1.0])
    got = distillation.distillation_loss(
        self.student, self.teacher, self.labels, temperature=4.0, alpha=0.0,
        mask=self.mask, class_weights=weights,
    )
    want = losses.weighted_cross_entropy(
        self.student, self.labels, mask=self.mask, class_weights=weights
    )
    np.testing.assert_allclose(got, want, rtol=1e-6)

  def test_gradient_scale_independent_of_temperature(self):
    # High-T limit (Hinton et al. §2.1): with zero-mean logits the gradient
    # of T^2 * CE is (z - v) / C per item, whatever T is.
    z = self.student - self.student.mean(-1, keepdims=True)
    v = self.teacher - self.teacher.mean(-1, keepdims=True)
    n, c = z.shape
    want = (z - v) / c / n
    for t in (50.0, 500.0):
      grad = jax.grad(
          lambda s: distillation.distillation_loss(
              s, v, self.labels, temperature=t, alpha=1.0
          )
      )(z)
      # The remainder is O(1 / T).
      np.testing.assert_allclose(grad, want, atol=0.25 / t)

  def test_no_teacher_gradient_and_empty_mask(self):
    fn = lambda s, te: distillation.distillation_loss(
        s, te, self.labels, temperature=2.0, alpha=0.5,
        mask=jnp.zeros(6, bool),
    )
    value, (gs, gt) = jax.value_and_grad(fn, argnums=(0, 1))(
        self.student, self.teacher
    )
    self.assertEqual(float(value), 0.0)
    np.testing.assert_array_equal(gs, 0.0)
    np.testing.assert_array_equal(gt, 0.0)
    full = lambda te: distillation.distillation_loss(
        self.student, te, self.labels, temperature=2.0, alpha=0.5
    )
    np.testing.assert_array_equal(jax.grad(full)(self.teacher), 0.0)

  def test_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, "temperature"):
      distillation.distillation_loss(
          self.student, self.teacher, self.labels, temperature=0.0, alpha=0.5
      )
    with self.assertRaisesRegex(ValueError, "alpha"):
      distillation.distillation_loss(
          self.student, self.teacher, self.labels, temperature=1.0, alpha=2.0
      )


if __name__ == "__main__":
  absltest.main()
