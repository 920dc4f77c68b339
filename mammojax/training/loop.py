"""``train_and_evaluate``: the training loop shared by the graph methods.

Python control flow (epochs, evaluation, checkpoints, early stopping, logging)
lives here; the numerics live in the jitted / pmapped steps of ``steps.py``.
"""

import json
import os
import time
from typing import Any, Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import tqdm

from mammojax.data import pipeline
from mammojax.models import mtgcn as mtgcn_lib
from mammojax.objectives import gradnorm as gradnorm_lib
from mammojax.training import checkpoints as ckpt_lib
from mammojax.training import metrics as metrics_lib
from mammojax.training import mtgcn_task
from mammojax.training import parallel
from mammojax.training import state as state_lib
from mammojax.training import steps as steps_lib
from mammojax.training import writers

_TASK_FIELDS = {"node": "morphology", "graph": "distribution"}


class NonFiniteLossError(FloatingPointError):
  """The training loss became NaN or infinite."""


def create_model(config: ml_collections.ConfigDict, vocabularies) -> Any:
  """Instantiates ``config.model_name`` with ``config.model`` kwargs."""
  if config.model_name != "MTGCN":
    raise ValueError(
        f"config.model_name={config.model_name!r}: expected MTGCN"
    )
  kwargs = dict(config.model)
  return mtgcn_lib.MTGCN(
      num_node_classes=(
          len(vocabularies["morphology"]) if "node" in config.tasks else 0
      ),
      num_graph_classes=(
          len(vocabularies["distribution"]) if "graph" in config.tasks else 0
      ),
      graph_types=tuple(config.graph.types),
      **kwargs,
  )


def _class_weights(config, data: pipeline.GraphData) -> dict[str, np.ndarray]:
  if config.class_weighting == "none":
    return {}
  if config.class_weighting != "inverse":
    raise ValueError(
        f"config.class_weighting={config.class_weighting!r}: expected none "
        "or inverse"
    )
  out = {}
  for task in config.tasks:
    counts = data.class_counts("train", task).astype(np.float64)
    w = np.where(counts > 0, counts.sum() / np.maximum(counts, 1), 0.0)
    out[task] = (w / max(w[counts > 0].mean(), 1e-12)).astype(np.float32)
  return out


def create_train_state(
    config: ml_collections.ConfigDict,
    model: Any,
    task: mtgcn_task.MTGCNTask,
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
  tx = state_lib.create_optimizer(config, steps_per_epoch=1)
  num_tasks = len(config.tasks)
  gradnorm_state = None
  if config.gradnorm.enabled and num_tasks > 1:
    initial = None
    if config.gradnorm.initial_loss == "log_num_classes":
      initial = jnp.log(
          jnp.asarray([num_classes[t] for t in config.tasks], jnp.float32)
      )
    elif config.gradnorm.initial_loss != "first":
      raise ValueError(
          f"config.gradnorm.initial_loss={config.gradnorm.initial_loss!r}: "
          "expected first or log_num_classes"
      )
    gradnorm_state = gradnorm_lib.init_state(
        num_tasks, gradnorm_tx, initial_losses=initial
    )
  if len(config.task_weights) < num_tasks:
    raise ValueError(
        f"config.task_weights={tuple(config.task_weights)}: expected one "
        f"weight per task {tuple(config.tasks)}"
    )
  return state_lib.TrainState.create(
      apply_fn=model.apply,
      params=params,
      tx=tx,
      model_state=model_state,
      gradnorm=gradnorm_state,
      task_weights=jnp.asarray(config.task_weights[:num_tasks], jnp.float32),
  )


def _to_host(tree):
  return jax.tree_util.tree_map(np.asarray, jax.device_get(tree))


def evaluate(
    eval_fn, state, data: pipeline.GraphData, split: str, *, num_devices: int,
    tasks, vocabularies,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
  """Runs ``split`` through the model; returns metrics and raw outputs."""
  collected: dict[str, list[np.ndarray]] = {}
  loss_sums = 0.0
  loss_norms = 0.0
  for batch in data.eval_batches(split, num_devices=num_devices):
    out = _to_host(eval_fn(state, batch))
    if num_devices > 1:
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
  task_losses = np.asarray(loss_sums) / np.maximum(loss_norms, 1e-12)
  results["loss"] = float(np.sum(task_losses))
  aucs = []
  for i, task in enumerate(tasks):
    results[f"loss_{task}"] = float(task_losses[i])
    mask = raw[f"{task}_mask"] & (raw[f"{task}_labels"] >= 0)
    report = metrics_lib.classification_report(
        raw[f"{task}_labels"][mask],
        raw[f"{task}_probs"][mask],
        class_names=vocabularies[_TASK_FIELDS[task]],
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
  logging.info(
      "process %d/%d, %d local %s devices",
      jax.process_index(), jax.process_count(), num_devices,
      devices[0].platform,
  )
  data = pipeline.create_graph_data(
      config, num_devices=num_devices, examples_and_info=examples_and_info
  )
  vocabularies = data.vocabularies
  num_classes = {
      t: len(vocabularies[_TASK_FIELDS[t]]) for t in ("node", "graph")
  }
  if config.distill.teachers:
    from mammojax.training import distill  # pylint: disable=g-import-not-at-top

    distill.attach_teacher_logits(config, data)
  model = create_model(config, vocabularies)
  task = mtgcn_task.MTGCNTask(
      model,
      tasks=config.tasks,
      graph_types=config.graph.types,
      class_weights=_class_weights(config, data),
      gradnorm_layer=config.gradnorm.layer,
      distill_temperature=config.distill.temperature,
      distill_alpha=config.distill.alpha if config.distill.teachers else 0.0,
  )
  rng = jax.random.key(config.seed)
  init_rng, loop_rng = jax.random.split(rng)
  gradnorm_tx = optax.adam(config.gradnorm.learning_rate)
  example = next(iter(data.eval_batches("train")))
  state = create_train_state(
      config, model, task, example, init_rng, gradnorm_tx, num_classes
  )
  checkpointer = ckpt_lib.Checkpointer(workdir)
  meta = {"epoch": -1, "best_metric": None, "best_epoch": -1, "bad_epochs": 0}
  restored = checkpointer.restore_latest(ckpt_lib.abstract_like(state))
  if restored is not None:
    state, meta = restored
    logging.info("resumed from epoch %d (step %d)", meta["epoch"],
                 int(state.step))
  use_pmap = num_devices > 1
  train_fn, eval_fn = steps_lib.compile_steps(
      task,
      gradnorm_alpha=config.gradnorm.alpha,
      gradnorm_tx=gradnorm_tx,
      num_devices=num_devices,
      devices=devices if use_pmap else None,
  )
  run_state = parallel.replicate(state, devices) if use_pmap else state
  writer = writers.MetricWriter(workdir, enabled=is_main)
  selection = config.selection_metric
  higher_is_better = not selection.endswith("loss")
  timing = {"train_seconds": 0.0, "train_graphs": 0}
  try:
    for epoch in range(meta["epoch"] + 1, config.num_epochs):
      epoch_start = time.time()
      step_metrics = []
      batches = data.train_batches(epoch, num_devices=num_devices)
      for batch in tqdm.tqdm(
          batches, desc=f"epoch {epoch}", leave=False, disable=not is_main
      ):
        run_state, metrics = train_fn(run_state, batch, loop_rng)
        step_metrics.append(metrics)
        timing["train_graphs"] += int(
            np.sum(np.asarray(batch[config.graph.types[0]].globals["mask"]))
        )
      step_metrics = _to_host(step_metrics)
      if use_pmap:
        step_metrics = [
            jax.tree_util.tree_map(lambda x: x[0], m) for m in step_metrics
        ]
      losses = np.asarray([m["loss"] for m in step_metrics])
      if not np.all(np.isfinite(losses)):
        bad = int(np.argmax(~np.isfinite(losses)))
        raise NonFiniteLossError(
            f"epoch {epoch}: training loss became {losses[bad]} at batch "
            f"{bad}; the last good checkpoint is kept in "
            f"{os.path.join(workdir, 'checkpoints', 'latest')} (try a "
            "lower config.learning_rate or set config.grad_clip_norm)"
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
          tasks=config.tasks, vocabularies=vocabularies,
      )
      scalars = _flat_scalars("val", val)
      scalars["epoch"] = epoch
      scalars["train/epoch_loss"] = float(losses.mean())
      writer.write_scalars(step, scalars)
      metric = scalars.get(selection)
      if metric is None or not np.isfinite(metric):
        metric = -val["loss"] if higher_is_better else val["loss"]
      improved = meta["best_metric"] is None or (
          metric > meta["best_metric"]
          if higher_is_better
          else metric < meta["best_metric"]
      )
      meta["epoch"] = epoch
      if improved:
        meta.update(best_metric=float(metric), best_epoch=epoch, bad_epochs=0)
        checkpointer.save_best(step, host_state, dict(meta))
      else:
        meta["bad_epochs"] += 1
      checkpointer.save_latest(step, host_state, dict(meta))
      logging.info(
          "epoch %d step %d loss %.4f val %s %.4f (best %.4f @ %d)",
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
            tasks=config.tasks, vocabularies=vocabularies,
        )
    results["splits"] = {k: len(v) for k, v in data.splits.items()}
    results["build_report"] = data.info.get("build_report", {})
    results["timing"] = {
        **timing,
        "train_graphs_per_second": timing["train_graphs"]
        / max(timing["train_seconds"], 1e-9),
        "devices": num_devices,
        "platform": devices[0].platform,
    }
    if is_main:
      writers.write_json(os.path.join(workdir, "results.json"), results)
      try:
        from mammojax.reporting import run_report  # pylint: disable=g-import-not-at-top

        run_report.write_run_report(
            workdir, config, data, results, raw_outputs
        )
      except Exception as e:  # pylint: disable=broad-except
        # The report is a convenience: never lose the results because of it.
        logging.exception("could not write the run report: %s", e)
        results["report_error"] = repr(e)
    return results
  finally:
    writer.close()
    checkpointer.close()
