"""RMCG and the baselines of its Table 1 (histological grade of IDC tiles).

The method ``rmcg`` (``config.method``) trains one model of
``mammojax.models.rmcg.KINDS`` (``config.model.name``: ``alexnet``,
``resnet18``, ``ecc``, ``resnet18_gcn``, ``resnet18_gat``,
``resnet18_gcnii``, ``rmcg``) to classify the grade (1-3, the ``grade``
feature) of a Databiox-layout tile: the real ``databiox`` dataset (its
``rmcg_40x`` config: 40x tiles at 224 x 224) or the synthetic default
``synthetic_databiox``. Every model shares the data, the splits, the
augmentation and the schedule, so a Table 1 row differs only in
``config.model.name``.

Splits (patient-wise cross-validation): the patients are dealt into
``config.dataset.num_folds`` grade-stratified folds
(``splits.stratified_group_folds``, seed ``split_seed``); fold
``config.dataset.fold`` is the test set and ``val_fraction`` of the other
patients validate (best checkpoint, early stopping), so every patient is
tested exactly once over the folds (``mammojax.experiments.rmcg`` runs them
all and reports mean +/- std). With ``num_folds = 1`` ``test_fraction`` of
the patients test instead.

Augmentation (the paper: translations and 90/180/270 degree rotations),
inside the jitted train step on the step's key: each tile is rotated by a
uniformly drawn multiple of 90 degrees and shifted by up to
``config.augment.max_shift`` (a fraction of the side) in each direction with
reflection padding. Rotations need square inputs.

Loss (eq. 7): the cross-entropy of ``objectives.classification`` plus the
auxiliary term ``l2_head`` = ``(lambda / 2) ||w||^2`` of the last layer's
kernel (``config.l2_head``; logged as ``aux`` by the shared steps).
"""

from typing import Any

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mammojax.data import images as images_lib
from mammojax.data import splits as splits_lib
from mammojax.models import rmcg as rmcg_model
from mammojax.objectives import classification
from mammojax.reporting import rmcg as report_lib
from mammojax.training import validation

TASK = "grade"


# ----------------------------------------------------------------------------
# Data.


def grade_splits(config: ml_collections.ConfigDict, patient_ids, grades):
  """Patient-wise CV splits: fold ``fold`` tests, ``val_fraction`` validates."""
  ds = config.dataset
  num_folds = int(ds.num_folds)
  if num_folds > 1:
    if not 0 <= int(ds.fold) < num_folds:
      raise ValueError(
          f"config.dataset.fold={ds.fold}: expected 0..{num_folds - 1}")
    num_patients = len(set(patient_ids))
    if num_patients < num_folds:
      raise ValueError(
          f"config.dataset.num_folds={num_folds}: only {num_patients} "
          "patients")
    folds = splits_lib.stratified_group_folds(
        patient_ids, grades, num_folds, int(ds.split_seed))
    fixed_test = folds == int(ds.fold)
  else:
    fixed_test = None
  return splits_lib.patient_splits(
      patient_ids, grades, val_fraction=float(ds.val_fraction),
      test_fraction=float(ds.test_fraction), seed=int(ds.split_seed) + 7,
      fixed_test=fixed_test)


def create_grade_data(config, *, num_devices=1, examples_and_info=None):
  """The tiles as ``ImageArrays`` (uint8 ``[N, H, W, 3]``, label ``grade``)."""
  examples, info = images_lib.load_nonempty(
      config, examples_and_info, ("image", "patient_id", "grade"),
      "the rmcg method (Databiox features)")
  per_device = images_lib.check_batch_size(config, num_devices)
  images = np.stack([np.asarray(ex["image"], np.uint8) for ex in examples])
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: images of shape "
        f"{images.shape[1:]}, expected [H, W, 3] RGB tiles")
  if config.augment.enabled and images.shape[1] != images.shape[2]:
    raise ValueError(
        f"config.augment.enabled: 90-degree rotations need square tiles, "
        f"got {images.shape[1:3]} (config.dataset.builder_config="
        f"{config.dataset.builder_config!r})")
  grades = np.asarray([int(ex["grade"]) for ex in examples], np.int64)
  pids = [str(ex["patient_id"]) for ex in examples]
  splits = grade_splits(config, pids, grades)
  data = images_lib.ImageArrays(
      config, examples, info, splits, images, {TASK: grades},
      num_classes={TASK: len(info["vocabularies"]["grade"])},
      balance_field=TASK, per_device_batch_size=per_device)
  data.patient_ids = np.asarray(pids)
  logging.info(
      "rmcg: tiles per split %s, patients per split %s, train grades %s",
      {k: len(v) for k, v in splits.items()},
      {k: len(set(data.patient_ids[v])) for k, v in splits.items()},
      data.class_counts("train", TASK).tolist())
  return data


def histology_augment(max_shift: float):
  """``(images [B, S, S, 3], key) -> images``: k * 90 deg rotation + shift."""

  def one(image, key):
    k_rot, k_y, k_x = jax.random.split(key, 3)
    size = image.shape[0]
    pad = int(round(max_shift * size))
    image = jax.lax.switch(
        jax.random.randint(k_rot, (), 0, 4),
        [lambda im, k=k: jnp.rot90(im, k, axes=(0, 1)) for k in range(4)],
        image)
    if pad == 0:
      return image
    padded = jnp.pad(image, ((pad, pad), (pad, pad), (0, 0)),
                     mode="reflect")
    dy = jax.random.randint(k_y, (), 0, 2 * pad + 1)
    dx = jax.random.randint(k_x, (), 0, 2 * pad + 1)
    return jax.lax.dynamic_slice(padded, (dy, dx, 0),
                                 (size, size, image.shape[2]))

  def augment(images, rng):
    return jax.vmap(one)(images, jax.random.split(rng, images.shape[0]))

  return augment


class GradeTask(classification.ImageClassificationTask):
  """Cross-entropy on ``grade`` + ``(lambda / 2) ||w_head||^2`` (eq. 7)."""

  aux_names = ("l2_head",)

  def __init__(self, model, *, kind: str, l2_head: float, augment=None):
    super().__init__(model, tasks=(TASK,), augment=augment)
    self.kind = kind
    self.l2_head = float(l2_head)

  def normalisers(self, batch):
    # The penalty is per step, not per item: normaliser 1 per device, so
    # the psum over devices of (D penalties) / D gives one penalty.
    return jnp.concatenate([super().normalisers(batch), jnp.ones((1,))])

  def loss_sums(self, params, model_state, batch, rng, *, train: bool):
    sums, aux = super().loss_sums(params, model_state, batch, rng,
                                  train=train)
    w = rmcg_model.head_kernel(params, self.kind)
    penalty = 0.5 * self.l2_head * jnp.sum(jnp.square(w))
    return jnp.concatenate([sums, penalty[None]]), aux

  def gradnorm_layer(self, params):
    return rmcg_model.head_kernel(params, self.kind)


# ----------------------------------------------------------------------------
# The loop's hooks.


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the rmcg config values once, before any work."""
  check = validation.check
  check(config, "model.name", str, choices=rmcg_model.KINDS)
  check(config, "model.hidden", int, minimum=1)
  check(config, "model.num_layers", int, minimum=1)
  check(config, "model.heads", int, minimum=1)
  check(config, "model.top_k", int, minimum=1)
  check(config, "model.mi_bins", int, minimum=2)
  check(config, "model.dropout", float, minimum=0.0, maximum=1.0,
        exclusive_maximum=True)
  check(config, "l2_head", float, minimum=0.0)
  check(config, "augment.max_shift", float, minimum=0.0, maximum=0.5)
  if config.model.name in ("resnet18_gat", "rmcg") and (
      config.model.hidden % config.model.heads):
    raise ValueError(
        f"config.model.hidden={config.model.hidden}: expected a multiple of "
        f"config.model.heads={config.model.heads}")


def create_data(config, *, num_devices, examples_and_info):
  return create_grade_data(config, num_devices=num_devices,
                           examples_and_info=examples_and_info)


def create_model(config, vocabularies) -> rmcg_model.GradeClassifier:
  m = config.model
  return rmcg_model.GradeClassifier(
      kind=m.name, num_classes=len(vocabularies["grade"]),
      stage_sizes=tuple(m.stage_sizes), hidden=int(m.hidden),
      num_layers=int(m.num_layers), heads=int(m.heads),
      top_k=int(m.top_k), mi_bins=int(m.mi_bins),
      dropout=float(m.dropout), gcnii_alpha=float(m.gcnii_alpha),
      gcnii_theta=float(m.gcnii_theta),
      alexnet_hidden=int(m.alexnet_hidden))


def create_task(config, model, data):
  del data
  aug = config.augment
  return GradeTask(
      model, kind=config.model.name, l2_head=config.l2_head,
      augment=histology_augment(float(aug.max_shift)) if aug.enabled
      else None)


def class_names(data: Any, task: str) -> list[str]:
  del task
  return list(data.vocabularies["grade"])


def num_items(batch) -> int:
  return int(np.sum(np.asarray(batch["mask"])))


def write_report(workdir, config, data, results, raw_outputs, state) -> None:
  del state
  report_lib.write_run_report(workdir, config, data, results, raw_outputs)
