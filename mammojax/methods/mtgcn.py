"""MT-GCN: morphology (node task) and distribution (graph task) of clusters.

The method of "Automatic Calcification Morphology and Distribution
Classification for Breast Mammograms With Multi-Task Graph Convolutional
Neural Network"
(MT-GCN, Du et al., IEEE JBHI 2023): per calcification cluster, KNN and radius
graphs over the calcifications, a deep GENConv res+ network per graph type,
fused, with a node head (morphology) and a graph head (distribution),
balanced by GradNorm; task-specific teachers can be distilled into the
multi-task student.

Loss definition (``MTGCNTask``, the ``Task`` of ``mammojax.training.steps``):
per task, the class-weighted cross-entropy *sum* over the real, labelled
items of a padded batch (``objectives.losses.cross_entropy_terms``); with
teachers (``config.distill.teachers``) each head mixes the soft-target term
``alpha * T^2 * CE(teacher / T, student / T)`` with ``(1 - alpha)`` times
the hard-label term (Hinton et al., 2015; ``objectives.distillation``).

Prediction (``predict_images``, the hook of ``python -m mammojax.predict``):
each image is read as in training (``load_dicom(orient=True, crop=False)``:
full resolution, laterality-normalised), its calcifications come from the
run's detector or an annotations file and are clustered
(``mammojax.inference.calcifications``), each cluster becomes the KNN and
radius graphs of training, and the model runs once per padded budget
(clusters bucketed by node count, powers of two from 64; power-of-two node
/ edge budgets of ``config.batch_size`` clusters per bucket, so one
compilation per budget, clusters of all images of a chunk batched).

Teachers are earlier runs of the same command (``configs/mtgcn.py:
teacher_node`` / ``:teacher_graph``): their logits for every example are
computed once (graphs have no random augmentation) and stored as
``nodes['teacher_logits']`` / ``globals['teacher_logits']`` of the samples.
"""

import json
import math
import os
from typing import Any, Optional, Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mammojax.data import batching
from mammojax.data import calcifications as calcs_lib
from mammojax.data import graph_data
from mammojax.data import graphs as graphs_lib
from mammojax.inference import calcifications as calc_inference
from mammojax.inference import run as run_lib
from mammojax.models import mtgcn as mtgcn_lib
from mammojax.objectives import distillation
from mammojax.objectives import losses
from mammojax.reporting import mtgcn as report_lib
from mammojax.training import checkpoints
from mammojax.training import metrics
from mammojax.training import validation

# task -> (batch container of its labels, model output, vocabulary).
TASKS = {
    "node": ("nodes", "node_logits", "morphology"),
    "graph": ("globals", "graph_logits", "distribution"),
}
GRADNORM_LAYERS = ("fusion", "first_conv")


class MTGCNTask:
  """Loss definition of MT-GCN for the shared steps."""

  def __init__(
      self,
      model: nn.Module,
      *,
      tasks: Sequence[str],
      graph_types: Sequence[str],
      class_weights: Optional[dict[str, np.ndarray]] = None,
      gradnorm_layer: str = "fusion",
      distill_temperature: float = 0.0,
      distill_alpha: float = 0.0,
  ):
    for task in tasks:
      if task not in TASKS:
        raise ValueError(
            f"config.tasks: unknown task {task!r}; expected node and/or graph"
        )
    if gradnorm_layer not in GRADNORM_LAYERS:
      raise ValueError(
          f"config.gradnorm.layer={gradnorm_layer!r}: expected fusion (the "
          "paper's last shared layer) or first_conv (the authors' code)"
      )
    self.model = model
    self.task_names = tuple(tasks)
    self.graph_types = tuple(graph_types)
    self.class_weights = {
        k: jnp.asarray(v, jnp.float32)
        for k, v in (class_weights or {}).items()
        if v is not None
    }
    self.gradnorm_layer_name = gradnorm_layer
    self.distill_temperature = float(distill_temperature)
    self.distill_alpha = float(distill_alpha)

  def _targets(self, batch, task):
    g = batch[self.graph_types[0]]
    container = g.nodes if task == "node" else g.globals
    valid = jnp.logical_and(container["mask"], container["label"] >= 0)
    return container["label"], valid, container

  def normalisers(self, batch) -> jax.Array:
    """Sum of the class weights of the labelled real items, per task."""
    out = []
    for task in self.task_names:
      labels, valid, _ = self._targets(batch, task)
      w = losses.item_weights(labels, valid, self.class_weights.get(task))
      out.append(jnp.sum(w))
    return jnp.stack(out)

  def apply(self, params, model_state, batch, rng, *, train: bool):
    """Runs the model; returns ``(outputs, new_model_state)``."""
    variables = {"params": params, **model_state}
    if train:
      outputs, new_state = self.model.apply(
          variables,
          batch,
          train=True,
          rngs={"dropout": rng},
          mutable=list(model_state.keys()),
      )
      return outputs, dict(new_state)
    return self.model.apply(variables, batch, train=False), model_state

  def loss_sums(self, params, model_state, batch, rng, *, train: bool):
    """Per-task weighted CE sums ``[T]`` and ``(new_model_state, outputs)``."""
    outputs, new_state = self.apply(
        params, model_state, batch, rng, train=train
    )
    sums = []
    for task in self.task_names:
      labels, valid, container = self._targets(batch, task)
      logits = outputs[TASKS[task][1]]
      ce, w = losses.cross_entropy_terms(
          logits, labels, valid, self.class_weights.get(task)
      )
      loss = jnp.sum(ce)
      if self.distill_alpha > 0.0 and "teacher_logits" in container:
        t = self.distill_temperature
        soft = t * t * distillation.soft_target_terms(
            logits, container["teacher_logits"], t
        )
        soft_sum = jnp.sum(soft * w)
        loss = self.distill_alpha * soft_sum + (1 - self.distill_alpha) * loss
      sums.append(loss)
    return jnp.stack(sums), (new_state, outputs)

  def gradnorm_layer(self, params) -> Any:
    """W for GradNorm: the fusion projection or the first GENConv's MLP."""
    if self.gradnorm_layer_name == "fusion":
      return params["fusion"]["proj"]["kernel"]
    mlp = params["gcn"]["layer_0"]["conv"]["mlp"]
    last = sorted(k for k in mlp if k.startswith("Dense") or k.startswith("lin"))
    return mlp[last[-1]]["kernel"]

  def eval_outputs(self, outputs, batch) -> dict[str, jax.Array]:
    """Probabilities, labels and masks of both tasks for host metrics."""
    g = batch[self.graph_types[0]]
    out = {}
    if "node_logits" in outputs:
      out["node_probs"] = jax.nn.softmax(outputs["node_logits"])
      out["node_labels"] = g.nodes["label"]
      out["node_mask"] = g.nodes["mask"]
    if "graph_logits" in outputs:
      out["graph_probs"] = jax.nn.softmax(outputs["graph_logits"])
      out["graph_labels"] = g.globals["label"]
      out["graph_mask"] = g.globals["mask"]
    return out


# ----------------------------------------------------------------------------
# Teachers (knowledge distillation).


def _load_teacher(workdir: str):
  results_path = os.path.join(workdir, "results.json")
  if not os.path.exists(results_path):
    raise FileNotFoundError(
        f"config.distill.teachers: {results_path} not found; train the "
        "teacher first, e.g. python -m mammojax.main "
        "--config=configs/mtgcn.py:teacher_node --workdir=" + workdir
    )
  with open(results_path) as f:
    config = ml_collections.ConfigDict(json.load(f)["config"])
  variables = checkpoints.restore_best_variables(
      workdir, config_key="config.distill.teachers"
  )
  return config, variables


def attach_teacher_logits(config: ml_collections.ConfigDict, data: Any) -> None:
  """Computes every teacher's logits and stores them in ``data``'s samples."""
  all_indices = np.arange(len(data.examples))
  attached = set()
  for workdir in config.distill.teachers:
    t_config, variables = _load_teacher(workdir)
    model = create_model(t_config, data.vocabularies)
    missing = set(t_config.graph.types) - set(config.graph.types)
    if missing:
      raise ValueError(
          f"config.distill.teachers: teacher {workdir} uses graph types "
          f"{sorted(missing)} that config.graph.types lacks"
      )
    apply = jax.jit(lambda v, b: model.apply(v, b, train=False))
    node_logits, graph_logits = [], []
    for batch in data.batches(all_indices):
      out = jax.device_get(apply(variables, batch))
      first = batch[config.graph.types[0]]
      if "node_logits" in out:
        node_logits.append(np.asarray(out["node_logits"])[first.nodes["mask"]])
      if "graph_logits" in out:
        graph_logits.append(
            np.asarray(out["graph_logits"])[first.globals["mask"]]
        )
    sizes = [len(ex["morphology"]) for ex in data.examples]
    bounds = np.cumsum([0] + sizes)
    for task, chunks in (("node", node_logits), ("graph", graph_logits)):
      if not chunks:
        continue
      if task in attached:
        raise ValueError(
            f"config.distill.teachers: two teachers provide the {task} task"
        )
      attached.add(task)
      logits = np.concatenate(chunks).astype(np.float32)
      for i, sample in enumerate(data.sample_graphs):
        first = next(iter(sample.values()))
        if task == "node":
          # The node dict is shared by every graph type of the sample.
          first.nodes["teacher_logits"] = logits[bounds[i] : bounds[i + 1]]
        else:
          for g in sample.values():
            g.globals["teacher_logits"] = logits[i : i + 1]
    logging.info("attached teacher %s (tasks %s)", workdir, t_config.tasks)
  wanted = set(config.tasks)
  if not wanted <= attached:
    logging.warning(
        "config.distill.teachers give soft targets for %s only; tasks %s "
        "train on hard labels", sorted(attached), sorted(wanted - attached),
    )


# ----------------------------------------------------------------------------
# The loop's hooks.


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks MT-GCN's config values once, before any work."""
  tasks = tuple(config.tasks)
  if not tasks or len(set(tasks)) != len(tasks) or not set(tasks) <= set(TASKS):
    raise ValueError(
        f"config.tasks={tasks!r}: expected 'node' and/or 'graph', each once"
    )
  check = validation.check
  types = tuple(config.graph.types)
  if not types or not set(types) <= {"knn", "radius"}:
    raise ValueError(
        f"config.graph.types={types!r}: expected one or both of knn, radius"
    )
  check(config, "graph.knn_k", int, minimum=1)
  check(config, "graph.radius", float, minimum=0.0, exclusive=True)
  check(config, "graph.max_num_neighbors", int, minimum=1)
  check(config, "graph.budget", str, choices=("max", "mean"))
  check(config, "model.num_layers", int, minimum=1)
  check(config, "model.hidden_size", int, minimum=1)
  check(config, "model.dropout", float, minimum=0.0, maximum=1.0,
        exclusive_maximum=True)
  check(config, "model.dropout_bits", int, choices=(8, 16, 32),
        required=False)
  check(config, "class_weighting", str,
        choices=("none", "inverse", "effective"))
  check(config, "num_report_graphs", int, minimum=0)
  if config.get("gradnorm"):
    check(config, "gradnorm.layer", str, choices=GRADNORM_LAYERS)
  if config.distill.teachers:
    check(config, "distill.temperature", float, minimum=0.0, exclusive=True)
    check(config, "distill.alpha", float, minimum=0.0, maximum=1.0)


def create_data(config, *, num_devices, examples_and_info):
  """Graph data (+ teachers' soft targets with ``config.distill.teachers``)."""
  data = graph_data.create_graph_data(
      config, num_devices=num_devices, examples_and_info=examples_and_info
  )
  if config.distill.teachers:
    attach_teacher_logits(config, data)
  return data


def create_model(config, vocabularies) -> nn.Module:
  """``models.mtgcn.MTGCN`` with one head per task of ``config.tasks``."""
  return mtgcn_lib.MTGCN(
      num_node_classes=(
          len(vocabularies["morphology"]) if "node" in config.tasks else 0
      ),
      num_graph_classes=(
          len(vocabularies["distribution"]) if "graph" in config.tasks else 0
      ),
      graph_types=tuple(config.graph.types),
      **dict(config.model),
  )


def create_task(config, model, data) -> MTGCNTask:
  """The loss definition for ``config``."""
  gradnorm = config.get("gradnorm") or {}
  return MTGCNTask(
      model,
      tasks=config.tasks,
      graph_types=config.graph.types,
      class_weights=losses.class_weights_by_task(
          config.class_weighting,
          {t: data.class_counts("train", t) for t in config.tasks},
      ),
      gradnorm_layer=gradnorm.get("layer", "fusion"),
      distill_temperature=config.distill.temperature,
      distill_alpha=config.distill.alpha if config.distill.teachers else 0.0,
  )


def class_names(data, task: str) -> list[str]:
  """The morphology (node) or distribution (graph) vocabulary."""
  return list(data.vocabularies[TASKS[task][2]])


def num_items(batch) -> int:
  """Real graphs in a host batch."""
  first = next(iter(batch.values()))
  return int(np.sum(np.asarray(first.globals["mask"])))


def write_report(workdir, config, data, results, raw_outputs, state) -> None:
  """ROC / confusion / GradNorm figures, graphs on crops, ``report.md``."""
  del state
  report_lib.write_run_report(workdir, config, data, results, raw_outputs,
                              metrics.classification_report)


# ----------------------------------------------------------------------------
# Prediction (python -m mammojax.predict).


def _pow2(value: int, minimum: int = 64) -> int:
  return max(minimum, 1 << int(math.ceil(math.log2(max(value, 1)))))


def _probabilities(logits: np.ndarray) -> np.ndarray:
  z = logits - logits.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def predict_images(run, sources, *, timer, annotations=None,
                   detector_overrides=None, progress=True):
  """Per-calcification morphology and per-cluster distribution of images.

  Args:
    run: the restored run (``inference.run.Run``).
    sources: DICOM paths.
    timer: ``inference.results.Timer`` (ingestion, detection, graphs,
      model).
    annotations: an ``inference.calcifications.AnnotationIndex`` to take
      calcifications from instead of the detector.
    detector_overrides: ``DetectorOptions`` fields to override.
    progress: show a progress bar.

  Returns:
    One ``inference.results.ImagePrediction`` per source, in order.
  """
  config = run.config
  gcfg = config.graph
  graph_types = tuple(gcfg.types)
  predictions, found = calc_inference.read_and_find(
      sources, config, timer=timer, annotations=annotations,
      detector_overrides=detector_overrides, progress=progress)
  samples, owners = [], []
  with timer.stage("graphs"):
    for image in found:
      patches = calcs_lib.extract_patches(
          image.mammogram.image, image.centers_xy, image.patch_size
      ).astype(np.float32)
      coords = calcs_lib.normalise_coords(
          image.centers_xy, image.mammogram.image.shape).astype(np.float32)
      for k, members in enumerate(image.clusters):
        samples.append(graphs_lib.build_sample_graphs(
            {"id": f"{image.prediction.source}/c{k}",
             "nodes": {"patches": patches[members], "coords": coords[members],
                       "label": np.full(len(members), -1, np.int32)},
             "label": -1},
            graph_types=graph_types, knn_k=gcfg.knn_k, radius=gcfg.radius,
            max_num_neighbors=gcfg.max_num_neighbors))
        owners.append((image.prediction, k, members))
  if samples:
    with timer.stage("model"):
      outputs = _apply_model(run, samples, graph_types)
    _fill_probabilities(run, owners, outputs)
  return predictions


_JITTED: dict[str, Any] = {}
# (run key, node bucket) -> the largest budget compiled so far.
_BUDGETS: dict[Any, Any] = {}


def _jitted_apply(run):
  """``(key, model, jitted eval apply)`` of a run's config, built once per
  process (repeated predict calls reuse the compilations)."""
  key = json.dumps([run.config_hash, run.vocabularies], sort_keys=True)
  if key not in _JITTED:
    model = create_model(run.config, run.vocabularies)
    _JITTED[key] = (
        model, jax.jit(lambda v, b: model.apply(v, b, train=False)))
  return (key,) + _JITTED[key]


def _apply_model(run, samples, graph_types):
  """Per sample ``(node_probs [n, C] | None, graph_probs [C] | None)``."""
  key, model, apply = _jitted_apply(run)
  batch_size = int(run.config.batch_size)
  buckets: dict[int, list[int]] = {}
  for i, s in enumerate(samples):
    n = int(np.sum(next(iter(s.values())).n_node))
    buckets.setdefault(_pow2(n, 64), []).append(i)
  variables = None
  out: list[Any] = [None] * len(samples)
  for bucket, members in sorted(buckets.items()):
    group = [samples[i] for i in members]
    budget = batching.estimate_budget(
        group, batch_size, graph_types=graph_types, strategy="max")
    budget = batching.Budget(
        n_node=_pow2(budget.n_node),
        n_edge={t: _pow2(e) for t, e in budget.n_edge.items()},
        n_graph=budget.n_graph)
    # Reuse a compiled budget of this bucket that holds the new one.
    used = _BUDGETS.get((key, bucket))
    if used is not None and budget.n_node <= used.n_node and all(
        budget.n_edge[t] <= used.n_edge[t] for t in budget.n_edge):
      budget = used
    elif used is not None:
      budget = batching.Budget(
          n_node=max(budget.n_node, used.n_node),
          n_edge={t: max(budget.n_edge[t], used.n_edge[t])
                  for t in budget.n_edge},
          n_graph=budget.n_graph)
    _BUDGETS[(key, bucket)] = budget
    position = 0
    for batch in batching.batch_iterator(group, budget,
                                         batch_size=batch_size):
      if variables is None:
        variables = run_lib.check_variables(run, model, batch, train=False)
      result = jax.device_get(apply(variables, batch))
      first = batch[graph_types[0]]
      num_graphs = int(np.sum(first.globals["mask"]))
      sizes = np.asarray(first.n_node)[:num_graphs]
      node = (_probabilities(np.asarray(result["node_logits"], np.float64))
              if "node_logits" in result else None)
      graph = (_probabilities(np.asarray(result["graph_logits"], np.float64))
               if "graph_logits" in result else None)
      start = 0
      for g in range(num_graphs):
        out[members[position]] = (
            None if node is None else node[start:start + sizes[g]],
            None if graph is None else graph[g])
        start += int(sizes[g])
        position += 1
  return out


def _fill_probabilities(run, owners, outputs):
  morph = list(run.vocabularies["morphology"])
  dist = list(run.vocabularies["distribution"])
  for (pred, k, members), (node, graph) in zip(owners, outputs):
    if node is not None:
      for row, i in zip(node, members):
        calc = pred.calcifications[int(i)]
        calc["morphology"] = {m: float(p) for m, p in zip(morph, row)}
        calc["predicted_morphology"] = morph[int(np.argmax(row))]
    if graph is not None:
      cl = pred.clusters[k]
      cl["distribution"] = {d: float(p) for d, p in zip(dist, graph)}
      cl["predicted_distribution"] = dist[int(np.argmax(graph))]
