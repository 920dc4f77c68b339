"""GradNorm's toy regression problem, with and without GradNorm.

The toy example of the GradNorm paper (Chen, Badrinarayanan, Lee and
Rabinovich, "GradNorm: Gradient Normalization for Adaptive Loss Balancing
in Deep Multitask Networks", ICML 2018, section 4): T regression tasks
``f_i(x) = sigma_i tanh((B + eps_i) x)`` share a 4-layer ReLU trunk; one
Dense head per task. With ``sigma = (1, 100)`` the large task dominates the
shared gradient under equal weights; GradNorm raises ``w_0`` until the
per-task gradient norms on ``W`` (the last trunk kernel) match. Choices the
paper leaves open follow the public PyTorch implementation
LucasBoTang/GradNorm: ``B, eps`` are normal with std 10 and 3.5,
``x ~ U(0, 1)``, ``L_i(0)`` is the first batch.

The whole run is one jitted ``lax.scan``, so thousands of steps take seconds.
``run(ToyConfig)`` trains once; ``run_protocol(config, workdir)`` (protocol
``gradnorm_toy`` of ``mammojax.experiments``) trains with GradNorm and with
equal weights and writes both summaries. ``scripts/gradnorm_toy.py`` is the
command line.
"""

import dataclasses
import functools
import json
import os
import time
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mammojax.objectives import gradnorm


@dataclasses.dataclass(frozen=True)
class ToyConfig:
  """Toy problem and training settings.

  The defaults are the paper's two-task toy (``sigmas = (1, 100)``,
  ``alpha = 0.12``) with LucasBoTang/GradNorm's data scales.
  """

  sigmas: Sequence[float] = (1.0, 100.0)
  alpha: float = 0.12
  use_gradnorm: bool = True
  input_dim: int = 250
  output_dim: int = 100
  hidden: int = 100
  num_layers: int = 4
  b_std: float = 10.0
  eps_std: float = 3.5
  num_train: int = 10_000
  num_test: int = 2_000
  batch_size: int = 100
  num_steps: int = 2_000
  net_lr: float = 1e-4
  weight_lr: float = 1e-3
  reset_weight_opt_state: bool = False
  seed: int = 0


class ToyNet(nn.Module):
  """He-init ReLU trunk (``Dense_0..Dense_{L-1}``) and one head per task."""

  num_tasks: int
  hidden: int = 100
  num_layers: int = 4
  output_dim: int = 100

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """`[B, D]` → `[T, B, output_dim]`."""
    he = nn.initializers.he_normal()
    for i in range(self.num_layers):
      x = nn.relu(nn.Dense(self.hidden, kernel_init=he, name=f"Dense_{i}")(x))
    return jnp.stack([
        nn.Dense(self.output_dim, name=f"head_{t}")(x)
        for t in range(self.num_tasks)
    ])


def make_data(
    rng: jax.Array, config: ToyConfig
) -> tuple[jax.Array, jax.Array]:
  """Inputs `[N, D]` and targets `[T, N, output_dim]`, N = train + test."""
  num_tasks = len(config.sigmas)
  b_rng, eps_rng, x_rng = jax.random.split(rng, 3)
  shape = (config.input_dim, config.output_dim)
  b = config.b_std * jax.random.normal(b_rng, shape)
  eps = config.eps_std * jax.random.normal(eps_rng, (num_tasks, *shape))
  n = config.num_train + config.num_test
  x = jax.random.uniform(x_rng, (n, config.input_dim))
  sigmas = jnp.asarray(config.sigmas, jnp.float32)
  y = sigmas[:, None, None] * jnp.tanh(jnp.einsum("nd,tdo->tno", x, b + eps))
  return x, y


def _task_mse(pred: jax.Array, y: jax.Array) -> jax.Array:
  """Per-task mean squared error `[T]` (torch ``MSELoss`` per task)."""
  return jnp.mean(jnp.square(pred - y), axis=(1, 2))


def run(config: ToyConfig) -> dict[str, Any]:
  """Trains the toy model; returns numpy trajectories and summary numbers.

  Returns:
    dict with ``weights`` `[S, T]` (after each step; ones without GradNorm),
    ``losses`` `[S, T]`, ``G`` `[S, T]` (``w_i ||grad_W L_i||`` with the
    weights used in that step), ``G_ratio`` `[S]`, ``test_loss_ratio`` `[T]`
    (``L_i(end)/L_i(0)`` on the test split), ``task_normalized_test_loss``,
    ``wall_time_s`` (compile + run) and ``run_time_s`` (run only).
  """
  num_tasks = len(config.sigmas)
  data_rng, init_rng, loop_rng = jax.random.split(
      jax.random.key(config.seed), 3
  )
  x, y = make_data(data_rng, config)
  x_train, y_train = x[: config.num_train], y[:, : config.num_train]
  x_test, y_test = x[config.num_train :], y[:, config.num_train :]
  model = ToyNet(
      num_tasks,
      hidden=config.hidden,
      num_layers=config.num_layers,
      output_dim=config.output_dim,
  )
  params = model.init(init_rng, x_train[:1])
  net_tx = optax.adam(config.net_lr)
  weight_tx = optax.adam(config.weight_lr)
  gn_state = gradnorm.init_state(num_tasks, weight_tx)
  steps_per_epoch = config.num_train // config.batch_size
  layer = ("params", f"Dense_{config.num_layers - 1}", "kernel")

  def losses_fn(p, xb, yb):
    return _task_mse(model.apply(p, xb), yb), None

  value_and_grads = gradnorm.multitask_value_and_grad(losses_fn, layer)

  # One shuffle per epoch, drawn up front (a sort per step would dominate).
  num_epochs = -(-config.num_steps // steps_per_epoch)
  perms = jax.vmap(lambda r: jax.random.permutation(r, config.num_train))(
      jax.random.split(loop_rng, num_epochs)
  )
  batches = perms[:, : steps_per_epoch * config.batch_size].reshape(
      num_epochs * steps_per_epoch, config.batch_size
  )[: config.num_steps]

  def step_fn(carry, idx, x_train, y_train):
    params, opt_state, gn_state = carry
    losses, _, grads, layer_grads = value_and_grads(
        params, gn_state.weights, x_train[idx], y_train[:, idx]
    )
    updates, opt_state = net_tx.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    if config.use_gradnorm:
      gn_state, metrics = gradnorm.update(
          gn_state,
          losses,
          layer_grads,
          alpha=config.alpha,
          tx=weight_tx,
          reset_opt_state=config.reset_weight_opt_state,
      )
      g = metrics["G"]
    else:
      g = gn_state.weights * gradnorm.task_grad_norms(layer_grads)
    out = dict(
        weights=gn_state.weights,
        losses=losses,
        G=g,
        G_ratio=jnp.max(g) / jnp.min(g),
    )
    return (params, opt_state, gn_state), out

  # Data go in as arguments, not as constants baked into the program.
  @jax.jit
  def train(params, gn_state, batches, x_train, y_train, x_test, y_test):
    test_l0 = _task_mse(model.apply(params, x_test), y_test)
    carry = (params, net_tx.init(params), gn_state)
    (params, _, gn_state), traj = jax.lax.scan(
        functools.partial(step_fn, x_train=x_train, y_train=y_train),
        carry,
        batches,
    )
    test_ratio = _task_mse(model.apply(params, x_test), y_test) / test_l0
    return traj, test_ratio

  args = (params, gn_state, batches, x_train, y_train, x_test, y_test)
  start = time.perf_counter()
  compiled = train.lower(*args).compile()
  compiled_at = time.perf_counter()
  traj, test_ratio = jax.block_until_ready(compiled(*args))
  end = time.perf_counter()
  result = {k: np.asarray(v) for k, v in traj.items()}
  result.update(
      test_loss_ratio=np.asarray(test_ratio),
      task_normalized_test_loss=float(np.sum(test_ratio)),
      wall_time_s=end - start,
      run_time_s=end - compiled_at,
  )
  return result


def summarize(result: dict[str, Any], every: int = 250) -> dict[str, Any]:
  """JSON-ready summary of one ``run`` result.

  Args:
    result: the output of ``run``.
    every: the trajectory keeps the weights and G ratio of every
      ``every``-th step.
  """
  result = {
      k: np.asarray(v, np.float64) if isinstance(v, np.ndarray) else v
      for k, v in result.items()
  }
  steps = list(range(every - 1, len(result["weights"]), every))
  return dict(
      trajectory=dict(
          step=[s + 1 for s in steps],
          weights=result["weights"][steps].round(4).tolist(),
          G_ratio=result["G_ratio"][steps].round(3).tolist(),
      ),
      final_weights=result["weights"][-1].round(4).tolist(),
      final_G=result["G"][-1].round(3).tolist(),
      final_G_ratio=round(float(result["G_ratio"][-1]), 3),
      max_abs_weight_sum_error=float(
          abs(result["weights"].sum(1) - result["weights"].shape[1]).max()
      ),
      test_loss_ratio=result["test_loss_ratio"].round(4).tolist(),
      task_normalized_test_loss=round(result["task_normalized_test_loss"], 4),
      wall_time_s=round(result["wall_time_s"], 2),
      run_time_s=round(result["run_time_s"], 2),
  )


def compare(config: ToyConfig, *, every: int = 250,
            baseline: bool = True) -> dict[str, Any]:
  """Summaries of ``config`` (``gradnorm``) and of equal weights.

  Args:
    config: the toy settings; ``use_gradnorm`` is set per run.
    every: see ``summarize``.
    baseline: also train with equal weights (``equal_weights``).
  """
  out = {"gradnorm": summarize(
      run(dataclasses.replace(config, use_gradnorm=True)), every
  )}
  if baseline:
    out["equal_weights"] = summarize(
        run(dataclasses.replace(config, use_gradnorm=False)), every
    )
  return out


def run_protocol(config: ml_collections.ConfigDict,
                 workdir: str) -> dict[str, Any]:
  """GradNorm vs equal weights; writes ``workdir/results.json``.

  Args:
    config: ``protocol`` with ``name = "gradnorm_toy"`` and optional
      ``ToyConfig`` fields (e.g. ``sigmas``, ``alpha``, ``num_steps``,
      ``seed``), ``every`` and ``baseline``.
    workdir: output folder.

  Returns:
    The summaries written to ``results.json``.
  """
  p = dict(config.protocol)
  fields = {f.name for f in dataclasses.fields(ToyConfig)} - {"use_gradnorm"}
  unknown = sorted(set(p) - fields - {"name", "every", "baseline"})
  if unknown:
    raise ValueError(
        f"config.protocol: unknown keys {unknown} for gradnorm_toy; expected "
        f"name, every, baseline or ToyConfig fields {sorted(fields)}"
    )
  toy = ToyConfig(**{
      k: tuple(v) if k == "sigmas" else v for k, v in p.items()
      if k in fields
  })
  out = {"config": dataclasses.asdict(toy)}
  out.update(compare(toy, every=int(p.get("every", 250)),
                     baseline=bool(p.get("baseline", True))))
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, "results.json"), "w") as f:
    json.dump(out, f, indent=1)
  return out
