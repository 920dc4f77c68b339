"""CNN baselines of the MT-GCN paper (Table 1) on the shared trainer.

The method ``cnn_baseline`` (``config.method``) trains one of the
``mammojax.models.cnn`` backbones (``config.baseline.model``: ResNet,
DenseNet, MobileNetV2, ShuffleNetV2) as a plain image classifier on the
calcification-cluster datasets, at one of two levels
(``config.baseline.level``):

* ``image``: input = the cluster's mammogram ``crop`` (uint8 ``[C, C]``)
  resized to ``config.baseline.image_size``; target = the cluster's
  distribution. Evaluated as the graph-level task ``graph``.
* ``patch``: input = every calcification's ``patches`` entry (float ``[M, M]``
  in [0, 1]) resized to ``config.baseline.patch_size``; target = its
  morphology. Evaluated as the node-level task ``node``.

The task names and class names (the dataset's ``distribution`` /
``morphology`` vocabularies) are MT-GCN's, so results, the ablation table and
the report read the same keys. Splits are MT-GCN's patient-wise splits of the
clusters (``pipeline.cluster_splits``, same ``config.dataset`` fields, k-fold
included); a patch belongs to the split of its cluster, so no patient is in
two splits. Items with an unknown label (-1) are left out (counted in the
log). ``data.splits`` holds the *items* of each split (clusters or patches),
``data.example_splits`` the clusters.

Training epochs are ``pipeline.epoch_order`` over the training items
(class-balanced resampling on the target when
``config.dataset.class_balanced``), filled up to whole batches, so a train
batch never holds padding (batch norm sees only real inputs); evaluation
batches are padded with masked items to the same fixed shape, and every real
item is evaluated exactly once. Batches are dicts of numpy arrays (``image``
float32 ``[B, S, S]``, ``label`` int32 ``[B]``, ``mask`` bool, ``index``
int32 = item index or -1), with a leading device axis ``[D, B / D, ...]``
when ``num_devices > 1``. Optional random flips (``config.baseline.flip``)
run inside the jitted train step on the step's key.
"""

import math
import os
from typing import Any, Optional

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mammojax.data import pipeline
from mammojax.models import cnn
from mammojax.training import mtgcn_task

LEVELS = {
    # level -> (task name, example field of the target, input description).
    "image": ("graph", "distribution", "the cluster crop"),
    "patch": ("node", "morphology", "each calcification patch"),
}
_HEADS = ("fc", "classifier", "classifier_1")


def check_level(config: ml_collections.ConfigDict) -> str:
  """``config.baseline.level``, validated."""
  level = config.get("baseline", {}).get("level")
  if level not in LEVELS:
    raise ValueError(
        f"config.baseline.level={level!r}: expected 'image' (cluster crop -> "
        "distribution, task 'graph') or 'patch' (calcification patch -> "
        "morphology, task 'node')"
    )
  task = LEVELS[level][0]
  tasks = tuple(config.get("tasks") or ())
  if tasks and tasks != (task,):
    raise ValueError(
        f"config.tasks={tasks!r} does not match config.baseline.level="
        f"{level!r}: expected ({task!r},)"
    )
  return level


def task_of(config: ml_collections.ConfigDict) -> str:
  """The evaluated task name: 'graph' (image level) or 'node' (patch)."""
  return LEVELS[check_level(config)][0]


# ----------------------------------------------------------------------------
# Data.


def resize_batch(images: np.ndarray, size: int) -> np.ndarray:
  """float ``[N, h, w]`` -> float32 ``[N, size, size]``.

  Area average when shrinking, linear interpolation when enlarging
  (``resample.resample_matrix``, pixel-centre grids).
  """
  from mammojax.data import resample  # pylint: disable=g-import-not-at-top

  images = np.asarray(images, np.float32)
  n, h, w = images.shape
  if (h, w) == (size, size):
    return images
  ry = resample.resample_matrix(h, size).toarray().astype(np.float32)
  rx = resample.resample_matrix(w, size).toarray().astype(np.float32)
  return np.einsum("ij,njk,lk->nil", ry, images, rx, optimize=True).astype(
      np.float32
  )


class BaselineData(pipeline.ArrayBatches):
  """In-memory inputs of one level, splits and fixed-shape batches."""

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      examples: list[dict[str, Any]],
      info: dict[str, Any],
      example_splits: dict[str, np.ndarray],
      images: np.ndarray,
      labels: np.ndarray,
      example_index: np.ndarray,
      node_index: np.ndarray,
      per_device_batch_size: int,
  ):
    self.config = config
    self.examples = examples
    self.info = info
    self.level = check_level(config)
    self.task, self.field, _ = LEVELS[self.level]
    self.example_splits = example_splits
    self.images = images
    self.labels = labels
    self.example_index = example_index
    self.node_index = node_index
    self.per_device_batch_size = per_device_batch_size
    in_split = {
        k: np.isin(example_index, v) for k, v in example_splits.items()
    }
    # The items (clusters or patches) of each split, in example order.
    self.splits = {
        k: np.flatnonzero(m).astype(np.int64) for k, m in in_split.items()
    }

  @property
  def vocabularies(self) -> dict[str, list[str]]:
    return self.info["vocabularies"]

  def class_counts(self, split: str, task: Optional[str] = None) -> np.ndarray:
    """Label counts of the items of ``split``."""
    if task is not None and task != self.task:
      raise ValueError(f"task {task!r}: this data holds task {self.task!r}")
    y = self.labels[self.splits[split]]
    return np.bincount(y, minlength=len(self.vocabularies[self.field]))

  def epoch_order(self, epoch: int) -> np.ndarray:
    """Training items of ``epoch``, filled up to whole global batches."""
    train = self.splits["train"]
    if not len(train):
      raise ValueError(
          "the training split is empty (config.dataset: too few patients "
          "for the test fraction / folds?)"
      )
    batch = self.config.batch_size
    return pipeline.epoch_order(
        train,
        self.labels[train],
        seed=self.config.seed,
        epoch=epoch,
        class_balanced=bool(self.config.dataset.class_balanced),
        size=math.ceil(len(train) / batch) * batch,
    )

  def _batch(self, indices: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """One batch of ``size`` items; missing ones are masked padding."""
    n = len(indices)
    idx = np.zeros(size, np.int64)
    idx[:n] = indices
    mask = np.arange(size) < n
    return {
        "image": self.images[idx] * mask[:, None, None],
        "label": np.where(mask, self.labels[idx], -1).astype(np.int32),
        "mask": mask,
        "index": np.where(mask, idx, -1).astype(np.int32),
    }



def _require(examples, keys, config):
  missing = [k for k in keys if k not in examples[0]]
  if missing:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: examples lack "
        f"{missing}, needed by config.baseline.level="
        f"{config.baseline.level!r} (calcification-cluster features of "
        "docs/architecture.md)"
    )


def create_baseline_data(
    config: ml_collections.ConfigDict,
    *,
    num_devices: int = 1,
    examples_and_info: Optional[tuple[list[dict[str, Any]], dict]] = None,
) -> BaselineData:
  """Loads the cluster dataset, splits it like MT-GCN, builds the inputs."""
  level = check_level(config)
  examples, info = examples_and_info or pipeline.load_examples(config.dataset)
  if not examples:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: the dataset has no "
        f"examples (build report: {info.get('build_report')})"
    )
  if config.batch_size % num_devices:
    raise ValueError(
        f"config.batch_size={config.batch_size} is not divisible by the "
        f"{num_devices} devices"
    )
  _require(examples, ("patient_id", "distribution", "source_split"), config)
  example_splits = pipeline.cluster_splits(config, examples)
  bcfg = config.baseline
  if level == "image":
    _require(examples, ("crop",), config)
    labels = np.asarray([int(ex["distribution"]) for ex in examples])
    keep = np.flatnonzero(labels >= 0)
    crops = np.stack(
        [np.asarray(examples[i]["crop"], np.float32) / 255.0 for i in keep]
    ) if len(keep) else np.zeros((0, 1, 1), np.float32)
    images = resize_batch(crops, int(bcfg.image_size))
    labels = labels[keep]
    example_index = keep
    node_index = np.full(len(keep), -1, np.int64)
    unknown = len(examples) - len(keep)
  else:
    _require(examples, ("patches", "morphology"), config)
    patches, labels, example_index, node_index = [], [], [], []
    unknown = 0
    for i, ex in enumerate(examples):
      y = np.asarray(ex["morphology"], np.int64).reshape(-1)
      p = np.asarray(ex["patches"], np.float32)
      if p.shape[0] != y.shape[0]:
        raise ValueError(
            f"example {ex.get('example_id', i)!r}: {p.shape[0]} patches but "
            f"{y.shape[0]} morphology labels"
        )
      known = np.flatnonzero(y >= 0)
      unknown += len(y) - len(known)
      patches.append(p[known])
      labels.append(y[known])
      example_index.append(np.full(len(known), i, np.int64))
      node_index.append(known)
    images = resize_batch(np.concatenate(patches), int(bcfg.patch_size))
    labels = np.concatenate(labels)
    example_index = np.concatenate(example_index)
    node_index = np.concatenate(node_index)
  data = BaselineData(
      config, examples, info, example_splits, images,
      labels.astype(np.int64), example_index.astype(np.int64),
      node_index.astype(np.int64),
      per_device_batch_size=config.batch_size // num_devices,
  )
  logging.info(
      "cnn_baseline %s level: items per split %s (clusters %s), %d items "
      "with an unknown %s left out; train counts %s",
      level,
      {k: len(v) for k, v in data.splits.items()},
      {k: len(v) for k, v in example_splits.items()},
      unknown, data.field, data.class_counts("train").tolist(),
  )
  return data


# ----------------------------------------------------------------------------
# Model.


class BaselineClassifier(nn.Module):
  """A ``mammojax.models.cnn`` backbone on one-channel inputs.

  Attributes:
    backbone: key of ``cnn.MODELS``.
    num_classes: logits per input.
    dropout: dropout before the head.
    backbone_kwargs: further constructor arguments of the backbone as
      ``(name, value)`` pairs (e.g. ``stage_sizes`` for tiny test ResNets).
    pixel_mean: intensity normalisation of the [0, 1] inputs.
    pixel_std: see ``pixel_mean``.
  """

  backbone: str = "resnet18"
  num_classes: int = 5
  dropout: float = 0.2
  backbone_kwargs: tuple[tuple[str, Any], ...] = ()
  pixel_mean: float = 0.449
  pixel_std: float = 0.226

  @nn.compact
  def __call__(self, batch: Any, *, train: bool) -> jax.Array:
    """Logits ``[B, num_classes]`` of a batch dict or images ``[B, H, W]``."""
    images = batch["image"] if isinstance(batch, dict) else batch
    x = jnp.asarray(images, jnp.float32)
    if x.ndim == 3:
      x = x[..., None]
    x = (x - self.pixel_mean) / self.pixel_std
    # cnn.create_model(name, ...) with the submodule named "backbone".
    net = cnn.MODELS[self.backbone](
        num_classes=self.num_classes, dropout=self.dropout, name="backbone",
        **dict(self.backbone_kwargs),
    )
    return net(x, train=train)


# ----------------------------------------------------------------------------
# Losses.


class BaselineTask:
  """Single-task class-weighted cross-entropy for the generic steps."""

  def __init__(
      self,
      model: nn.Module,
      *,
      task: str,
      class_weights: Optional[np.ndarray] = None,
      flip: bool = False,
  ):
    self.model = model
    self.task_names = (task,)
    self.class_weights = (
        None if class_weights is None
        else jnp.asarray(class_weights, jnp.float32)
    )
    self.flip = bool(flip)

  def _valid(self, batch):
    return jnp.logical_and(batch["mask"], batch["label"] >= 0)

  def normalisers(self, batch) -> jax.Array:
    """Summed class weights of the real, labelled items ``[1]``."""
    valid = self._valid(batch)
    w = valid.astype(jnp.float32)
    if self.class_weights is not None:
      w = w * self.class_weights[jnp.where(valid, batch["label"], 0)]
    return jnp.sum(w)[None]

  def images(self, batch, rng, *, train: bool) -> jax.Array:
    """Float ``[B, S, S]``; randomly flipped per item when training."""
    x = batch["image"].astype(jnp.float32)
    if not train or not self.flip:
      return x
    flips = jax.random.bernoulli(rng, 0.5, (2, x.shape[0]))
    x = jnp.where(flips[0][:, None, None], x[:, :, ::-1], x)
    return jnp.where(flips[1][:, None, None], x[:, ::-1, :], x)

  def apply(self, params, model_state, batch, rng, *, train: bool):
    """Runs the model; returns ``(logits, new_model_state)``."""
    variables = {"params": params, **model_state}
    if not train:
      images = self.images(batch, None, train=False)
      return self.model.apply(variables, images, train=False), model_state
    aug_rng, drop_rng = jax.random.split(rng)
    images = self.images(batch, aug_rng, train=True)
    logits, new_state = self.model.apply(
        variables, images, train=True, rngs={"dropout": drop_rng},
        mutable=list(model_state.keys()),
    )
    return logits, dict(new_state)

  def loss_sums(self, params, model_state, batch, rng, *, train: bool):
    """Weighted CE sum ``[1]`` and ``(new_model_state, logits)``."""
    logits, new_state = self.apply(
        params, model_state, batch, rng, train=train
    )
    ce, _ = mtgcn_task.cross_entropy_terms(
        logits, batch["label"], self._valid(batch), self.class_weights
    )
    return jnp.sum(ce)[None], (new_state, logits)

  def gradnorm_layer(self, params) -> Any:
    """The head's kernel (unused: one task)."""
    backbone = params["backbone"]
    head = next(h for h in _HEADS if h in backbone)
    return backbone[head]["kernel"]

  def eval_outputs(self, outputs, batch) -> dict[str, jax.Array]:
    """``{task}_probs``, ``_labels``, ``_mask`` and the item ``index``."""
    task = self.task_names[0]
    return {
        f"{task}_probs": jax.nn.softmax(outputs.astype(jnp.float32), -1),
        f"{task}_labels": batch["label"],
        f"{task}_mask": batch["mask"],
        "index": batch["index"],
    }


# ----------------------------------------------------------------------------
# Report.


def write_run_report(workdir, config, data, results, raw_outputs) -> str:
  """ROC curves, confusion matrix and ``report.md``; returns its path."""
  from mammojax.reporting import plots  # pylint: disable=g-import-not-at-top
  from mammojax.reporting import report as report_lib  # pylint: disable=g-import-not-at-top

  task, field = data.task, data.field
  title = f"{field} ({config.baseline.level} level, task {task})"
  fig_dir = os.path.join(workdir, "figures")
  os.makedirs(fig_dir, exist_ok=True)
  figures: dict[str, str] = {}
  split = "test" if "test" in raw_outputs else "val"
  raw = raw_outputs.get(split, {})
  names = list(data.vocabularies[field])
  if f"{task}_probs" in raw:
    mask = raw[f"{task}_mask"] & (raw[f"{task}_labels"] >= 0)
    y, p = raw[f"{task}_labels"][mask], raw[f"{task}_probs"][mask]
    if len(y):
      roc = os.path.join(fig_dir, f"roc_{task}.png")
      plots.plot_roc_curves(y, p, names, roc, f"ROC, {title}, {split}")
      figures[f"ROC curves, {title}"] = os.path.relpath(roc, workdir)
      cm = np.asarray(results[split][task]["confusion_matrix"])
      cm_path = os.path.join(fig_dir, f"confusion_{task}.png")
      plots.plot_confusion_matrix(cm, names, cm_path, normalize="true")
      figures[f"Confusion matrix, {title}"] = os.path.relpath(
          cm_path, workdir
      )
  tasks = {
      f"{title}, {name}": results[name][task]
      for name in ("test", "val")
      if task in results.get(name, {})
  }
  bcfg = config.baseline
  size = bcfg.image_size if bcfg.level == "image" else bcfg.patch_size
  report = {
      "title": f"CNN baseline run report: {bcfg.model}, {bcfg.level} level",
      "run": {
          "workdir": os.path.abspath(workdir),
          "dataset": f"{config.dataset.name}/{config.dataset.builder_config}",
          "model": bcfg.model,
          "level": bcfg.level,
          "input": f"{LEVELS[bcfg.level][2]}, {size} x {size}",
          "target": field,
          "fold": f"{config.dataset.fold} of {config.dataset.num_folds}",
          "best epoch": results.get("meta", {}).get("best_epoch"),
          "items (train/val/test)": "/".join(
              str(len(data.splits[k])) for k in ("train", "val", "test")
          ),
          "clusters (train/val/test)": "/".join(
              str(len(data.example_splits[k]))
              for k in ("train", "val", "test")
          ),
          "train items/s": results.get("timing", {}).get(
              "train_items_per_second"
          ),
      },
      "tasks": tasks,
      "build report": results.get("build_report", {}),
  }
  path = os.path.join(workdir, "report.md")
  report_lib.write_markdown_report(path, report, figures)
  return path


# ----------------------------------------------------------------------------
# The method.


class CNNBaselineMethod:
  """The CNN baselines' hooks for the shared training loop."""

  def create_data(self, config, *, num_devices, examples_and_info):
    return create_baseline_data(
        config, num_devices=num_devices, examples_and_info=examples_and_info
    )

  def create_model(self, config, vocabularies):
    level = check_level(config)
    bcfg = config.baseline
    if bcfg.model not in cnn.MODELS:
      raise ValueError(
          f"config.baseline.model={bcfg.model!r}: expected one of "
          f"{sorted(cnn.MODELS)}"
      )
    kwargs = tuple(
        (k, tuple(v) if isinstance(v, list) else v)
        for k, v in sorted(dict(bcfg.get("model_kwargs") or {}).items())
    )
    return BaselineClassifier(
        backbone=bcfg.model,
        num_classes=len(vocabularies[LEVELS[level][1]]),
        dropout=float(bcfg.dropout),
        backbone_kwargs=kwargs,
        pixel_mean=float(bcfg.pixel_mean),
        pixel_std=float(bcfg.pixel_std),
    )

  def create_task(self, config, model, data):
    task = task_of(config)
    weights_config = ml_collections.ConfigDict({
        "class_weighting": config.get("class_weighting", "none"),
        "tasks": (task,),
    })
    weights = mtgcn_task.class_weights_for(weights_config, data).get(task)
    return BaselineTask(
        model, task=task, class_weights=weights,
        flip=bool(config.baseline.get("flip", False)),
    )

  def class_names(self, data, task):
    fields = {t: field for t, field, _ in LEVELS.values()}
    return list(data.vocabularies[fields[task]])

  def num_items(self, batch) -> int:
    return int(np.sum(np.asarray(batch["mask"])))

  def write_report(self, workdir, config, data, results, raw_outputs, state):
    del state
    write_run_report(workdir, config, data, results, raw_outputs)
