"""Tests for mammojax.objectives.gradnorm."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mammojax.experiments import gradnorm_toy
from mammojax.objectives import gradnorm


def _small_problem(num_tasks=3):
  """A small multi-task MLP, its params and a batch."""
  model = gradnorm_toy.ToyNet(num_tasks, hidden=8, num_layers=3, output_dim=4)
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(6, 5)), jnp.float32)
  y = jnp.asarray(rng.normal(size=(num_tasks, 6, 4)), jnp.float32)
  params = model.init(jax.random.key(0), x)

  def losses_fn(p, x, y):
    pred = model.apply(p, x)
    return jnp.mean((pred - y) ** 2, axis=(1, 2)) * jnp.arange(1.0, 4.0), pred

  return params, x, y, losses_fn


class MultitaskValueAndGradTest(parameterized.TestCase):

  @parameterized.parameters(
      ("params/Dense_1/kernel",),
      (("params", "Dense_1", "kernel"),),
  )
  def test_matches_separate_grads(self, layer):
    params, x, y, losses_fn = _small_problem()
    weights = jnp.array([0.5, 2.0, 0.5])
    vg = jax.jit(gradnorm.multitask_value_and_grad(losses_fn, layer))
    losses, aux, grads, layer_grads = vg(params, weights, x, y)

    want_losses, want_aux = losses_fn(params, x, y)
    np.testing.assert_allclose(losses, want_losses, rtol=1e-6)
    np.testing.assert_allclose(aux, want_aux, rtol=1e-6)
    total = lambda p: jnp.sum(weights * losses_fn(p, x, y)[0])
    jax.tree.map(
        functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-7),
        grads,
        jax.grad(total)(params),
    )
    self.assertEqual(layer_grads.shape, (3, 8, 8))
    for i in range(3):
      g_i = jax.grad(lambda p: losses_fn(p, x, y)[0][i])(params)
      np.testing.assert_allclose(
          layer_grads[i], g_i["params"]["Dense_1"]["kernel"], rtol=1e-5,
          atol=1e-7,
      )

  def test_callable_selector_subtree_and_no_aux(self):
    params, x, y, losses_fn = _small_problem()
    select = lambda t: {"k": t["params"]["head_0"]["kernel"],
                        "b": t["params"]["Dense_2"]["bias"]}
    vg = gradnorm.multitask_value_and_grad(
        lambda p, x, y: losses_fn(p, x, y)[0], select, has_aux=False
    )
    _, aux, _, layer_grads = vg(params, jnp.ones(3), x, y)
    self.assertIsNone(aux)
    self.assertEqual(layer_grads["k"].shape, (3, 8, 4))
    # head_0 only receives gradient from task 0.
    np.testing.assert_array_equal(layer_grads["k"][1:], 0.0)
    g1 = jax.grad(lambda p: losses_fn(p, x, y)[0][1])(params)
    np.testing.assert_allclose(
        layer_grads["b"][1], g1["params"]["Dense_2"]["bias"], rtol=1e-5,
        atol=1e-7,
    )

  def test_bad_path_names_key(self):
    params, x, y, losses_fn = _small_problem()
    vg = gradnorm.multitask_value_and_grad(losses_fn, "params/Dense_9/kernel")
    with self.assertRaisesRegex(KeyError, "Dense_9"):
      vg(params, jnp.ones(3), x, y)


class UpdateTest(absltest.TestCase):

  def test_one_step_by_hand(self):
    lr = 0.1
    tx = optax.sgd(lr)
    state = gradnorm.init_state(3, tx, initial_losses=[2.0, 1.0, 4.0])
    state = state.replace(weights=jnp.array([0.5, 1.0, 1.5]))
    task_losses = jnp.array([1.0, 0.9, 1.0])
    grads = {"a": jnp.array([[3.0, 4.0], [0.0, 1.0], [1.0, 0.0]]),
             "b": jnp.array([[0.0], [0.0], [2.0]])}
    alpha = 0.5
    new, m = jax.jit(
        functools.partial(gradnorm.update, alpha=alpha, tx=tx)
    )(state, task_losses, grads)

    w = np.array([0.5, 1.0, 1.5])
    norms = np.array([5.0, 1.0, np.sqrt(5.0)])
    g = w * norms
    ratio = np.array([0.5, 0.9, 0.25])
    r = ratio / ratio.mean()
    target = g.mean() * r**alpha
    np.testing.assert_allclose(m["G"], g, rtol=1e-6)
    np.testing.assert_allclose(m["target"], target, rtol=1e-6)
    np.testing.assert_allclose(
        m["gradnorm_loss"], np.abs(g - target).sum(), rtol=1e-6
    )
    w_grad = np.sign(g - target) * norms
    np.testing.assert_allclose(m["weights_grad"], w_grad, rtol=1e-6)
    w_new = w - lr * w_grad
    w_new = np.maximum(w_new, gradnorm.DEFAULT_MIN_WEIGHT)
    w_new = w_new * 3 / w_new.sum()
    np.testing.assert_allclose(new.weights, w_new, rtol=1e-6)
    self.assertEqual(int(new.step), 1)

  def test_first_losses_and_log_num_classes(self):
    tx = optax.adam(1e-3)
    state = gradnorm.init_state(2, tx)
    self.assertFalse(bool(state.initialised))
    grads = jnp.ones((2, 3))
    state, m = gradnorm.update(
        state, jnp.array([2.0, 3.0]), grads, alpha=1.0, tx=tx
    )
    np.testing.assert_allclose(state.initial_losses, [2.0, 3.0])
    np.testing.assert_allclose(m["loss_ratio"], [1.0, 1.0])
    state, m = gradnorm.update(
        state, jnp.array([1.0, 3.0]), grads, alpha=1.0, tx=tx
    )
    np.testing.assert_allclose(state.initial_losses, [2.0, 3.0])
    np.testing.assert_allclose(m["loss_ratio"], [0.5, 1.0])

    state = gradnorm.init_state(
        2, tx, initial_loss="log_num_classes", num_classes=[5, 3]
    )
    self.assertTrue(bool(state.initialised))
    np.testing.assert_allclose(state.initial_losses, np.log([5.0, 3.0]),
                               rtol=1e-6)
    with self.assertRaisesRegex(ValueError, "num_classes"):
      gradnorm.init_state(2, tx, initial_loss="log_num_classes")

  def test_reset_state_and_floor(self):
    lr = 0.01
    tx = optax.adam(lr)
    state = gradnorm.init_state(2, tx, initial_losses=[1.0, 1.0])
    grads = jnp.array([[1.0], [10.0]])
    # Fresh Adam: the first step is ~lr * sign(grad) per weight.
    for _ in range(3):
      state, m = gradnorm.update(
          state, jnp.ones(2), grads, alpha=0.0, tx=tx, reset_opt_state=True
      )
      np.testing.assert_allclose(jnp.sum(state.weights), 2.0, rtol=1e-6)
    self.assertGreater(float(state.weights[0]), 1.0)
    # A huge step that would make a weight negative is floored, not flipped.
    big = optax.sgd(100.0)
    state = gradnorm.init_state(2, big, initial_losses=[1.0, 1.0])
    state, _ = gradnorm.update(state, jnp.ones(2), grads, alpha=0.0, tx=big)
    self.assertTrue(np.all(np.asarray(state.weights) > 0))
    np.testing.assert_allclose(jnp.sum(state.weights), 2.0, rtol=1e-6)


if __name__ == "__main__":
  absltest.main()
