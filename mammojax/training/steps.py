"""Pure train and eval steps shared by every method.

A method plugs in through a ``Task`` (see ``mammojax/training/tasks.py``): it
says how to turn a batch into per-task loss *sums* and *normalisers*. Losses
are normalised by the global (all-device) normaliser, so the gradient that the
``psum`` over devices produces is exactly the gradient of the global mean
loss, and N devices reproduce one device on the same global batch.

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
  """What the steps need from a method."""

  task_names: tuple[str, ...]

  def normalisers(self, batch: Any) -> jax.Array:
    """Per-task loss normalisers ``[T]`` (e.g. weighted label counts)."""

  def loss_sums(
      self, params, model_state, batch, rng, *, train: bool
  ) -> tuple[jax.Array, tuple[Any, Any]]:
    """Per-task loss sums ``[T]`` and ``(new_model_state, outputs)``."""

  def gradnorm_layer(self, params) -> Any:
    """The shared weights W on which GradNorm measures gradient norms."""

  def eval_outputs(self, outputs: Any, batch: Any) -> dict[str, jax.Array]:
    """Arrays gathered on the host for evaluation (probs, labels, masks)."""


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

  metrics = {}
  if state.gradnorm is not None:
    value_and_grads = gradnorm_lib.multitask_value_and_grad(
        local_task_losses, task.gradnorm_layer, has_aux=True
    )
    weights = state.gradnorm.weights
    task_losses, aux, grads, layer_grads = value_and_grads(
        state.params, weights
    )
    layer_grads = _psum(layer_grads, axis_name)
  else:
    weights = state.task_weights

    def weighted(params):
      losses, aux = local_task_losses(params)
      return jnp.sum(weights * losses), (losses, aux)

    (_, (task_losses, aux)), grads = jax.value_and_grad(
        weighted, has_aux=True
    )(state.params)
  task_losses = _psum(task_losses, axis_name)
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
  metrics["loss"] = jnp.sum(weights * task_losses)
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
  if num_devices == 1 and devices is None:
    train = jax.jit(
        functools.partial(
            train_step,
            task=task,
            gradnorm_alpha=gradnorm_alpha,
            gradnorm_tx=gradnorm_tx,
            axis_name=None,
        ),
        donate_argnums=(0,),
    )
    evaluate = jax.jit(functools.partial(eval_step, task=task))
    return train, evaluate
  from mammojax.training.parallel import AXIS_NAME  # pylint: disable=g-import-not-at-top

  train = jax.pmap(
      functools.partial(
          train_step,
          task=task,
          gradnorm_alpha=gradnorm_alpha,
          gradnorm_tx=gradnorm_tx,
          axis_name=AXIS_NAME,
      ),
      axis_name=AXIS_NAME,
      in_axes=(0, 0, None),
      donate_argnums=(0,),
      devices=devices,
  )
  evaluate = jax.pmap(
      functools.partial(eval_step, task=task),
      axis_name=AXIS_NAME,
      devices=devices,
  )
  return train, evaluate
