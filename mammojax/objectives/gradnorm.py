"""GradNorm task weighting (Chen et al., ICML 2018), by explicit jax.grad.

Algorithm 1 of the paper (with the choices of its public re-implementations
noted below). For task weights
``w`` (init 1, ``sum w = T``) and a subset ``W`` of the shared weights:

* ``G_i = ||grad_W (w_i L_i)|| = w_i ||grad_W L_i||``, ``G_bar = mean_i G_i``;
* ``r_i = Lt_i / mean_j Lt_j`` with ``Lt_i = L_i / L_i(0)``;
* ``L_grad = sum_i |G_i - stop_gradient(G_bar r_i ** alpha)|``;
* ``w`` moves along ``d L_grad / d w`` **only** (with an optax optimizer);
  the network moves along the gradient of ``sum_i w_i L_i`` only, with ``w``
  held constant. Unlike ``loss.backward()`` on ``L_grad`` in the PyTorch
  ports, nothing of ``L_grad`` reaches the network parameters.
* After every step ``w`` is clamped to a small positive floor and rescaled so
  that ``sum w = T``. The floor keeps a weight that an optimizer step pushed
  to or below zero from flipping its task's loss sign or dividing by zero;
  the paper only says "renormalize".

Typical step (``W`` = one kernel)::

  vg = multitask_value_and_grad(losses_fn, select_path('params', 'Dense_3',
                                                        'kernel'))
  losses, aux, grads, layer_grads = vg(params, gn_state.weights, batch)
  params, opt_state = apply(net_tx, grads, ...)          # grad of sum w_i L_i
  gn_state, gn_metrics = update(gn_state, losses, layer_grads,
                                alpha=1.5, tx=weight_tx)
"""

from typing import Any, Callable, Literal, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax

PyTree = Any
SelectFn = Callable[[PyTree], PyTree]

#: Smallest weight kept before renormalising (see module docstring).
DEFAULT_MIN_WEIGHT = 1e-6


@flax.struct.dataclass
class GradNormState:
  """GradNorm's persistent state.

  Attributes:
    weights: float32 `[T]` task weights, ``sum = T``.
    initial_losses: float32 `[T]` ``L_i(0)``; meaningful once `initialised`.
    initialised: bool `[]`, False until ``L_i(0)`` is known (``'first'``).
    opt_state: optax state of the weight optimizer.
    step: int32 `[]` number of updates done.
  """

  weights: jax.Array
  initial_losses: jax.Array
  initialised: jax.Array
  opt_state: optax.OptState
  step: jax.Array


def init_state(
    num_tasks: int,
    tx: optax.GradientTransformation,
    *,
    initial_loss: Literal["first", "log_num_classes"] = "first",
    num_classes: Sequence[int] | None = None,
    initial_losses: Sequence[float] | jax.Array | None = None,
) -> GradNormState:
  """Creates the state with ``w = 1``.

  Args:
    num_tasks: T.
    tx: optax optimizer for the task weights.
    initial_loss: ``'first'`` takes ``L_i(0)`` from the first `update` call
      (the paper's default); ``'log_num_classes'`` uses the theoretical
      initial cross-entropy ``log C_i`` (needs `num_classes`).
    num_classes: `[T]` class counts, for ``'log_num_classes'``.
    initial_losses: explicit `[T]` ``L_i(0)``; overrides `initial_loss`.

  Returns:
    The initial `GradNormState`.
  """
  weights = jnp.ones((num_tasks,), jnp.float32)
  if initial_losses is None and initial_loss == "log_num_classes":
    if num_classes is None or len(num_classes) != num_tasks:
      raise ValueError(
          "initial_loss='log_num_classes' needs num_classes with one entry "
          f"per task ({num_tasks}), got {num_classes}."
      )
    initial_losses = np.log(np.asarray(num_classes, np.float64))
  elif initial_losses is None and initial_loss != "first":
    raise ValueError(
        "initial_loss must be 'first' or 'log_num_classes', got "
        f"{initial_loss!r}."
    )
  if initial_losses is None:
    l0 = jnp.ones((num_tasks,), jnp.float32)
    initialised = jnp.array(False)
  else:
    l0 = jnp.asarray(initial_losses, jnp.float32).reshape((num_tasks,))
    initialised = jnp.array(True)
  return GradNormState(
      weights=weights,
      initial_losses=l0,
      initialised=initialised,
      opt_state=tx.init(weights),
      step=jnp.array(0, jnp.int32),
  )


def task_grad_norms(task_layer_grads: PyTree) -> jax.Array:
  """Per-task L2 norm over all leaves of `[T, ...]` gradients → `[T]`."""
  leaves = jax.tree_util.tree_leaves(task_layer_grads)
  if not leaves:
    raise ValueError("task_layer_grads has no leaves; W selects nothing.")
  sq = sum(
      jnp.sum(jnp.square(g.astype(jnp.float32)).reshape(g.shape[0], -1), -1)
      for g in leaves
  )
  return jnp.sqrt(sq)


def gradnorm_loss(
    weights: jax.Array,
    grad_norms: jax.Array,
    task_losses: jax.Array,
    initial_losses: jax.Array,
    *,
    alpha: float,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """``L_grad(w)`` with its target held constant.

  Args:
    weights: `[T]` task weights.
    grad_norms: `[T]` unweighted ``||grad_W L_i||``.
    task_losses: `[T]` current ``L_i``.
    initial_losses: `[T]` ``L_i(0)``.
    alpha: restoring-force strength.

  Returns:
    ``(L_grad, aux)`` with aux ``G``, ``target``, ``loss_ratio``,
    ``relative_rate`` (each `[T]`).
  """
  g = weights * jax.lax.stop_gradient(grad_norms)
  loss_ratio = jax.lax.stop_gradient(task_losses / initial_losses)
  relative_rate = loss_ratio / jnp.mean(loss_ratio)
  target = jax.lax.stop_gradient(jnp.mean(g) * relative_rate**alpha)
  l_grad = jnp.sum(jnp.abs(g - target))
  return l_grad, dict(
      G=g,
      target=target,
      loss_ratio=loss_ratio,
      relative_rate=relative_rate,
  )


def update(
    state: GradNormState,
    task_losses: jax.Array,
    task_layer_grads: PyTree,
    *,
    alpha: float,
    tx: optax.GradientTransformation,
    reset_opt_state: bool = False,
    min_weight: float = DEFAULT_MIN_WEIGHT,
) -> tuple[GradNormState, dict[str, jax.Array]]:
  """One GradNorm step on the task weights.

  `G` is measured with the weights the network step of the same iteration
  used (``state.weights``); the returned state holds ``w(t+1)``.

  Args:
    state: current state.
    task_losses: `[T]` task losses ``L_i(t)`` (values; no gradient flows).
    task_layer_grads: pytree of `[T, ...]` unweighted ``grad_W L_i``.
    alpha: restoring-force strength (0.12 in the toy, 1.5 in MT-GCN's code).
    tx: optax optimizer of the weights (the one given to `init_state`).
    reset_opt_state: re-create the optimizer state every step, as
      LucasBoTang/GradNorm re-creates its Adam (then each Adam step is about
      ``lr * sign(grad)``).
    min_weight: positive floor applied before renormalising to ``sum = T``.

  Returns:
    ``(new_state, metrics)``; metrics hold ``gradnorm_loss`` `[]`,
    ``G``, ``target``, ``loss_ratio``, ``relative_rate``, ``weights_grad``,
    ``weights`` (the new ones), each `[T]`, and ``G_ratio`` `[]`
    (``max G / min G``).
  """
  task_losses = jax.lax.stop_gradient(task_losses.astype(jnp.float32))
  num_tasks = task_losses.shape[0]
  initial_losses = jnp.where(
      state.initialised, state.initial_losses, task_losses
  )
  grad_norms = jax.lax.stop_gradient(task_grad_norms(task_layer_grads))
  (l_grad, aux), w_grad = jax.value_and_grad(gradnorm_loss, has_aux=True)(
      state.weights, grad_norms, task_losses, initial_losses, alpha=alpha
  )
  opt_state = tx.init(state.weights) if reset_opt_state else state.opt_state
  updates, opt_state = tx.update(w_grad, opt_state, state.weights)
  weights = optax.apply_updates(state.weights, updates)
  weights = jnp.maximum(weights, min_weight)
  weights = weights * (num_tasks / jnp.sum(weights))
  new_state = GradNormState(
      weights=weights,
      initial_losses=initial_losses,
      initialised=jnp.array(True),
      opt_state=opt_state,
      step=state.step + 1,
  )
  metrics = dict(
      gradnorm_loss=l_grad,
      weights_grad=w_grad,
      weights=weights,
      G_ratio=jnp.max(aux["G"]) / jnp.min(aux["G"]),
      **aux,
  )
  return new_state, metrics


def select_path(*path: str | int) -> SelectFn:
  """Selector of one subtree by keys, e.g. ``('params', 'Dense_3', 'kernel')``.

  A single ``'a/b/c'`` string is split on ``'/'``.
  """
  if len(path) == 1 and isinstance(path[0], str) and "/" in path[0]:
    path = tuple(path[0].split("/"))

  def select(tree: PyTree) -> PyTree:
    node = tree
    for i, key in enumerate(path):
      try:
        node = node[key]
      except (KeyError, IndexError, TypeError) as e:
        raise KeyError(
            f"GradNorm layer path {'/'.join(map(str, path))!r}: no key "
            f"{key!r} at depth {i}."
        ) from e
    return node

  return select


def multitask_value_and_grad(
    losses_fn: Callable[..., Any],
    select_fn: SelectFn | str | Sequence[str],
    *,
    has_aux: bool = True,
    num_balanced: int | None = None,
) -> Callable[..., tuple[jax.Array, Any, PyTree, PyTree]]:
  """Task losses, weighted gradients and per-task gradients on ``W``.

  One forward pass (``jax.vjp``) is shared by: one backward with cotangent
  ``w`` (→ the gradient of ``sum_i w_i L_i`` w.r.t. all params), and a
  ``jax.vmap`` of the same ``vjp_fn`` over one-hot cotangents from which only
  the ``W`` leaves are kept, so XLA drops the rest of those per-task
  backward passes (cheap when ``W`` sits near the heads).

  Args:
    losses_fn: ``(params, *args) -> task_losses [T]`` or, with `has_aux`,
      ``-> (task_losses [T], aux)``.
    select_fn: callable mapping a params-shaped tree to the ``W`` subtree, or
      a path for `select_path`.
    has_aux: whether `losses_fn` returns aux.
    num_balanced: how many leading losses GradNorm balances (default: all).
      The remaining ones (a method's auxiliary terms, with their static
      weights appended to ``task_weights``) enter the gradient of
      ``sum_i w_i L_i`` but get no per-task gradient on ``W``.

  Returns:
    ``f(params, task_weights [T], *args) -> (task_losses [T], aux, grads,
    task_layer_grads)``; `grads` is shaped like params, `task_layer_grads`
    like ``select_fn(params)`` with a leading `[T]` axis (unweighted
    ``grad_W L_i``); `aux` is None without `has_aux`.
  """
  if not callable(select_fn):
    select_fn = (
        select_path(select_fn)
        if isinstance(select_fn, str)
        else select_path(*select_fn)
    )

  def value_and_grads(params, task_weights, *args):
    fn = lambda p: losses_fn(p, *args)
    if has_aux:
      losses, vjp_fn, aux = jax.vjp(fn, params, has_aux=True)
    else:
      losses, vjp_fn = jax.vjp(fn, params)
      aux = None
    if losses.ndim != 1:
      raise ValueError(
          f"losses_fn must return task losses of shape [T], got "
          f"{losses.shape}."
      )
    cotangent = jax.lax.stop_gradient(task_weights).astype(losses.dtype)
    (grads,) = vjp_fn(cotangent)
    t = losses.shape[0] if num_balanced is None else num_balanced
    one_hots = jnp.eye(t, losses.shape[0], dtype=losses.dtype)
    task_layer_grads = jax.vmap(lambda ct: select_fn(vjp_fn(ct)[0]))(
        one_hots
    )
    return losses, aux, grads, task_layer_grads

  return value_and_grads
