"""Tests of the shared train / eval steps: task heads, auxiliary terms,
GradNorm and the normalisation by the global normaliser."""

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np
import optax

from mammojax.objectives import gradnorm as gradnorm_lib
from mammojax.training import state as state_lib
from mammojax.training import steps


class ToyTask:
  """Two softmax heads on a shared linear layer + an L2 auxiliary term."""

  task_names = ("a", "b")
  aux_names = ("rec",)
  aux_weights = (0.5,)

  def normalisers(self, batch):
    n = jnp.sum(batch["mask"].astype(jnp.float32))
    return jnp.stack([n, n, n * batch["x"].shape[-1]])

  def loss_sums(self, params, model_state, batch, rng, *, train):
    h = batch["x"] @ params["shared"]
    m = batch["mask"].astype(jnp.float32)
    sums = []
    for head, labels in (("head_a", batch["ya"]), ("head_b", batch["yb"])):
      logp = jax.nn.log_softmax(h @ params[head])
      nll = -jnp.take_along_axis(logp, labels[:, None], -1)[:, 0]
      sums.append(jnp.sum(m * nll))
    rec = h @ params["decoder"]
    sums.append(jnp.sum(m[:, None] * jnp.square(rec - batch["x"])))
    return jnp.stack(sums), (model_state, {"rec": rec})

  def gradnorm_layer(self, params):
    return params["shared"]

  def eval_outputs(self, outputs, batch):
    return {"reconstruction": outputs["rec"]}


def _setup(gradnorm: bool):
  rng = np.random.default_rng(0)
  params = {
      "shared": rng.normal(size=(4, 3)).astype(np.float32),
      "head_a": rng.normal(size=(3, 2)).astype(np.float32),
      "head_b": rng.normal(size=(3, 5)).astype(np.float32),
      "decoder": rng.normal(size=(3, 4)).astype(np.float32),
  }
  batch = {
      "x": rng.normal(size=(6, 4)).astype(np.float32),
      "ya": rng.integers(0, 2, 6).astype(np.int32),
      "yb": rng.integers(0, 5, 6).astype(np.int32),
      "mask": np.array([1, 1, 1, 1, 1, 0], bool),
  }
  gn_tx = optax.adam(1e-2) if gradnorm else None
  state = state_lib.TrainState.create(
      apply_fn=None, params=params, tx=optax.sgd(0.1), model_state={},
      gradnorm=gradnorm_lib.init_state(2, gn_tx) if gradnorm else None,
      task_weights=jnp.asarray([2.0, 1.0]),
  )
  return ToyTask(), state, batch, gn_tx


def _objective(task, params, batch, weights):
  sums, _ = task.loss_sums(params, {}, batch, None, train=True)
  losses = sums / task.normalisers(batch)
  return jnp.sum(weights[:2] * losses[:2]) + 0.5 * losses[2], losses


class StepsTest(absltest.TestCase):

  def test_static_weights_with_auxiliary_term(self):
    task, state, batch, _ = _setup(gradnorm=False)
    new_state, metrics = steps.train_step(
        state, batch, jax.random.key(0), task=task, gradnorm_alpha=0.0,
        gradnorm_tx=None, axis_name=None,
    )
    weights = jnp.asarray([2.0, 1.0])
    (total, losses), grads = jax.value_and_grad(
        lambda p: _objective(task, p, batch, weights), has_aux=True
    )(state.params)
    np.testing.assert_allclose(metrics["loss"], total, rtol=1e-6)
    np.testing.assert_allclose(metrics["loss_rec"], losses[2], rtol=1e-6)
    np.testing.assert_allclose(metrics["loss_a"], losses[0], rtol=1e-6)
    self.assertNotIn("weight_rec", metrics)
    for k in state.params:
      np.testing.assert_allclose(
          new_state.params[k], state.params[k] - 0.1 * grads[k], rtol=1e-5,
          atol=1e-6,
      )

  def test_gradnorm_balances_the_task_heads_only(self):
    task, state, batch, gn_tx = _setup(gradnorm=True)
    new_state, metrics = steps.train_step(
        state, batch, jax.random.key(0), task=task, gradnorm_alpha=1.5,
        gradnorm_tx=gn_tx, axis_name=None,
    )
    weights = state.gradnorm.weights
    (_, losses), grads = jax.value_and_grad(
        lambda p: _objective(task, p, batch, weights), has_aux=True
    )(state.params)
    # The network moves along grad(sum w_i L_i + c A).
    for k in state.params:
      np.testing.assert_allclose(
          new_state.params[k], state.params[k] - 0.1 * grads[k], rtol=1e-5,
          atol=1e-6,
      )
    # GradNorm's G_i are the task heads' gradient norms on W, not rec's.
    def task_loss(params, i):
      return _objective(task, params, batch, weights)[1][i]

    norms = [
        np.linalg.norm(jax.grad(task_loss)(state.params, i)["shared"])
        for i in range(2)
    ]
    np.testing.assert_allclose(
        [metrics["gradnorm/G_a"], metrics["gradnorm/G_b"]],
        np.asarray(weights) * np.asarray(norms), rtol=1e-5,
    )
    self.assertEqual(new_state.gradnorm.weights.shape, (2,))
    np.testing.assert_allclose(np.sum(new_state.gradnorm.weights), 2.0,
                               rtol=1e-6)
    np.testing.assert_allclose(metrics["loss_rec"], losses[2], rtol=1e-6)

  def test_eval_step_returns_every_term_and_outputs(self):
    task, state, batch, _ = _setup(gradnorm=False)
    out = steps.eval_step(state, batch, task=task)
    self.assertEqual(out["loss_sums"].shape, (3,))
    self.assertEqual(out["loss_normalisers"].shape, (3,))
    self.assertEqual(out["reconstruction"].shape, (6, 4))
    self.assertEqual(steps.term_names(task), ("a", "b", "rec"))

  def test_aux_weights_must_match_names(self):
    task = ToyTask()
    task.aux_weights = (1.0, 2.0)
    with self.assertRaisesRegex(ValueError, r"one weight per auxiliary"):
      steps.aux_weights(task)

  def test_compiled_steps_match_the_pure_functions(self):
    task, state, batch, _ = _setup(gradnorm=False)
    train, evaluate = steps.compile_steps(
        task, gradnorm_alpha=0.0, gradnorm_tx=None, num_devices=1
    )
    _, want = steps.train_step(
        state, batch, jax.random.key(0), task=task, gradnorm_alpha=0.0,
        gradnorm_tx=None, axis_name=None,
    )
    out = evaluate(state, batch)
    _, got = train(state, batch, jax.random.key(0))
    np.testing.assert_allclose(got["loss"], want["loss"], rtol=1e-6)
    self.assertEqual(out["loss_sums"].shape, (3,))


if __name__ == "__main__":
  absltest.main()
