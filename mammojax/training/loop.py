"""``train_and_evaluate``: the training loop shared by every method.

Python control flow (epochs, evaluation, checkpoints, early stopping, logging)
lives here; the numerics live in the jitted / pmapped steps of ``steps.py``;
what differs between papers comes from the method module of
``config.method`` (``mammojax.methods``).
"""

import json
import os
import time
from typing import Any, Optional, Sequence

from absl import logging
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from mammojax import methods as methods_lib
from mammojax.objectives import gradnorm as gradnorm_lib
from mammojax.training import checkpoints as ckpt_lib
from mammojax.training import metrics as metrics_lib
from mammojax.training import parallel
from mammojax.training import state as state_lib
from mammojax.training import steps as steps_lib
from mammojax.training import validation
from mammojax.training import writers


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


def create_model(config: ml_collections.ConfigDict, vocabularies) -> Any:
  """The model of ``config.method`` for a dataset's label vocabularies."""
  return methods_lib.get_method(config).create_model(config, vocabularies)


def gradnorm_enabled(config: ml_collections.ConfigDict, num_tasks: int) -> bool:
  """GradNorm balances the tasks: a ``gradnorm`` block, enabled, T > 1."""
  block = config.get("gradnorm")
  return bool(block and block.get("enabled", False) and num_tasks > 1)


def create_train_state(
    config: ml_collections.ConfigDict,
    model: Any,
    task: steps_lib.Task,
    example_batch: Any,
    rng: jax.Array,
    gradnorm_tx: Optional[optax.GradientTransformation],
    num_classes: dict[str, int],
) -> state_lib.TrainState:
  """Initialises parameters, optimiser and GradNorm state."""
  variables = jax.jit(lambda r, b: model.init(r, b, train=False))(
      rng, example_batch
  )
  params = variables["params"]
  model_state = {k: v for k, v in variables.items() if k != "params"}
  tx = state_lib.create_optimizer(config)
  task_names = tuple(task.task_names)
  num_tasks = len(task_names)
  gradnorm_state = None
  if gradnorm_enabled(config, num_tasks):
    initial = None
    if config.gradnorm.initial_loss == "log_num_classes":
      initial = jnp.log(
          jnp.asarray([num_classes[t] for t in task_names], jnp.float32)
      )
    elif config.gradnorm.initial_loss != "first":
      raise ValueError(
          f"config.gradnorm.initial_loss={config.gradnorm.initial_loss!r}: "
          "expected first or log_num_classes"
      )
    gradnorm_state = gradnorm_lib.init_state(
        num_tasks, gradnorm_tx, initial_losses=initial
    )
  task_weights = tuple(config.get("task_weights") or (1.0,) * num_tasks)
  if len(task_weights) != num_tasks:
    raise ValueError(
        f"config.task_weights={task_weights}: expected one weight per task "
        f"{task_names}"
    )
  state = state_lib.TrainState.create(
      apply_fn=model.apply,
      params=params,
      tx=tx,
      model_state=model_state,
      gradnorm=gradnorm_state,
      task_weights=jnp.asarray(task_weights, jnp.float32),
  )
  # A strongly typed step keeps the step function's signature identical
  # between the first call and later ones (a Python int would retrace once).
  return state.replace(step=jnp.zeros((), jnp.int32))


def _to_host(tree):
  return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def _shard() -> dict[str, int]:
  """This process's part of each global step (``data.train_batches``)."""
  return {"process_index": jax.process_index(),
          "process_count": jax.process_count()}


def evaluate(
    eval_fn, state, data: Any, split: str, *, num_devices: int,
    tasks: Sequence[str], class_names: dict[str, Sequence[str]],
    aux_names: Sequence[str] = (), aux_weights: Sequence[float] = (),
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Runs ``split`` through the model; returns metrics and raw outputs.

  The task's ``eval_outputs`` give ``{name}_probs``, ``{name}_labels`` and
  ``{name}_mask`` per task (every real, labelled item counts once) and any
  other per-item arrays (kept in the raw outputs, not scored). Results hold
  ``loss_{name}`` per task head and auxiliary term (its mean over the split)
  and ``loss`` = the task losses plus the weighted auxiliary terms.

  With several processes each evaluates its part of every step and the
  outputs are gathered (``process_allgather``, in device order), so every
  process scores the whole split.
  """
  collected: dict[str, list[np.ndarray]] = {}
  loss_sums = 0.0
  loss_norms = 0.0
  processes = jax.process_count()
  for batch in data.eval_batches(split, num_devices=num_devices, **_shard()):
    if processes > 1:
      out = parallel.local_values(eval_fn(state, batch))
      out = {
          k: v.reshape((-1,) + v.shape[2:])
          for k, v in multihost_utils.process_allgather(out).items()
      }
    else:
      out = _to_host(eval_fn(state, batch))
    if num_devices > 1 or processes > 1:
      out = {
          k: (v.sum(0) if k.startswith("loss_") else
              v.reshape((-1,) + v.shape[2:]))
          for k, v in out.items()
      }
    loss_sums = loss_sums + out.pop("loss_sums")
    loss_norms = loss_norms + out.pop("loss_normalisers")
    for key, value in out.items():
      collected.setdefault(key, []).append(value)
  raw = {k: np.concatenate(v) for k, v in collected.items()}
  results: dict[str, Any] = {}
  term_losses = np.asarray(loss_sums) / np.maximum(loss_norms, 1e-12)
  task_losses = term_losses[: len(tasks)]
  extra = term_losses[len(tasks):]
  results["loss"] = float(
      np.sum(task_losses) + np.sum(np.asarray(aux_weights) * extra)
  )
  for i, name in enumerate(aux_names):
    results[f"loss_{name}"] = float(extra[i])
  aucs = []
  for i, task in enumerate(tasks):
    results[f"loss_{task}"] = float(task_losses[i])
    mask = raw[f"{task}_mask"] & (raw[f"{task}_labels"] >= 0)
    report = metrics_lib.classification_report(
        raw[f"{task}_labels"][mask],
        raw[f"{task}_probs"][mask],
        class_names=list(class_names[task]),
    )
    results[task] = report
    if report.get("auc_ovo") is not None:
      aucs.append(report["auc_ovo"])
  results["mean_auc"] = float(np.mean(aucs)) if aucs else float("nan")
  return results, raw


def _flat_scalars(prefix: str, results: dict[str, Any]) -> dict[str, float]:
  out = {}
  for key, value in results.items():
    if isinstance(value, dict):
      for k2, v2 in value.items():
        if isinstance(v2, (int, float)) and v2 is not None:
          out[f"{prefix}/{key}_{k2}"] = float(v2)
    elif isinstance(value, (int, float)):
      out[f"{prefix}/{key}"] = float(value)
  return out


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str,
    *,
    examples_and_info: Optional[tuple[list[dict[str, Any]], dict]] = None,
) -> dict[str, Any]:
  """Trains ``config`` in ``workdir`` (resuming if possible) and tests it.

  Args:
    config: the experiment configuration.
    workdir: where checkpoints, metrics, results and the report go.
    examples_and_info: already loaded examples (tests, notebooks); by default
      they are read from the TFDS dataset of ``config.dataset``.

  Returns:
    The final results (also written to ``workdir/results.json``).
  """
  parallel.maybe_initialize_distributed(config.get("multihost", False))
  os.makedirs(workdir, exist_ok=True)
  is_main = jax.process_index() == 0
  devices = parallel.local_devices(config.num_devices)
  num_devices = len(devices)
  num_processes = jax.process_count()
  logging.info(
      "process %d/%d, %d local %s devices",
      jax.process_index(), num_processes, num_devices,
      devices[0].platform,
  )
  method = methods_lib.get_method(config)
  validation.validate_config(config, method)
  data = method.create_data(
      config, num_devices=num_devices, examples_and_info=examples_and_info
  )
  model = method.create_model(config, data.vocabularies)
  task = method.create_task(config, model, data)
  class_names = {t: method.class_names(data, t) for t in task.task_names}
  num_classes = {t: len(v) for t, v in class_names.items()}
  rng = jax.random.key(config.seed)
  init_rng, loop_rng = jax.random.split(rng)
  use_gradnorm = gradnorm_enabled(config, len(task.task_names))
  gradnorm_tx = (
      optax.adam(config.gradnorm.learning_rate) if use_gradnorm else None
  )
  example = next(iter(data.eval_batches("train")))
  state = create_train_state(
      config, model, task, example, init_rng, gradnorm_tx, num_classes
  )
  if hasattr(method, "adapt_initial_state"):
    # E.g. transfer learning: load pretrained weights, replace a head.
    state = method.adapt_initial_state(config, state)
  if num_processes > 1:
    # Host copies: what every process saves, restores and replicates.
    state = jax.device_get(state)
  checkpointer = ckpt_lib.Checkpointer(workdir)
  meta = {"epoch": -1, "best_metric": None, "best_epoch": -1, "bad_epochs": 0}
  restored = checkpointer.restore_latest(ckpt_lib.abstract_like(state))
  if restored is not None:
    state, meta = restored
    logging.info("resumed from epoch %d (step %d)", meta["epoch"],
                 int(state.step))
  # Several processes: one pmap over every process's devices (psum across
  # processes), even with one device each.
  use_pmap = num_devices > 1 or num_processes > 1
  train_fn, eval_fn = steps_lib.compile_steps(
      task,
      gradnorm_alpha=config.gradnorm.alpha if use_gradnorm else 0.0,
      gradnorm_tx=gradnorm_tx,
      num_devices=num_devices,
      devices=parallel.pmap_devices(num_devices) if use_pmap else None,
  )
  run_state = parallel.replicate(state, devices) if use_pmap else state
  writer = writers.MetricWriter(workdir, enabled=is_main)
  eval_kwargs = dict(
      tasks=task.task_names, class_names=class_names,
      aux_names=steps_lib.aux_names(task),
      aux_weights=tuple(np.asarray(steps_lib.aux_weights(task)).tolist()),
  )
  selection = config.selection_metric
  # Losses (val/loss, val/loss_<term>) are minimised, the rest maximised.
  metric_name = selection.rsplit("/", 1)[-1]
  higher_is_better = not (
      metric_name == "loss" or metric_name.startswith("loss_")
  )
  timing = {"train_seconds": 0.0, "train_items": 0}
  try:
    for epoch in range(meta["epoch"] + 1, config.num_epochs):
      epoch_start = time.time()
      step_metrics = []
      batches = data.train_batches(
          epoch, num_devices=num_devices, **_shard()
      )
      for batch in tqdm.tqdm(
          batches, desc=f"epoch {epoch}", leave=False, disable=not is_main
      ):
        run_state, metrics = train_fn(run_state, batch, loop_rng)
        step_metrics.append(metrics)
        timing["train_items"] += method.num_items(batch)
      step_metrics = (
          parallel.local_values(step_metrics) if num_processes > 1
          else _to_host(step_metrics)
      )
      if use_pmap:
        step_metrics = [
            jax.tree_util.tree_map(lambda x: x[0], m) for m in step_metrics
        ]
      losses = np.asarray([m["loss"] for m in step_metrics])
      grad_norms = np.asarray([m["grad_norm"] for m in step_metrics])
      finite = np.isfinite(losses) & np.isfinite(grad_norms)
      if not np.all(finite):
        bad = int(np.argmax(~finite))
        raise NonFiniteLossError(
            f"epoch {epoch}: training became non-finite at batch {bad} "
            f"(loss {losses[bad]}, gradient norm {grad_norms[bad]}); the "
            "last good checkpoint is kept in "
            f"{os.path.join(workdir, 'checkpoints', 'latest')} (check the "
            "input data for NaN, lower config.learning_rate or set "
            "config.grad_clip_norm)"
        )
      timing["train_seconds"] += time.time() - epoch_start
      host_state = parallel.unreplicate(run_state) if use_pmap else run_state
      step = int(host_state.step)
      for i, m in enumerate(step_metrics):
        if (step - len(step_metrics) + i + 1) % config.log_every_steps == 0:
          writer.write_scalars(
              step - len(step_metrics) + i + 1,
              {f"train/{k}": v for k, v in m.items()},
          )
      val, _ = evaluate(
          eval_fn, run_state, data, "val", num_devices=num_devices,
          **eval_kwargs,
      )
      scalars = _flat_scalars("val", val)
      scalars["epoch"] = epoch
      scalars["train/epoch_loss"] = float(losses.mean())
      writer.write_scalars(step, scalars)
      if selection not in scalars:
        raise ValueError(
            f"config.selection_metric={selection!r}: not among the "
            f"validation metrics {sorted(k for k in scalars if k != 'epoch')}"
        )
      metric = scalars[selection]
      # A NaN epoch (e.g. an AUC of a split with one class) never counts as
      # an improvement: the best checkpoint stays the last finite one.
      improved = bool(np.isfinite(metric)) and (
          meta["best_metric"] is None or (
              metric > meta["best_metric"]
              if higher_is_better
              else metric < meta["best_metric"]
          )
      )
      meta["epoch"] = epoch
      if improved:
        meta.update(best_metric=float(metric), best_epoch=epoch, bad_epochs=0)
        checkpointer.save_best(step, host_state, dict(meta))
      else:
        meta["bad_epochs"] += 1
      checkpointer.save_latest(step, host_state, dict(meta))
      logging.info(
          "epoch %d step %d loss %.4f val %s %.4f (best %s @ %d)",
          epoch, step, losses.mean(), selection, metric,
          meta["best_metric"], meta["best_epoch"],
      )
      patience = config.early_stopping_patience
      if patience and meta["bad_epochs"] >= patience:
        logging.info("early stopping after epoch %d", epoch)
        break
    checkpointer.wait_until_finished()
    host_state = parallel.unreplicate(run_state) if use_pmap else run_state
    best = checkpointer.restore_best(ckpt_lib.abstract_like(host_state))
    if best is None:
      logging.warning(
          "no epoch had a finite %s: evaluating the last state", selection
      )
    final_state = best[0] if best is not None else host_state
    eval_state = (
        parallel.replicate(final_state, devices) if use_pmap else final_state
    )
    results: dict[str, Any] = {"config": config.to_dict(), "meta": meta}
    raw_outputs = {}
    for split in ("val", "test"):
      if len(data.splits[split]):
        results[split], raw_outputs[split] = evaluate(
            eval_fn, eval_state, data, split, num_devices=num_devices,
            **eval_kwargs,
        )
    results["splits"] = {k: len(v) for k, v in data.splits.items()}
    results["build_report"] = data.info.get("build_report", {})
    # The label vocabularies the model's heads index (``mammojax.predict``
    # rebuilds the model from them).
    results["vocabularies"] = {
        k: list(v) for k, v in data.vocabularies.items()
    }
    results["timing"] = {
        **timing,
        "train_items_per_second": timing["train_items"]
        / max(timing["train_seconds"], 1e-9),
        "devices": num_devices * num_processes,
        "processes": num_processes,
        "platform": devices[0].platform,
    }
    if is_main:
      writers.write_json(os.path.join(workdir, "results.json"), results)
      try:
        method.write_report(
            workdir, config, data, results, raw_outputs, final_state
        )
      except Exception as e:  # pylint: disable=broad-except
        # The report is a convenience: never lose the results because of it.
        logging.exception("could not write the run report: %s", e)
        results["report_error"] = repr(e)
    return results
  finally:
    writer.close()
    checkpointer.close()
