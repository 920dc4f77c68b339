"""Whole-mammogram classification of the luminal paper on the shared trainer.

The method ``luminal`` (``config.method``) covers the paper's three stages,
chosen by ``config.tasks``:

* MLMC pretraining, ``tasks = ('calcification', 'mass', 'malignant')``:
  one sigmoid output per task with binary cross-entropy; unknown labels
  (-1) are masked out. Each output is evaluated as a binary task with
  ``probs = [1 - p, p]``, so the shared metrics (F1, AUC) apply unchanged.
* luminal vs non-luminal, ``tasks = ('luminal',)``: a 2-way softmax head
  with cross-entropy, trained on the images with a subtype. With
  ``config.init_from`` (the pretraining workdir) ``adapt_initial_state``
  loads every weight of that run's best checkpoint except the replaced head
  (3 -> 2 outputs; transfer); without it the network starts from scratch or
  from ImageNet weights (``config.model.pretrained_path``; baseline).

Data: examples of a whole-image TFDS dataset (docs/architecture.md) held in
memory as uint8 ``[N, H, W]``. Splits are patient-wise and computed on *all*
images with ``pipeline.patient_splits`` (stratified by benign / non-luminal /
luminal): ``test_fraction`` of the patients form the independent test set,
the rest is split in ``num_folds`` folds with fold ``fold`` validating. Each
split then keeps the images that have a label for one of ``config.tasks``,
so pretraining and transfer of a fold share test and validation patients.
Training epochs are ``pipeline.epoch_order`` (weighted random sampling on
``config.dataset.balance_field`` when ``class_balanced``), filled up to whole
batches, so a train batch never holds padding (batch norm sees only real
images); evaluation batches are padded with masked items to the fixed batch
shape. Batches are dicts of numpy arrays (``image`` uint8 ``[B, H, W]``, one
int32 ``[B]`` per label, ``mask`` bool, ``index`` int32 = example index or
-1), with a leading device axis ``[D, B / D, ...]`` when ``num_devices > 1``.

Augmentation (flip, AugMix, equalisation, erasing with the paper's
probabilities, ``config.augment``) runs inside the jitted train step on the
step's key (``fold_in(loop_rng, step)``), so resumed runs replay it.
"""

import math
import os
from typing import Any, Mapping, Optional, Sequence

from absl import logging
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mammojax.data import augment as augment_lib
from mammojax.data import pipeline
from mammojax.models import cnn

BINARY_TASKS = ("calcification", "mass", "malignant")
LUMINAL_TASK = "luminal"
LABEL_FIELDS = BINARY_TASKS + (LUMINAL_TASK,)
_BINARY_CLASS_NAMES = {
    "calcification": ("no_calcification", "calcification"),
    "mass": ("no_mass", "mass"),
    "malignant": ("benign", "malignant"),
}


def check_tasks(tasks: Sequence[str]) -> tuple[str, ...]:
  """Validates ``config.tasks``: the MLMC tasks or ``('luminal',)``."""
  tasks = tuple(tasks)
  if tasks == (LUMINAL_TASK,):
    return tasks
  unique = len(set(tasks)) == len(tasks)
  if tasks and unique and all(t in BINARY_TASKS for t in tasks):
    return tasks
  raise ValueError(
      f"config.tasks={tasks!r}: expected ('luminal',) or a subset of "
      f"{BINARY_TASKS} (multi-label sigmoid outputs)"
  )


def num_outputs(tasks: Sequence[str]) -> int:
  """Head size: 2 softmax logits for luminal, one sigmoid logit per task."""
  tasks = check_tasks(tasks)
  return 2 if tasks == (LUMINAL_TASK,) else len(tasks)


# ----------------------------------------------------------------------------
# Data.


def resize_images(images: np.ndarray, size: Sequence[int]) -> np.ndarray:
  """uint8 ``[N, h, w]`` -> uint8 ``[N, H, W]`` (area average when shrinking).

  The stored images are already aspect-fitted and zero-padded; ``size``
  should keep their aspect ratio (e.g. 256 x 160 -> 128 x 80).
  """
  from mammojax.data import resample  # pylint: disable=g-import-not-at-top

  size = tuple(int(v) for v in size)
  if not size or tuple(images.shape[1:]) == size:
    return images
  out = np.empty((len(images),) + size, np.uint8)
  for i, image in enumerate(images):
    small = resample.resize_image(image.astype(np.float32), size)
    out[i] = np.clip(np.round(small), 0, 255).astype(np.uint8)
  return out


class ImageData(pipeline.ArrayBatches):
  """In-memory whole images, patient-wise splits and fixed-shape batches."""

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      examples: list[dict[str, Any]],
      info: dict[str, Any],
      splits: dict[str, np.ndarray],
      images: np.ndarray,
      labels: dict[str, np.ndarray],
      per_device_batch_size: int,
  ):
    self.config = config
    self.examples = examples
    self.info = info
    self.splits = splits
    self.images = images
    self.labels = labels
    self.per_device_batch_size = per_device_batch_size

  @property
  def vocabularies(self) -> dict[str, list[str]]:
    return self.info["vocabularies"]

  def class_counts(self, split: str, field: str) -> np.ndarray:
    """``[2]`` counts of the known labels of ``field`` in ``split``."""
    y = self.labels[field][self.splits[split]]
    return np.bincount(y[y >= 0], minlength=2)

  def epoch_order(self, epoch: int) -> np.ndarray:
    """Training indices of ``epoch``, filled up to whole global batches."""
    train = self.splits["train"]
    if not len(train):
      raise ValueError(
          "the training split is empty (config.dataset: too few patients "
          "for the test fraction / folds?)"
      )
    ds = self.config.dataset
    batch = self.config.batch_size
    field = ds.get("balance_field") or self.config.tasks[0]
    return pipeline.epoch_order(
        train,
        self.labels[field][train],
        seed=self.config.seed,
        epoch=epoch,
        class_balanced=bool(ds.class_balanced),
        size=math.ceil(len(train) / batch) * batch,
    )

  def _batch(self, indices: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """One batch of ``size`` items; missing ones are masked padding."""
    n = len(indices)
    idx = np.zeros(size, np.int64)
    idx[:n] = indices
    mask = np.arange(size) < n
    batch = {
        "image": self.images[idx] * mask[:, None, None].astype(np.uint8),
        "mask": mask,
        "index": np.where(mask, idx, -1).astype(np.int32),
    }
    for field, values in self.labels.items():
      batch[field] = np.where(mask, values[idx], -1).astype(np.int32)
    return batch



def stratification_labels(luminal: np.ndarray) -> np.ndarray:
  """0 no subtype (benign), 1 non-luminal, 2 luminal."""
  return np.asarray(luminal, np.int64) + 1


def create_image_data(
    config: ml_collections.ConfigDict,
    *,
    num_devices: int = 1,
    examples_and_info: Optional[tuple[list[dict[str, Any]], dict]] = None,
) -> ImageData:
  """Loads the whole-image dataset, splits it by patient, keeps labelled items.

  Args:
    config: the experiment configuration (``dataset``, ``tasks``,
      ``batch_size``, ``seed``).
    num_devices: devices the global ``config.batch_size`` is split over.
    examples_and_info: already loaded ``pipeline.load_examples`` output.

  Returns:
    The ``ImageData``.
  """
  tasks = check_tasks(config.tasks)
  examples, info = examples_and_info or pipeline.load_examples(config.dataset)
  if not examples:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: the dataset has no "
        f"examples (build report: {info.get('build_report')})"
    )
  missing = [k for k in ("image", "patient_id") + LABEL_FIELDS
             if k not in examples[0]]
  if missing:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: examples lack "
        f"{missing}; expected the whole-image features of "
        "docs/architecture.md"
    )
  if config.batch_size % num_devices:
    raise ValueError(
        f"config.batch_size={config.batch_size} is not divisible by the "
        f"{num_devices} devices"
    )
  ds = config.dataset
  images = np.stack([np.asarray(ex["image"], np.uint8) for ex in examples])
  images = resize_images(images, ds.get("image_size") or ())
  labels = {
      f: np.asarray([int(ex[f]) for ex in examples], np.int64)
      for f in LABEL_FIELDS
  }
  fixed_test = None
  if "test" in {ex.get("source_split") for ex in examples}:
    fixed_test = np.asarray(
        [ex.get("source_split") == "test" for ex in examples]
    )
  splits = pipeline.patient_splits(
      [ex["patient_id"] for ex in examples],
      stratification_labels(labels[LUMINAL_TASK]),
      val_fraction=ds.val_fraction,
      test_fraction=ds.test_fraction,
      num_folds=ds.num_folds,
      fold=ds.fold,
      seed=ds.split_seed,
      fixed_test=fixed_test,
  )
  known = np.zeros(len(examples), bool)
  for t in tasks:
    known |= labels[t] >= 0
  splits = {k: v[known[v]] for k, v in splits.items()}
  data = ImageData(
      config, examples, info, splits, images, labels,
      per_device_batch_size=config.batch_size // num_devices,
  )
  logging.info(
      "tasks %s: images per split %s; %s",
      tasks,
      {k: len(v) for k, v in splits.items()},
      {t: {k: data.class_counts(k, t).tolist() for k in splits}
       for t in tasks},
  )
  return data


# ----------------------------------------------------------------------------
# Model.


class ImageClassifier(nn.Module):
  """A ``mammojax.models.cnn`` backbone on one-channel mammograms.

  Attributes:
    backbone: key of ``cnn.MODELS`` (``resnet18`` in the paper).
    num_outputs: logits per image.
    dropout: dropout before the head (0.3 in the paper).
    stage_sizes: ResNet blocks per stage override (tiny test models only).
    pixel_mean: intensity normalisation (ImageNet's grey mean / std).
    pixel_std: see ``pixel_mean``.
  """

  backbone: str = "resnet18"
  num_outputs: int = 2
  dropout: float = 0.3
  stage_sizes: tuple[int, ...] = ()
  pixel_mean: float = 0.449
  pixel_std: float = 0.226

  @nn.compact
  def __call__(
      self,
      batch: Any,
      *,
      train: bool,
      return_features: bool = False,
      feature_offsets: Optional[Mapping[str, Any]] = None,
  ):
    """Logits ``[B, num_outputs]`` (and features) of a batch or images.

    Args:
      batch: a batch dict with ``image``, or images ``[B, H, W]`` /
        ``[B, H, W, 1]``, uint8 (0..255) or float in [0, 1].
      train: batch statistics and dropout on.
      return_features: also return the backbone's tapped features.
      feature_offsets: see ``mammojax.models.cnn`` (Grad-CAM).
    """
    images = batch["image"] if isinstance(batch, Mapping) else batch
    x = jnp.asarray(images)
    if x.dtype == jnp.uint8:
      x = x.astype(jnp.float32) / 255.0
    x = x.astype(jnp.float32)
    if x.ndim == 3:
      x = x[..., None]
    x = (x - self.pixel_mean) / self.pixel_std
    kwargs = {}
    if self.stage_sizes:
      kwargs["stage_sizes"] = tuple(self.stage_sizes)
    net = cnn.MODELS[self.backbone](
        num_classes=self.num_outputs, dropout=self.dropout, name="backbone",
        **kwargs,
    )
    return net(
        x, train=train, return_features=return_features,
        feature_offsets=feature_offsets,
    )


HEAD = ("backbone", "fc")


# ----------------------------------------------------------------------------
# Losses.


class ImageTask:
  """Loss definition of the luminal method for the generic steps."""

  def __init__(
      self,
      model: nn.Module,
      *,
      tasks: Sequence[str],
      augment: Optional[Mapping[str, float]] = None,
  ):
    self.model = model
    self.task_names = check_tasks(tasks)
    self.softmax = self.task_names == (LUMINAL_TASK,)
    self.augment = dict(augment) if augment else None

  def _valid(self, batch, task):
    return jnp.logical_and(batch["mask"], batch[task] >= 0)

  def normalisers(self, batch) -> jax.Array:
    """Number of real items with a known label, per task."""
    return jnp.stack([
        jnp.sum(self._valid(batch, t).astype(jnp.float32))
        for t in self.task_names
    ])

  def images(self, batch, rng, *, train: bool) -> jax.Array:
    """Float ``[B, H, W]`` in [0, 1], augmented when training."""
    images = batch["image"].astype(jnp.float32) / 255.0
    if not train or not self.augment:
      return images
    keys = jax.random.split(rng, images.shape[0])
    probs = self.augment
    # lax.map keeps real branching: AugMix (p=0.2) is skipped when it
    # does not fire, which vmap's select would not do.
    return jax.lax.map(
        lambda args: augment_lib.mammography_augment(args[0], args[1], **probs),
        (images, keys),
    )

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
    """Per-task loss sums ``[T]`` and ``(new_model_state, logits)``."""
    logits, new_state = self.apply(
        params, model_state, batch, rng, train=train
    )
    logits = logits.astype(jnp.float32)
    sums = []
    for k, task in enumerate(self.task_names):
      valid = self._valid(batch, task)
      y = jnp.where(valid, batch[task], 0)
      if self.softmax:
        per_item = optax.softmax_cross_entropy_with_integer_labels(logits, y)
      else:
        per_item = optax.sigmoid_binary_cross_entropy(
            logits[:, k], y.astype(jnp.float32)
        )
      sums.append(jnp.sum(jnp.where(valid, per_item, 0.0)))
    return jnp.stack(sums), (new_state, logits)

  def gradnorm_layer(self, params) -> Any:
    """The head's kernel (the last shared layer is the pooled feature)."""
    return params[HEAD[0]][HEAD[1]]["kernel"]

  def eval_outputs(self, outputs, batch) -> dict[str, jax.Array]:
    """``{task}_probs [B, 2]``, ``_labels``, ``_mask`` and ``index``."""
    out = {"index": batch["index"]}
    for k, task in enumerate(self.task_names):
      if self.softmax:
        probs = jax.nn.softmax(outputs, axis=-1)
      else:
        p = jax.nn.sigmoid(outputs[:, k])
        probs = jnp.stack([1.0 - p, p], axis=-1)
      out[f"{task}_probs"] = probs
      out[f"{task}_labels"] = batch[task]
      out[f"{task}_mask"] = batch["mask"]
    return out


# ----------------------------------------------------------------------------
# Initial weights.


def restore_best_variables(workdir: str) -> dict[str, Any]:
  """``{'params', 'batch_stats'...}`` of the best checkpoint of a run."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top

  path = os.path.abspath(os.path.join(workdir, "checkpoints", "best"))
  if not os.path.isdir(path):
    raise FileNotFoundError(
        f"config.init_from={workdir!r}: no best checkpoint at {path}; "
        "train the pretraining stage there first"
    )
  with ocp.CheckpointManager(path) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(
          f"config.init_from={workdir!r}: {path} holds no checkpoint"
      )
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
  state = restored.state
  return {"params": state["params"], **dict(state["model_state"])}


def transfer_variables(
    target: Mapping[str, Any],
    source: Mapping[str, Any],
    *,
    skip: Sequence[tuple[str, ...]] = (HEAD,),
) -> tuple[dict[str, Any], list[str], list[str]]:
  """Copies ``source`` leaves into ``target`` except under ``skip`` paths.

  Returns:
    ``(variables, copied, kept)``: the new tree and the '/'-joined paths
    copied from ``source`` / kept from ``target`` (skipped or absent).

  Raises:
    ValueError: a copied leaf's shape differs (names the path).
  """
  flat_t = jax.tree_util.tree_flatten_with_path(dict(target))[0]
  flat_s = {
      tuple(getattr(k, "key", k) for k in path): v
      for path, v in jax.tree_util.tree_flatten_with_path(dict(source))[0]
  }
  copied, kept, leaves = [], [], []
  for path, value in flat_t:
    key = tuple(getattr(k, "key", k) for k in path)
    name = "/".join(map(str, key))
    skipped = any(
        key[1 : 1 + len(s)] == tuple(s) for s in skip
    )
    if skipped or key not in flat_s:
      kept.append(name)
      leaves.append(value)
      continue
    new = np.asarray(flat_s[key])
    if new.shape != tuple(np.shape(value)):
      raise ValueError(
          f"pretrained weight {name}: shape {new.shape} != model's "
          f"{tuple(np.shape(value))}"
      )
    copied.append(name)
    leaves.append(jnp.asarray(new, dtype=jnp.asarray(value).dtype))
  treedef = jax.tree_util.tree_structure(dict(target))
  return jax.tree_util.tree_unflatten(treedef, leaves), copied, kept


def adapt_initial_state(config: ml_collections.ConfigDict, state):
  """Transfer (``config.init_from``) or ImageNet (``pretrained_path``) init."""
  current = {"params": state.params, **dict(state.model_state)}
  if config.get("init_from"):
    source = restore_best_variables(config.init_from)
    what = f"best checkpoint of {config.init_from}"
  elif config.model.get("pretrained_path"):
    from mammojax.models.cnn import convert  # pylint: disable=g-import-not-at-top

    _, loaded, report = convert.load_pretrained(
        config.model.name, config.model.pretrained_path,
        num_classes=num_outputs(config.tasks), in_channels=1,
        dropout=config.model.dropout,
    )
    logging.info("ImageNet weights: %s", report.summary())
    source = {k: {"backbone": v} for k, v in loaded.items()}
    what = f"torchvision weights {config.model.pretrained_path}"
  else:
    return state
  variables, copied, kept = transfer_variables(current, source)
  logging.info(
      "initial weights from %s: %d arrays copied, kept (new): %s",
      what, len(copied), kept,
  )
  params = variables.pop("params")
  return state.replace(params=params, model_state=variables)


# ----------------------------------------------------------------------------
# The method.


def class_names(data: Any, task: str) -> list[str]:
  """Class names of ``task`` (luminal from the dataset's vocabulary)."""
  if task == LUMINAL_TASK:
    return list(data.vocabularies.get(
        "luminal", ["non_luminal", "luminal"]
    ))
  return list(_BINARY_CLASS_NAMES[task])


class LuminalMethod:
  """The luminal paper's hooks for the shared training loop."""

  def create_data(self, config, *, num_devices, examples_and_info):
    return create_image_data(
        config, num_devices=num_devices, examples_and_info=examples_and_info
    )

  def create_model(self, config, vocabularies):
    del vocabularies
    if config.model.name not in cnn.MODELS:
      raise ValueError(
          f"config.model.name={config.model.name!r}: expected one of "
          f"{sorted(cnn.MODELS)}"
      )
    return ImageClassifier(
        backbone=config.model.name,
        num_outputs=num_outputs(config.tasks),
        dropout=config.model.dropout,
        stage_sizes=tuple(config.model.get("stage_sizes", ()) or ()),
        pixel_mean=config.model.get("pixel_mean", 0.449),
        pixel_std=config.model.get("pixel_std", 0.226),
    )

  def create_task(self, config, model, data):
    del data
    aug = config.augment
    probs = None
    if aug.enabled:
      probs = {k: float(aug[k])
               for k in ("p_flip", "p_augmix", "p_equalize", "p_erase")}
    return ImageTask(model, tasks=config.tasks, augment=probs)

  def class_names(self, data, task):
    return class_names(data, task)

  def num_items(self, batch) -> int:
    return int(np.sum(np.asarray(batch["mask"])))

  def adapt_initial_state(self, config, state):
    return adapt_initial_state(config, state)

  def write_report(self, workdir, config, data, results, raw_outputs, state):
    # The experiment module imports this one (lazily): import it lazily too.
    from mammojax.experiments import luminal as exp  # pylint: disable=g-import-not-at-top

    exp.write_run_report(
        workdir, config, data, results, raw_outputs, state,
        model=self.create_model(config, data.vocabularies),
    )
