"""MT-GCN losses: node (morphology) and graph (distribution) tasks.

Implements the ``Task`` protocol of ``mammojax.training.steps``: per-task
class-weighted cross-entropy *sums* over the real, labelled items of a padded
batch, optionally mixed with knowledge distillation from teachers' soft
targets stored in the batch (``nodes['teacher_logits']``,
``globals['teacher_logits']``).
"""

from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

_TASK_KEYS = {
    "node": ("nodes", "node_logits"),
    "graph": ("globals", "graph_logits"),
}


def _valid_labels(labels: jax.Array, mask: jax.Array) -> jax.Array:
  return jnp.logical_and(mask, labels >= 0)


def cross_entropy_terms(
    logits: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    class_weights: Optional[jax.Array],
) -> tuple[jax.Array, jax.Array]:
  """Per-item CE and its weights, zero where not ``valid``.

  The weighted mean ``sum(w * ce) / sum(w)`` equals torch's
  ``CrossEntropyLoss(weight=class_weights)``.
  """
  safe = jnp.where(valid, labels, 0)
  log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
  ce = -jnp.take_along_axis(log_probs, safe[:, None], axis=-1)[:, 0]
  w = valid.astype(jnp.float32)
  if class_weights is not None:
    w = w * class_weights[safe]
  return ce * w, w


def soft_cross_entropy(
    student_logits: jax.Array, teacher_logits: jax.Array, temperature: float
) -> jax.Array:
  """``T^2 * CE(softmax(teacher / T), log_softmax(student / T))`` per item."""
  t = temperature
  targets = jax.nn.softmax(teacher_logits.astype(jnp.float32) / t)
  log_probs = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t)
  return -(t * t) * jnp.sum(targets * log_probs, axis=-1)


class MTGCNTask:
  """Loss definition of MT-GCN for the generic steps."""

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
      if task not in _TASK_KEYS:
        raise ValueError(
            f"config.tasks: unknown task {task!r}; expected node and/or graph"
        )
    if gradnorm_layer not in ("fusion", "first_conv"):
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

  def _first(self, batch):
    return batch[self.graph_types[0]]

  def _targets(self, batch, task):
    g = self._first(batch)
    container = g.nodes if task == "node" else g.globals
    return container["label"], container["mask"], container

  def normalisers(self, batch) -> jax.Array:
    """Sum of the class weights of the labelled real items, per task."""
    out = []
    for task in self.task_names:
      labels, mask, _ = self._targets(batch, task)
      valid = _valid_labels(labels, mask)
      w = valid.astype(jnp.float32)
      if task in self.class_weights:
        w = w * self.class_weights[task][jnp.where(valid, labels, 0)]
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
      labels, mask, container = self._targets(batch, task)
      logits = outputs[_TASK_KEYS[task][1]]
      valid = _valid_labels(labels, mask)
      ce, w = cross_entropy_terms(
          logits, labels, valid, self.class_weights.get(task)
      )
      loss = jnp.sum(ce)
      if self.distill_alpha > 0.0 and "teacher_logits" in container:
        soft = soft_cross_entropy(
            logits, container["teacher_logits"], self.distill_temperature
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
    g = self._first(batch)
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


_TASK_FIELDS = {"node": "morphology", "graph": "distribution"}


def class_weights_for(config, data) -> dict[str, np.ndarray]:
  """Per-class CE weights from training counts (``config.class_weighting``)."""
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


class MTGCNMethod:
  """MT-GCN's hooks for the shared training loop."""

  def create_data(self, config, *, num_devices, examples_and_info):
    from mammojax.data import pipeline  # pylint: disable=g-import-not-at-top

    data = pipeline.create_graph_data(
        config, num_devices=num_devices, examples_and_info=examples_and_info
    )
    if config.distill.teachers:
      from mammojax.training import distill  # pylint: disable=g-import-not-at-top

      distill.attach_teacher_logits(config, data)
    return data

  def create_model(self, config, vocabularies):
    from mammojax.models import mtgcn as mtgcn_lib  # pylint: disable=g-import-not-at-top

    if config.model_name != "MTGCN":
      raise ValueError(
          f"config.model_name={config.model_name!r}: expected MTGCN"
      )
    return mtgcn_lib.MTGCN(
        num_node_classes=(
            len(vocabularies["morphology"]) if "node" in config.tasks else 0
        ),
        num_graph_classes=(
            len(vocabularies["distribution"])
            if "graph" in config.tasks
            else 0
        ),
        graph_types=tuple(config.graph.types),
        **dict(config.model),
    )

  def create_task(self, config, model, data):
    return MTGCNTask(
        model,
        tasks=config.tasks,
        graph_types=config.graph.types,
        class_weights=class_weights_for(config, data),
        gradnorm_layer=config.gradnorm.layer,
        distill_temperature=config.distill.temperature,
        distill_alpha=config.distill.alpha if config.distill.teachers else 0.0,
    )

  def class_names(self, data, task):
    return list(data.vocabularies[_TASK_FIELDS[task]])

  def num_items(self, batch) -> int:
    first = next(iter(batch.values()))
    return int(np.sum(np.asarray(first.globals["mask"])))

  def write_report(self, workdir, config, data, results, raw_outputs, state):
    del state
    from mammojax.reporting import run_report  # pylint: disable=g-import-not-at-top

    run_report.write_run_report(workdir, config, data, results, raw_outputs)
