"""Pure train and eval steps shared by every method.

A method plugs in through a ``Task`` (the ``create_task`` hook of its
``mammojax.methods`` module): it says how to turn a batch into loss *sums* and
*normalisers*, one per task head (``task_names``: classification heads,
evaluated with the shared metrics) and one per auxiliary term (``aux_names``:
reconstruction, graph regulariser, attribute loss, ...; weighted by
``aux_weights``, logged and evaluated as losses). Losses are normalised by the
global (all-device) normaliser, so the gradient that the ``psum`` over devices
produces is exactly the gradient of the global mean loss, and N devices
reproduce one device on the same global batch.

The objective is ``sum_i w_i L_i + sum_a c_a A_a``: ``w`` are GradNorm's
task weights (or the static ``state.task_weights``), ``c`` the static
``aux_weights``. GradNorm balances the task heads only.

With ``axis_name=None`` the steps are plain ``jax.jit`` functions; with an axis
name they are meant for ``jax.pmap``.
"""

import functools
from typing import Any, Callable, Optional, Protocol

import jax
import jax.numpy as jnp
import optax

from mammojax.objectives import gradnorm as gradnorm_lib
from mammojax.training.state import TrainState


class Task(Protocol):
  """What the steps need from a method.

  Optional attributes: ``aux_names`` (default ``()``) and ``aux_weights``
  (default 1 each); ``gradnorm_layer`` is needed only with GradNorm.
  """

  task_names: tuple[str, ...]

  def normalisers(self, batch: Any) -> jax.Array:
    """Loss normalisers ``[T + A]`` (e.g. weighted label counts)."""

  def loss_sums(
      self, params, model_state, batch, rng, *, train: bool
  ) -> tuple[jax.Array, tuple[Any, Any]]:
    """Loss sums ``[T + A]`` and ``(new_model_state, outputs)``."""

  def gradnorm_layer(self, params) -> Any:
    """The shared weights W on which GradNorm measures gradient norms."""

  def eval_outputs(self, outputs: Any, batch: Any) -> dict[str, jax.Array]:
    """Arrays gathered on the host for evaluation (probs, labels, masks, or
    anything else with a leading item axis)."""


def aux_names(task: Task) -> tuple[str, ...]:
  """The task's auxiliary loss terms (none by default)."""
  return tuple(getattr(task, "aux_names", ()))


def aux_weights(task: Task) -> jax.Array:
  """Static weights ``[A]`` of the auxiliary terms (1 by default)."""
  names = aux_names(task)
  weights = tuple(getattr(task, "aux_weights", (1.0,) * len(names)))
  if len(weights) != len(names):
    raise ValueError(
        f"task.aux_weights={weights}: expected one weight per auxiliary "
        f"term {names}"
    )
  return jnp.asarray(weights, jnp.float32)


def term_names(task: Task) -> tuple[str, ...]:
  """Every loss term: the task heads, then the auxiliary terms."""
  return tuple(task.task_names) + aux_names(task)


def _psum(x, axis_name):
  return x if axis_name is None else jax.lax.psum(x, axis_name)


def _pmean(x, axis_name):
  return x if axis_name is None else jax.lax.pmean(x, axis_name)


def train_step(
    state: TrainState,
    batch: Any,
    loop_rng: jax.Array,
    *,
    task: Task,
    gradnorm_alpha: float,
    gradnorm_tx: Optional[optax.GradientTransformation],
    axis_name: Optional[str],
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimisation step on ``batch``; returns the new state and metrics.

  Args:
    state: the train state (replicated under pmap).
    batch: the (per-device) padded batch.
    loop_rng: the run's loop key; the step key is ``fold_in(loop_rng, step)``
      (and the device index under pmap), so resuming reproduces the keys.
    task: the method's loss definition.
    gradnorm_alpha: GradNorm's restoring-force strength.
    gradnorm_tx: the optimiser of the task weights (None: GradNorm off).
    axis_name: the pmap axis name, or None on one device.

  Returns:
    ``(new_state, metrics)`` with global (all-device) scalar metrics.
  """
  rng = jax.random.fold_in(loop_rng, state.step)
  if axis_name is not None:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
  normalisers = _psum(task.normalisers(batch), axis_name)
  normalisers = jnp.maximum(normalisers, 1e-12)

  def local_task_losses(params):
    sums, aux = task.loss_sums(
        params, state.model_state, batch, rng, train=True
    )
    return sums / normalisers, aux

  num_tasks = len(task.task_names)
  extra = aux_weights(task)
  metrics = {}
  if state.gradnorm is not None:
    value_and_grads = gradnorm_lib.multitask_value_and_grad(
        local_task_losses, task.gradnorm_layer, has_aux=True,
        num_balanced=num_tasks,
    )
    weights = state.gradnorm.weights
    losses, aux, grads, layer_grads = value_and_grads(
        state.params, jnp.concatenate([weights, extra])
    )
    layer_grads = _psum(layer_grads, axis_name)
  else:
    weights = state.task_weights
    all_weights = jnp.concatenate([weights, extra])

    def weighted(params):
      losses, aux = local_task_losses(params)
      return jnp.sum(all_weights * losses), (losses, aux)

    (_, (losses, aux)), grads = jax.value_and_grad(
        weighted, has_aux=True
    )(state.params)
  losses = _psum(losses, axis_name)
  task_losses = losses[:num_tasks]
  grads = _psum(grads, axis_name)
  new_model_state, _ = aux
  new_model_state = _pmean(new_model_state, axis_name)
  new_state = state.apply_gradients(grads=grads, model_state=new_model_state)
  if state.gradnorm is not None:
    new_gradnorm, gn_metrics = gradnorm_lib.update(
        state.gradnorm,
        task_losses,
        layer_grads,
        alpha=gradnorm_alpha,
        tx=gradnorm_tx,
    )
    new_state = new_state.replace(gradnorm=new_gradnorm)
    for key, value in gn_metrics.items():
      if jnp.ndim(value) == 0:
        metrics[f"gradnorm/{key}"] = value
      else:
        for i, name in enumerate(task.task_names):
          metrics[f"gradnorm/{key}_{name}"] = value[i]
  for i, name in enumerate(task.task_names):
    metrics[f"loss_{name}"] = task_losses[i]
    metrics[f"weight_{name}"] = weights[i]
  for i, name in enumerate(aux_names(task)):
    metrics[f"loss_{name}"] = losses[num_tasks + i]
  metrics["loss"] = jnp.sum(weights * task_losses) + jnp.sum(
      extra * losses[num_tasks:]
  )
  metrics["grad_norm"] = optax.global_norm(grads)
  return new_state, metrics


def eval_step(
    state: TrainState, batch: Any, *, task: Task
) -> dict[str, jax.Array]:
  """Evaluates ``batch``; returns loss sums/normalisers and host outputs."""
  sums, (_, outputs) = task.loss_sums(
      state.params, state.model_state, batch, None, train=False
  )
  out = dict(task.eval_outputs(outputs, batch))
  out["loss_sums"] = sums
  out["loss_normalisers"] = task.normalisers(batch)
  return out


def compile_steps(
    task: Task,
    *,
    gradnorm_alpha: float,
    gradnorm_tx: Optional[optax.GradientTransformation],
    num_devices: int,
    devices: Optional[list[Any]] = None,
) -> tuple[Callable[..., Any], Callable[..., Any]]:
  """Returns ``(train_step, eval_step)`` jitted (1 device) or pmapped."""
  pmapped = not (num_devices == 1 and devices is None)
  from mammojax.training.parallel import AXIS_NAME  # pylint: disable=g-import-not-at-top

  train = functools.partial(
      train_step,
      task=task,
      gradnorm_alpha=gradnorm_alpha,
      gradnorm_tx=gradnorm_tx,
      axis_name=AXIS_NAME if pmapped else None,
  )
  evaluate = functools.partial(eval_step, task=task)
  if not pmapped:
    return jax.jit(train, donate_argnums=(0,)), jax.jit(evaluate)
  train = jax.pmap(
      train, axis_name=AXIS_NAME, in_axes=(0, 0, None), donate_argnums=(0,),
      devices=devices,
  )
  evaluate = jax.pmap(evaluate, axis_name=AXIS_NAME, devices=devices)
  return train, evaluate
