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
memory as uint8 ``[N, H, W]`` (``data.images.ImageArrays``). Splits are
patient-wise and computed on *all* images with ``splits.patient_splits``
(stratified by benign / non-luminal / luminal): ``test_fraction`` of the
patients form the independent test set, the rest is split in ``num_folds``
folds with fold ``fold`` validating. Each
split then keeps the images that have a label for one of ``config.tasks``,
so pretraining and transfer of a fold share test and validation patients.
Weighted random sampling balances ``config.dataset.balance_field`` when
``class_balanced``. The loss is
``objectives.classification.ImageClassificationTask``.

Prediction (``predict_images``, the hook of ``python -m mammojax.predict``):
each file is read as the whole-image builders read it (the run's builder
config: ``downsample``, then ``load_dicom`` with orientation, breast crop
and resize to its ``image_size``; then ``config.dataset.image_size``), the
images are batched to ``config.batch_size`` (one compilation) and one
jitted Grad-CAM pass gives the logits and the map: the predicted class of
the luminal head, or the sigmoid logit of ``config.report.gradcam_task``
(default the last task) for MLMC pretraining. Probabilities are the
softmax (luminal) or per-task sigmoids (MLMC, ``[1 - p, p]``); the map is
taken back into the stored grid (``inference.ingest.view_map_to_stored``)
for the overlay.

Augmentation (flip, AugMix, equalisation, erasing with the paper's
probabilities, ``config.augment``) runs inside the jitted train step on the
step's key (``fold_in(loop_rng, step)``), so resumed runs replay it.
"""

from typing import Any, Mapping, Optional, Sequence

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import tqdm

from mammojax.data import augment as augment_lib
from mammojax.data import dicom
from mammojax.data.builders import base as builders_base
from mammojax.inference import datasets as inference_datasets
from mammojax.inference import ingest
from mammojax.inference import results as results_lib
from mammojax.inference import run as run_lib
from mammojax.models import gradcam as gradcam_lib
from mammojax.data import images as images_lib
from mammojax.data import splits as splits_lib
from mammojax.models import cnn
from mammojax.models.cnn import classifier
from mammojax.objectives import classification
from mammojax.reporting import luminal as report_lib
from mammojax.training import checkpoints
from mammojax.training import validation

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


def stratification_labels(luminal: np.ndarray) -> np.ndarray:
  """0 no subtype (benign), 1 non-luminal, 2 luminal."""
  return np.asarray(luminal, np.int64) + 1


def create_image_data(
    config: ml_collections.ConfigDict,
    *,
    num_devices: int = 1,
    examples_and_info: Optional[tuple[list[dict[str, Any]], dict]] = None,
) -> images_lib.ImageArrays:
  """Loads the whole-image dataset, splits it by patient, keeps labelled items.

  Args:
    config: the experiment configuration (``dataset``, ``tasks``,
      ``batch_size``, ``seed``).
    num_devices: devices the global ``config.batch_size`` is split over.
    examples_and_info: already loaded ``pipeline.load_examples`` output.

  Returns:
    The ``ImageArrays``.
  """
  tasks = check_tasks(config.tasks)
  examples, info = images_lib.load_nonempty(
      config, examples_and_info, ("image", "patient_id") + LABEL_FIELDS,
      "the luminal method (whole-image features)",
  )
  per_device = images_lib.check_batch_size(config, num_devices)
  ds = config.dataset
  images = np.stack([np.asarray(ex["image"], np.uint8) for ex in examples])
  images = images_lib.resize_images(images, ds.get("image_size") or ())
  labels = {
      f: np.asarray([int(ex[f]) for ex in examples], np.int64)
      for f in LABEL_FIELDS
  }
  splits = splits_lib.patient_splits(
      [ex["patient_id"] for ex in examples],
      stratification_labels(labels[LUMINAL_TASK]),
      val_fraction=ds.val_fraction,
      test_fraction=ds.test_fraction,
      num_folds=ds.num_folds,
      fold=ds.fold,
      seed=ds.split_seed,
      fixed_test=splits_lib.official_test(examples),
  )
  known = np.zeros(len(examples), bool)
  for t in tasks:
    known |= labels[t] >= 0
  splits = {k: v[known[v]] for k, v in splits.items()}
  data = images_lib.ImageArrays(
      config, examples, info, splits, images, labels,
      num_classes={f: 2 for f in LABEL_FIELDS},
      balance_field=ds.get("balance_field") or tasks[0],
      per_device_batch_size=per_device,
  )
  logging.info(
      "tasks %s: images per split %s; %s",
      tasks,
      {k: len(v) for k, v in splits.items()},
      {t: {k: data.class_counts(k, t).tolist() for k in splits}
       for t in tasks},
  )
  return data


HEAD = ("backbone", "fc")


# ----------------------------------------------------------------------------
# Initial weights.


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
    source = checkpoints.restore_best_variables(
        config.init_from, config_key="config.init_from"
    )
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
# The loop's hooks.


def mammography_augment(probs: Mapping[str, float]):
  """``(images, key) -> images``: the paper's augmentation per image."""

  def augment(images, rng):
    keys = jax.random.split(rng, images.shape[0])
    # lax.map keeps real branching: AugMix (p=0.2) is skipped when it
    # does not fire, which vmap's select would not do.
    return jax.lax.map(
        lambda args: augment_lib.mammography_augment(args[0], args[1], **probs),
        (images, keys),
    )

  return augment


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the luminal method's config values once, before any work."""
  check_tasks(config.tasks)
  check = validation.check
  check(config, "model.name", str, choices=tuple(sorted(cnn.MODELS)))
  check(config, "model.dropout", float, minimum=0.0, maximum=1.0,
        exclusive_maximum=True)
  if config.augment.enabled:
    for key in ("p_flip", "p_augmix", "p_equalize", "p_erase"):
      check(config, f"augment.{key}", float, minimum=0.0, maximum=1.0)


def create_data(config, *, num_devices, examples_and_info):
  return create_image_data(
      config, num_devices=num_devices, examples_and_info=examples_and_info
  )


def create_model(config, vocabularies) -> classifier.ImageClassifier:
  """ResNet-18 (``config.model.name``) with the stage's head."""
  del vocabularies
  stage_sizes = tuple(config.model.get("stage_sizes", ()) or ())
  return classifier.ImageClassifier(
      backbone=config.model.name,
      num_outputs=num_outputs(config.tasks),
      dropout=config.model.dropout,
      backbone_kwargs=(("stage_sizes", stage_sizes),) if stage_sizes else (),
      pixel_mean=config.model.get("pixel_mean", 0.449),
      pixel_std=config.model.get("pixel_std", 0.226),
  )


def create_task(config, model, data):
  """Multi-label BCE (pretraining) or 2-way softmax CE (luminal)."""
  del data
  aug = config.augment
  augment = None
  if aug.enabled:
    augment = mammography_augment(
        {k: float(aug[k])
         for k in ("p_flip", "p_augmix", "p_equalize", "p_erase")}
    )
  tasks = check_tasks(config.tasks)
  return classification.ImageClassificationTask(
      model, tasks=tasks, multi_label=tasks != (LUMINAL_TASK,),
      augment=augment,
  )


def class_names(data: Any, task: str) -> list[str]:
  """Class names of ``task`` (luminal from the dataset's vocabulary)."""
  if task == LUMINAL_TASK:
    return list(data.vocabularies.get(
        "luminal", ["non_luminal", "luminal"]
    ))
  return list(_BINARY_CLASS_NAMES[task])


def num_items(batch) -> int:
  return int(np.sum(np.asarray(batch["mask"])))


def write_report(workdir, config, data, results, raw_outputs, state) -> None:
  """Predictions, ROC / confusion figures, Grad-CAM overlays, report.md."""
  report_lib.write_run_report(
      workdir, config, data, results, raw_outputs, state,
      model=create_model(config, data.vocabularies),
      class_names={t: class_names(data, t) for t in config.tasks},
  )


# ----------------------------------------------------------------------------
# Prediction (python -m mammojax.predict).


def _class_names(vocabularies, task: str) -> list[str]:
  if task == LUMINAL_TASK:
    return list(vocabularies.get("luminal", ["non_luminal", "luminal"]))
  return list(_BINARY_CLASS_NAMES[task])


def predict_images(run, sources, *, timer, annotations=None,
                   detector_overrides=None, progress=True):
  """Image-level probabilities and a Grad-CAM map per image.

  Args:
    run: the restored run (``inference.run.Run``).
    sources: DICOM paths.
    timer: ``inference.results.Timer``.
    annotations, detector_overrides: unused (whole-image method).
    progress: show a progress bar.

  Returns:
    One ``inference.results.ImagePrediction`` per source, in order.
  """
  del annotations, detector_overrides
  config = run.config
  tasks = check_tasks(config.tasks)
  built = inference_datasets.builder_config(config.dataset, "image_size")
  size = tuple(built.image_size) if built is not None else (256, 160)
  downsample = int(getattr(built, "downsample", 1) or 1)
  predictions, images, views = [], [], []
  for source in tqdm.tqdm(sources, desc="images", disable=not progress):
    try:
      with timer.stage("ingestion"):
        ds, view = ingest.load_whole_image(source, size, downsample)
        ingest.check_breast(view.image, source)
        stored = ingest.load(ds, orient=False, crop=False)
    except results_lib.PredictError as e:
      predictions.append(results_lib.failed(str(source), e))
      continue
    pred = results_lib.ImagePrediction(
        source=str(source), kind=results_lib.KIND_IMAGE,
        meta=dicom_meta(source, stored.meta), image=stored.image,
        geometry=dict(ingest.geometry(view), downsample=downsample))
    predictions.append(pred)
    image = builders_base.to_uint8(view.image)[None]
    images.append(images_lib.resize_images(
        image, config.dataset.get("image_size") or ())[0])
    views.append((pred, view))
  if not images:
    return predictions
  with timer.stage("model"):
    model = create_model(config, run.vocabularies)
    batch_size = int(config.batch_size)
    stack = np.stack(images).astype(np.float32) / 255.0
    variables = run_lib.check_variables(run, model, stack[:1], train=False)
    focus = config.get("report", {}).get("gradcam_task") or tasks[-1]
    focus = focus if focus in tasks else tasks[-1]
    softmax = tasks == (LUMINAL_TASK,)
    targets = None if softmax else tasks.index(focus)
    logits, cams = gradcam_lib.gradcam_batches(
        model, variables, stack, layer=cnn.GRADCAM_LAYERS[config.model.name],
        batch_size=batch_size, targets=targets)
  for (pred, view), row, cam in zip(views, logits, cams):
    row = np.asarray(row, np.float64)
    if softmax:
      p = np.exp(row - row.max())
      p /= p.sum()
      names = _class_names(run.vocabularies, LUMINAL_TASK)
      pred.image_probabilities = {
          LUMINAL_TASK: {n: float(v) for n, v in zip(names, p)}}
    else:
      for t, z in zip(tasks, row):
        p1 = float(1 / (1 + np.exp(-z)))
        names = _class_names(run.vocabularies, t)
        pred.image_probabilities[t] = {names[0]: 1 - p1, names[1]: p1}
    pred.counts = {"gradcam_task": focus}
    pred.heatmap = ingest.view_map_to_stored(cam, view)
  return predictions


def dicom_meta(source, meta):
  """The header facts of the file (not of its downsampled in-memory copy)."""
  if getattr(meta, "rows", None) is None:
    return meta
  try:
    return dicom.read_metadata(source)
  except dicom.DicomError:
    return meta
