"""DiagNet (Liu et al., MICCAI 2019): mass benign / malignant on mass ROIs.

The method ``diagnet`` (``config.method``), on the mass-ROI datasets
(``synthetic_masses``, ``cbis_ddsm_masses``, ``inbreast_masses``: the
``crop`` of each mass, its box padded 1.6x, and its ``pathology``):

1. *Data*: crops resized to ``config.diagnet.image_size`` (float in [0, 1]);
   patient-wise train / val / test (``splits.patient_splits`` stratified by
   pathology with the ``config.dataset`` fields; an official ``test`` source
   split is kept). Masses with an unknown pathology (-1) are left out and
   counted (``data.skipped``).
2. *Flips* (``config.diagnet.flips``) are added to the training ROIs, then
   the *adversarial augmentation* (``objectives.adversarial_augmentation``)
   adds ``positive_fraction`` positive and ``negative_fraction`` negative
   neighbours per class (paper: +20 % each of the flipped training set).
   Validation and test hold the original ROIs only. With
   ``config.diagnet.augment.cache_dir`` set, the neighbours are cached there
   (keyed by the training images and every augmentation setting).
3. *Training*: ``models.diagnet.DiagNet`` with ``J = J_l + lambda J_g``
   (eq. 6): ``J_l`` the softmax cross-entropy (task ``pathology``) of the
   originals, flips and positive neighbours (negative neighbours too with
   ``negative_label='class'``; by default they carry no label and act only
   as graph negatives), ``J_g`` the signed-graph regulariser
   (``objectives.signed_graph``, eq. 3-4) logged as its own loss term
   ``signed_graph`` (``Task.aux_names``) with weight lambda
   (``config.diagnet.graph.weight``). The graph is built in the jitted step
   from the batch: neighbour ranks from the augmentation's fixed input
   features (``graph.space='input'``) or the current embeddings
   (``'embedding'``). ``J_g`` is normalised per edge of the batch's graph
   (``signed_graph.edge_count``; per anchor it grew with ``n+ + n-`` and
   outweighed ``J_l`` 3-4x at n- = 4). Class-balanced resampling balances
   the classes of all training items. Choices of the 2-core default that
   the paper does not make (``configs/diagnet.py``; the ``paper`` variant
   turns them off): each ROI standardised by its own mean / std
   (``diagnet.per_image_norm``), a random one of the 8 dihedral
   orientations of every training ROI per step (``diagnet.dihedral``: the
   pathology of a mass does not depend on its orientation), and a cosine
   decay of the learning rate over the run (``diagnet.lr_schedule``,
   through ``adapt_initial_state``).

Bad input: a dataset with one class (after unknown pathologies are left
out), crops smaller than ``image_size`` (unless ``allow_upsampling``) and
missing features raise a ``ValueError`` naming the config key or field;
builders skip and count a mass box outside its image (``build_report``).
"""

import dataclasses
import hashlib
import os
from typing import Any, Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from mammojax.data import images as images_lib
from mammojax.data import splits as splits_lib
from mammojax.models import diagnet as model_lib
from mammojax.objectives import adversarial_augmentation as aug_lib
from mammojax.objectives import losses
from mammojax.objectives import signed_graph as sg
from mammojax.reporting import diagnet as report_lib
from mammojax.training import validation

TASK = "pathology"
FLIPS = {
    "lr": lambda x: x[:, :, ::-1],
    "ud": lambda x: x[:, ::-1, :],
    "lrud": lambda x: x[:, ::-1, ::-1],
}
REQUIRED = ("crop", "pathology", "patient_id")


def augment_config(config: ml_collections.ConfigDict) -> aug_lib.AugmentConfig:
  """``config.diagnet.augment`` as an ``AugmentConfig`` (seed: config.seed)."""
  a = config.diagnet.augment
  fields = {
      k: a[k] for k in aug_lib.AugmentConfig.__dataclass_fields__
      if k in a and k != "seed"
  }
  return aug_lib.AugmentConfig(**fields, seed=int(config.seed))


# ----------------------------------------------------------------------------
# Data.


class DiagNetArrays(images_lib.ImageArrays):
  """``ImageArrays`` whose batches also carry each item's input feature.

  Label fields: ``label`` (J_l target, -1 = none), ``group`` (the item's
  class for the graph) and ``kind`` (``signed_graph`` ORIGINAL / POSITIVE /
  NEGATIVE). ``features`` float32 ``[N, F]`` go into batches as ``feature``.
  """

  features: np.ndarray

  def _batch(self, indices, size):
    batch = super()._batch(indices, size)
    idx = np.zeros(size, np.int64)
    idx[: len(indices)] = indices
    batch["feature"] = self.features[idx] * batch["mask"][:, None]
    return batch


def _cached_augment(images, labels, cfg, cache_dir):
  """``augment``, read from / written to ``cache_dir`` when one is set.

  The key hashes the training images, their labels and every augmentation
  setting (seed included), so runs that share a split and settings (the
  Fig. 3 grid's cells) generate the neighbours once.
  """
  if not cache_dir:
    return aug_lib.augment(images, labels, cfg)
  digest = hashlib.sha256()
  digest.update(np.ascontiguousarray(images, np.float32).tobytes())
  digest.update(np.ascontiguousarray(labels, np.int64).tobytes())
  digest.update(repr(dataclasses.astuple(cfg)).encode())
  path = os.path.join(cache_dir, f"augment_{digest.hexdigest()[:24]}.npz")
  if os.path.exists(path):
    z = np.load(path)
    logging.info("diagnet: adversarial augmentation read from %s", path)
    return aug_lib.Augmentation(
        images=z["images"], labels=z["labels"], kinds=z["kinds"],
        seeds=z["seeds"], scores=z["scores"], thetas=z["thetas"],
        rho=dict(zip(z["rho_classes"].tolist(), z["rho_values"].tolist())),
        seconds=0.0,
    )
  aug = aug_lib.augment(images, labels, cfg)
  os.makedirs(cache_dir, exist_ok=True)
  tmp = path + ".tmp.npz"
  np.savez(tmp, images=aug.images, labels=aug.labels, kinds=aug.kinds,
           seeds=aug.seeds, scores=aug.scores, thetas=aug.thetas,
           rho_classes=np.asarray(list(aug.rho)),
           rho_values=np.asarray(list(aug.rho.values())))
  os.replace(tmp, path)
  return aug


def _train_arrays(images, labels, config):
  """Flips, then the adversarial augmentation of the training ROIs."""
  flips = tuple(config.diagnet.flips)
  out_images = [images] + [FLIPS[f](images) for f in flips]
  out_labels = [labels] * (1 + len(flips))
  flipped = np.concatenate(out_images)
  flipped_labels = np.concatenate(out_labels)
  kinds = [np.full(len(flipped), sg.ORIGINAL)]
  aug = None
  if config.diagnet.augment.enabled:
    aug = _cached_augment(flipped, flipped_labels, augment_config(config),
                          config.diagnet.augment.get("cache_dir", ""))
    flipped = np.concatenate([flipped, aug.images])
    flipped_labels = np.concatenate([flipped_labels, aug.labels])
    kinds.append(aug.kinds)
  return flipped.astype(np.float32), flipped_labels, np.concatenate(kinds), (
      aug, len(images) * (1 + len(flips)))


def create_diagnet_data(
    config: ml_collections.ConfigDict,
    *,
    num_devices: int = 1,
    examples_and_info=None,
) -> DiagNetArrays:
  """Loads the mass ROIs, splits, flips, augments; see the module docstring."""
  import time  # pylint: disable=g-import-not-at-top,import-outside-toplevel
  start = time.time()
  examples, info = images_lib.load_nonempty(
      config, examples_and_info, REQUIRED, "config.method='diagnet'"
  )
  per_device = images_lib.check_batch_size(config, num_devices)
  d = config.diagnet
  labels_all = np.asarray([int(ex["pathology"]) for ex in examples])
  keep = np.flatnonzero(labels_all >= 0)
  skipped = {"unknown pathology": int(len(examples) - len(keep))}
  classes = np.unique(labels_all[keep])
  if len(classes) < 2:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: the masses with a "
        f"known pathology hold {len(classes)} class(es) "
        f"({classes.tolist()}); DiagNet needs benign and malignant"
    )
  size = int(d.image_size)
  crop_sizes = {tuple(np.shape(examples[i]["crop"])) for i in keep}
  smallest = min(min(s) for s in crop_sizes)
  if smallest < size and not d.allow_upsampling:
    raise ValueError(
        f"config.diagnet.image_size={size} is larger than the dataset's ROI "
        f"crops ({smallest} px, config.dataset.builder_config="
        f"{config.dataset.builder_config!r}); lower image_size, build larger "
        "crops or set config.diagnet.allow_upsampling=True"
    )
  crops = [
      images_lib.resize_images(
          np.asarray(examples[i]["crop"], np.float32)[None] / 255.0,
          (size, size),
      )[0] for i in keep
  ]
  images = np.stack(crops).astype(np.float32)
  labels = labels_all[keep]
  kept_examples = [examples[i] for i in keep]
  ds = config.dataset
  ex_splits = splits_lib.patient_splits(
      [ex["patient_id"] for ex in kept_examples], labels,
      val_fraction=ds.val_fraction, test_fraction=ds.test_fraction,
      num_folds=ds.num_folds, fold=ds.fold, seed=ds.split_seed,
      fixed_test=splits_lib.official_test(kept_examples),
  )
  train = ex_splits["train"]
  if len(np.unique(labels[train])) < 2:
    raise ValueError(
        f"config.dataset (split_seed={ds.split_seed}): the training split "
        f"holds one pathology class ({np.unique(labels[train]).tolist()}); "
        "DiagNet needs both (more patients or another split seed)"
    )
  load_seconds = time.time() - start
  train_images, train_labels, train_kinds, (aug, num_flipped) = (
      _train_arrays(images[train], labels[train], config)
  )
  others = np.concatenate([ex_splits["val"], ex_splits["test"]])
  all_images = np.concatenate([train_images, images[others]])
  group = np.concatenate([train_labels, labels[others]])
  kind = np.concatenate([train_kinds, np.full(len(others), sg.ORIGINAL)])
  target = group.copy()
  if d.negative_label == "none":
    target[kind == sg.NEGATIVE] = -1
  # Item -> its example (kept index) or, for generated items, its seed's.
  train_owner = np.concatenate(
      [np.tile(train, num_flipped // max(len(train), 1))]
      + ([train[aug.seeds % len(train)]] if aug is not None else [])
  )
  example_index = keep[np.concatenate([train_owner, others])]
  n_train = len(train_images)
  splits = {
      "train": np.arange(n_train),
      "val": n_train + np.arange(len(ex_splits["val"])),
      "test": n_train + len(ex_splits["val"]) + np.arange(
          len(ex_splits["test"])),
  }
  feature_fn = aug_lib.Features(size, int(d.augment.feature_size))
  data = DiagNetArrays(
      config, examples, info, splits, all_images,
      {"label": target.astype(np.int64), "group": group.astype(np.int64),
       "kind": kind.astype(np.int64)},
      num_classes={"label": len(classes), "group": len(classes),
                   "kind": len(sg.KINDS)},
      balance_field="group",
      per_device_batch_size=per_device,
      example_index=example_index.astype(np.int64),
      example_splits={k: keep[v] for k, v in ex_splits.items()},
  )
  data.features = feature_fn(all_images).astype(np.float32)
  # The cosine schedule's length (methods.diagnet.learning_rate).
  with config.unlocked():
    config.diagnet.steps_per_epoch = len(data.epoch_order(0)) // int(
        config.batch_size)
  data.augmentation = aug
  data.num_original_train = len(train)
  data.num_flipped_train = num_flipped
  data.skipped = skipped
  data.timing = {
      "load_and_split_seconds": load_seconds,
      "augment_seconds": float(aug.seconds) if aug is not None else 0.0,
  }
  data.composition = {
      k: int(np.sum(kind[: n_train] == i)) for i, k in enumerate(sg.KINDS)
  }
  logging.info(
      "diagnet: masses per split %s, training items %s (%d originals + "
      "flips), %s left out, augmentation %.1f s",
      {k: len(v) for k, v in ex_splits.items()}, data.composition,
      len(train), skipped, data.timing["augment_seconds"],
  )
  return data


# ----------------------------------------------------------------------------
# The loss.


def dihedral(images: jax.Array, k: jax.Array) -> jax.Array:
  """Item ``i`` of square ``images`` ``[B, S, S(, C)]`` under dihedral element
  ``k[i]`` in 0..7: ``k % 4`` quarter turns of the ROI, mirrored
  left-right first when ``k >= 4`` (0 = unchanged).

  A mass's benign / malignant label does not depend on its orientation, so
  the training step sees each ROI in a random one of its 8 orientations.
  """
  if images.shape[1] != images.shape[2]:
    raise ValueError(
        f"dihedral augmentation needs square ROIs, got {images.shape[1:3]} "
        "(config.diagnet.dihedral)"
    )
  k = k.reshape(k.shape[:1] + (1,) * (images.ndim - 1))
  x = jnp.where(k >= 4, images[:, :, ::-1], images)
  turns = [x]
  for _ in range(3):
    turns.append(jnp.rot90(turns[-1], axes=(1, 2)))
  out = turns[0]
  for t in range(1, 4):
    out = jnp.where(k % 4 == t, turns[t], out)
  return out


class DiagNetTask:
  """``J = J_l + lambda J_g`` on the shared steps (``training.steps.Task``).

  Loss sums ``[J_l sum, J_g sum]``; normalisers ``[labelled items, edges
  of the signed graph]``; ``aux_weights = (lambda,)``. With ``dihedral``
  every training ROI goes through the network under one of the 8 flips /
  quarter turns of the square, drawn per item and step (``dihedral``).
  """

  task_names = (TASK,)
  aux_names = ("signed_graph",)

  def __init__(self, model, *, n_pos: int, n_neg: int, margin: float,
               weight: float, space: str,
               class_weights: Optional[np.ndarray] = None,
               dihedral: bool = False):
    self.model = model
    self.dihedral = bool(dihedral)
    self.n_pos, self.n_neg = int(n_pos), int(n_neg)
    self.margin = float(margin)
    self.aux_weights = (float(weight),)
    self.space = space
    self.class_weights = (
        None if class_weights is None
        else jnp.asarray(class_weights, jnp.float32)
    )

  def _valid(self, batch):
    return jnp.logical_and(batch["mask"], batch["label"] >= 0)

  def normalisers(self, batch) -> jax.Array:
    ce = jnp.sum(losses.item_weights(batch["label"], self._valid(batch),
                                     self.class_weights))
    edges = sg.edge_count(batch["group"], batch["kind"], batch["mask"],
                          n_pos=self.n_pos, n_neg=self.n_neg)
    return jnp.stack([ce, edges])

  def apply(self, params, model_state, batch, rng, *, train: bool):
    variables = {"params": params, **model_state}
    images = batch["image"].astype(jnp.float32)
    if not train:
      (logits, h) = self.model.apply(variables, images, train=False)
      return logits, h, model_state
    if self.dihedral:
      rng, key = jax.random.split(rng)
      images = dihedral(images, jax.random.randint(
          key, images.shape[:1], 0, 8))
    (logits, h), new_state = self.model.apply(
        variables, images, train=True, rngs={"dropout": rng},
        mutable=list(model_state.keys()),
    )
    return logits, h, dict(new_state)

  def graph(self, batch, h) -> jax.Array:
    """The batch's signed graph ``phi`` (eq. 3)."""
    space = batch["feature"] if self.space == "input" else h
    dist = sg.angular_distance_matrix(space, space)
    return sg.signed_graph(dist, batch["group"], batch["kind"],
                           batch["mask"], n_pos=self.n_pos, n_neg=self.n_neg)

  def loss_sums(self, params, model_state, batch, rng, *, train: bool):
    logits, h, new_state = self.apply(params, model_state, batch, rng,
                                      train=train)
    logits = logits.astype(jnp.float32)
    per_item, _ = losses.cross_entropy_terms(
        logits, batch["label"], self._valid(batch), self.class_weights
    )
    h = jnp.where(batch["mask"][:, None], h.astype(jnp.float32), 0.0)
    jg = sg.regulariser(h, self.graph(batch, h), margin=self.margin)
    return jnp.stack([jnp.sum(per_item), jg]), (new_state, logits)

  def gradnorm_layer(self, params) -> Any:
    return params["softmax"]["kernel"]

  def eval_outputs(self, outputs, batch) -> dict[str, jax.Array]:
    return {
        "index": batch["index"],
        f"{TASK}_probs": jax.nn.softmax(outputs.astype(jnp.float32), -1),
        f"{TASK}_labels": batch["group"],
        f"{TASK}_mask": batch["mask"],
    }


# ----------------------------------------------------------------------------
# The loop's hooks.


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks DiagNet's config values once, before any work."""
  check = validation.check
  check(config, "diagnet.image_size", int, minimum=8)
  check(config, "diagnet.negative_label", str, choices=("none", "class"))
  if "lr_schedule" in config.diagnet:
    check(config, "diagnet.lr_schedule", str,
          choices=("constant", "cosine"))
  flips = tuple(config.diagnet.flips)
  bad = [f for f in flips if f not in FLIPS]
  if bad or len(set(flips)) != len(flips):
    raise ValueError(
        f"config.diagnet.flips={flips!r}: expected distinct values of "
        f"{sorted(FLIPS)}"
    )
  check(config, "diagnet.model.num_middle_blocks", int, minimum=0)
  check(config, "diagnet.model.fc_features", int, minimum=1)
  check(config, "diagnet.model.num_fc", int, minimum=1)
  check(config, "diagnet.model.dropout", float, minimum=0.0, maximum=1.0,
        exclusive_maximum=True)
  entry = tuple(config.diagnet.model.entry_features)
  if not entry or any(int(f) < 1 for f in entry):
    raise ValueError(
        f"config.diagnet.model.entry_features={entry!r}: expected positive "
        "widths"
    )
  check(config, "diagnet.graph.n_pos", int, minimum=0)
  check(config, "diagnet.graph.n_neg", int, minimum=0)
  check(config, "diagnet.graph.margin", float, minimum=0.0, exclusive=True)
  check(config, "diagnet.graph.weight", float, minimum=0.0)
  check(config, "diagnet.graph.space", str, choices=("input", "embedding"))
  a = "diagnet.augment."
  check(config, a + "positive_fraction", float, minimum=0.0)
  check(config, a + "negative_fraction", float, minimum=0.0)
  check(config, a + "num_candidates", int, minimum=2)
  check(config, a + "refit_every", int, minimum=1)
  check(config, a + "gamma", float, minimum=0.0)
  check(config, a + "r3_factor", float, minimum=0.0)
  check(config, a + "noise_std", float, minimum=0.0)
  check(config, a + "feature_size", int, minimum=1,
        maximum=int(config.diagnet.image_size))
  check(config, a + "intensity_grid", int, minimum=1)
  check(config, a + "displacement_grid", int, minimum=1)
  check(config, a + "svm_c", float, minimum=0.0, exclusive=True)
  check(config, "class_weighting", str,
        choices=("none", "inverse", "effective"))


def create_data(config, *, num_devices, examples_and_info):
  return create_diagnet_data(
      config, num_devices=num_devices, examples_and_info=examples_and_info
  )


def create_model(config, vocabularies) -> model_lib.DiagNet:
  m = config.diagnet.model
  return model_lib.DiagNet(
      num_classes=len(vocabularies[TASK]),
      stem_features=int(m.stem_features),
      entry_features=tuple(int(f) for f in m.entry_features),
      num_middle_blocks=int(m.num_middle_blocks),
      fc_features=int(m.fc_features),
      num_fc=int(m.num_fc),
      dropout=float(m.dropout),
      pixel_mean=float(config.diagnet.pixel_mean),
      pixel_std=float(config.diagnet.pixel_std),
      per_image_norm=bool(config.diagnet.get("per_image_norm", False)),
  )


def create_task(config, model, data) -> DiagNetTask:
  g = config.diagnet.graph
  weights = losses.class_weights_by_task(
      config.get("class_weighting", "none"),
      {TASK: data.class_counts("train", "label")},
  ).get(TASK)
  return DiagNetTask(
      model, n_pos=g.n_pos, n_neg=g.n_neg, margin=g.margin,
      weight=g.weight, space=g.space, class_weights=weights,
      dihedral=bool(config.diagnet.get("dihedral", False)),
  )


def learning_rate(config: ml_collections.ConfigDict):
  """``config.learning_rate``, or its cosine decay to 0 over the run.

  ``config.diagnet.lr_schedule='cosine'``: from ``config.learning_rate`` to
  0 over ``num_epochs`` epochs of ``config.diagnet.steps_per_epoch`` steps
  (set by ``create_data`` from the training items). The paper gives a
  constant rate; on the 2-core default's short schedule the decay lets
  the last epochs settle (the constant rate left the training loss flat).
  """
  d = config.diagnet
  if d.get("lr_schedule", "constant") == "constant":
    return float(config.learning_rate)
  if d.lr_schedule != "cosine":
    raise ValueError(
        f"config.diagnet.lr_schedule={d.lr_schedule!r}: expected constant "
        "or cosine"
    )
  steps = int(config.num_epochs) * int(d.get("steps_per_epoch", 0))
  if steps < 1:
    raise ValueError(
        "config.diagnet.lr_schedule='cosine' needs "
        "config.diagnet.steps_per_epoch (set by create_data) >= 1"
    )
  return optax.cosine_decay_schedule(float(config.learning_rate), steps)


def adapt_initial_state(config: ml_collections.ConfigDict, state):
  """The optimiser with ``learning_rate(config)`` (same Adam + L2 as the
  shared ``create_optimizer``) when ``diagnet.lr_schedule`` is not
  constant."""
  if config.diagnet.get("lr_schedule", "constant") == "constant":
    return state
  if config.optimizer != "adam" or config.get("grad_clip_norm", 0.0):
    raise ValueError(
        "config.diagnet.lr_schedule='cosine' supports config.optimizer="
        "'adam' without grad_clip_norm"
    )
  tx = optax.adam(learning_rate(config))
  if config.weight_decay:
    tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
  return state.replace(tx=tx, opt_state=tx.init(state.params))


def class_names(data, task: str) -> list[str]:
  del task
  return list(data.vocabularies[TASK])


def num_items(batch) -> int:
  return int(np.sum(np.asarray(batch["mask"])))


def write_report(workdir, config, data, results, raw_outputs, state) -> None:
  del state
  report_lib.write_run_report(workdir, config, data, results, raw_outputs)
