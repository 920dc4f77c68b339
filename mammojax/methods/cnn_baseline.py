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
clusters (``splits.cluster_splits``, same ``config.dataset`` fields, k-fold
included); a patch belongs to the split of its cluster, so no patient is in
two splits. Items with an unknown label (-1) are left out (counted in the
log). ``data.splits`` holds the *items* of each split (clusters or patches),
``data.example_splits`` the clusters, ``data.example_index`` /
``data.node_index`` each item's cluster and calcification (-1 at the image
level).

Data and batches are ``data.images.ImageArrays`` (float32 ``[B, S, S]``
inputs in [0, 1], the target under ``label``; class-balanced resampling on it
when ``config.dataset.class_balanced``); the loss is the class-weighted
cross-entropy of ``objectives.classification.ImageClassificationTask``.
Prediction (``predict_images``, the hook of ``python -m mammojax.predict``):
calcifications and clusters come from the run's detector or an annotations
file, as for MT-GCN (``inference.calcifications.read_and_find``); the
patch level classifies each calcification's patch (the builder's patch,
resized to ``baseline.patch_size``) into a morphology, the image level each
cluster's crop (the builder's square crop, resized to
``baseline.image_size``) into a distribution with a Grad-CAM map of the
predicted class, taken back into the stored grid for the overlay. Inputs
are batched to ``config.batch_size`` (one compilation).

Optional random flips (``config.baseline.flip``) run inside the jitted train
step on the step's key.
"""
from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mammojax.data import calcifications as calcs_lib
from mammojax.data import images as images_lib
from mammojax.data.builders import graph_examples
from mammojax.inference import calcifications as calc_inference
from mammojax.inference import datasets as inference_datasets
from mammojax.inference import run as run_lib
from mammojax.models import gradcam as gradcam_lib
from mammojax.data import splits as splits_lib
from mammojax.models import cnn
from mammojax.models.cnn import classifier
from mammojax.objectives import classification
from mammojax.objectives import losses
from mammojax.reporting import cnn_baseline as report_lib
from mammojax.training import validation

LEVELS = {
    # level -> (task name, example field of the target, input description).
    "image": ("graph", "distribution", "the cluster crop"),
    "patch": ("node", "morphology", "each calcification patch"),
}


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


def create_baseline_data(
    config: ml_collections.ConfigDict,
    *,
    num_devices: int = 1,
    examples_and_info=None,
) -> images_lib.ImageArrays:
  """Loads the cluster dataset, splits it like MT-GCN, builds the inputs."""
  level = check_level(config)
  needed_by = f"config.baseline.level={config.baseline.level!r}"
  examples, info = images_lib.load_nonempty(
      config, examples_and_info, ("patient_id", "distribution", "source_split"),
      needed_by,
  )
  per_device = images_lib.check_batch_size(config, num_devices)
  example_splits = splits_lib.cluster_splits(config, examples)
  bcfg = config.baseline
  task, field, _ = LEVELS[level]
  if level == "image":
    images_lib.load_nonempty(config, (examples, info), ("crop",), needed_by)
    labels = np.asarray([int(ex["distribution"]) for ex in examples])
    keep = np.flatnonzero(labels >= 0)
    crops = np.stack(
        [np.asarray(examples[i]["crop"], np.float32) / 255.0 for i in keep]
    ) if len(keep) else np.zeros((0, 1, 1), np.float32)
    images = images_lib.resize_images(crops, (int(bcfg.image_size),) * 2)
    labels = labels[keep]
    example_index = keep
    node_index = np.full(len(keep), -1, np.int64)
    unknown = len(examples) - len(keep)
  else:
    images_lib.load_nonempty(
        config, (examples, info), ("patches", "morphology"), needed_by
    )
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
    images = images_lib.resize_images(
        np.concatenate(patches), (int(bcfg.patch_size),) * 2
    )
    labels = np.concatenate(labels)
    example_index = np.concatenate(example_index)
    node_index = np.concatenate(node_index)
  example_index = example_index.astype(np.int64)
  in_split = {k: np.isin(example_index, v) for k, v in example_splits.items()}
  data = images_lib.ImageArrays(
      config, examples, info,
      # The items (clusters or patches) of each split, in example order.
      {k: np.flatnonzero(m).astype(np.int64) for k, m in in_split.items()},
      images,
      {"label": labels.astype(np.int64)},
      num_classes={"label": len(info["vocabularies"][field])},
      balance_field="label",
      per_device_batch_size=per_device,
      example_index=example_index,
      example_splits=example_splits,
  )
  data.level, data.task, data.field = level, task, field
  data.node_index = node_index.astype(np.int64)
  logging.info(
      "cnn_baseline %s level: items per split %s (clusters %s), %d items "
      "with an unknown %s left out; train counts %s",
      level,
      {k: len(v) for k, v in data.splits.items()},
      {k: len(v) for k, v in example_splits.items()},
      unknown, field, data.class_counts("train", "label").tolist(),
  )
  return data


def random_flips(images: jax.Array, rng: jax.Array) -> jax.Array:
  """Each item flipped left-right and up-down with probability 1/2 each."""
  flips = jax.random.bernoulli(rng, 0.5, (2, images.shape[0]))
  x = jnp.where(flips[0][:, None, None], images[:, :, ::-1], images)
  return jnp.where(flips[1][:, None, None], x[:, ::-1, :], x)


# ----------------------------------------------------------------------------
# The loop's hooks.


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the baseline's config values once, before any work."""
  check_level(config)
  check = validation.check
  check(config, "baseline.model", str, choices=tuple(sorted(cnn.MODELS)))
  check(config, "baseline.image_size", int, minimum=1)
  check(config, "baseline.patch_size", int, minimum=1)
  check(config, "baseline.dropout", float, minimum=0.0, maximum=1.0,
        exclusive_maximum=True)
  check(config, "class_weighting", str,
        choices=("none", "inverse", "effective"))


def create_data(config, *, num_devices, examples_and_info):
  return create_baseline_data(
      config, num_devices=num_devices, examples_and_info=examples_and_info
  )


def create_model(config, vocabularies) -> classifier.ImageClassifier:
  """The backbone of ``config.baseline.model`` with one logit per class."""
  level = check_level(config)
  bcfg = config.baseline
  kwargs = tuple(
      (k, tuple(v) if isinstance(v, list) else v)
      for k, v in sorted(dict(bcfg.get("model_kwargs") or {}).items())
  )
  return classifier.ImageClassifier(
      backbone=bcfg.model,
      num_outputs=len(vocabularies[LEVELS[level][1]]),
      dropout=float(bcfg.dropout),
      backbone_kwargs=kwargs,
      pixel_mean=float(bcfg.pixel_mean),
      pixel_std=float(bcfg.pixel_std),
  )


def create_task(config, model, data):
  """Class-weighted softmax cross-entropy on the level's target."""
  task = task_of(config)
  weights = losses.class_weights_by_task(
      config.get("class_weighting", "none"),
      {task: data.class_counts("train", "label")},
  ).get(task)
  return classification.ImageClassificationTask(
      model, tasks=(task,), label_keys={task: "label"},
      class_weights=weights,
      augment=random_flips if config.baseline.get("flip", False) else None,
  )


def class_names(data, task: str) -> list[str]:
  fields = {t: field for t, field, _ in LEVELS.values()}
  return list(data.vocabularies[fields[task]])


def num_items(batch) -> int:
  return int(np.sum(np.asarray(batch["mask"])))


def write_report(workdir, config, data, results, raw_outputs, state) -> None:
  del state
  report_lib.write_run_report(
      workdir, config, data, results, raw_outputs,
      input_description=LEVELS[data.level][2],
  )


# ----------------------------------------------------------------------------
# Prediction (python -m mammojax.predict).


def _softmax(logits: np.ndarray) -> np.ndarray:
  z = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return z / z.sum(axis=-1, keepdims=True)


def _cam_to_stored(cam, box, image_shape, flipped):
  """A crop's map back into the stored grid (zeros outside the box)."""
  ix0, iy0, ix1, iy1 = (int(v) for v in box)
  height, width = image_shape
  region = images_lib.resize_images(
      np.asarray(cam, np.float32)[None], (iy1 - iy0, ix1 - ix0))[0]
  out = np.zeros(image_shape, np.float32)
  sx0, sy0, sx1, sy1 = max(ix0, 0), max(iy0, 0), min(ix1, width), min(iy1,
                                                                      height)
  out[sy0:sy1, sx0:sx1] = region[sy0 - iy0:sy1 - iy0, sx0 - ix0:sx1 - ix0]
  return out[:, ::-1] if flipped else out


def predict_images(run, sources, *, timer, annotations=None,
                   detector_overrides=None, progress=True):
  """Morphology per calcification (patch level) or distribution per
  cluster with a Grad-CAM map (image level).

  Args:
    run: the restored run (``inference.run.Run``).
    sources: DICOM paths.
    timer: ``inference.results.Timer``.
    annotations: an ``inference.calcifications.AnnotationIndex``.
    detector_overrides: ``DetectorOptions`` fields to override.
    progress: show a progress bar.

  Returns:
    One ``inference.results.ImagePrediction`` per source, in order.
  """
  config = run.config
  level = check_level(config)
  bcfg = config.baseline
  predictions, found = calc_inference.read_and_find(
      sources, config, timer=timer, annotations=annotations,
      detector_overrides=detector_overrides, progress=progress)
  built = inference_datasets.builder_config(config.dataset, "crop_size")
  crop_size = int(getattr(built, "crop_size", 192))
  inputs, owners = [], []
  with timer.stage("graphs"):
    for image in found:
      full = image.mammogram
      if level == "patch":
        patches = calcs_lib.extract_patches(
            full.image, image.centers_xy, image.patch_size)
        for members in image.clusters:
          for i in members:
            inputs.append(patches[int(i)])
            owners.append((image, int(i), None))
      else:
        spacing = float(full.meta.pixel_spacing_mm[1])
        for k, members in enumerate(image.clusters):
          crop, box = graph_examples._square_crop(  # pylint: disable=protected-access
              full.image, image.centers_xy[members], spacing, crop_size)
          inputs.append(np.asarray(crop, np.float32) / 255.0)
          owners.append((image, k, box))
  if not inputs:
    return predictions
  size = int(bcfg.patch_size if level == "patch" else bcfg.image_size)
  stack = images_lib.resize_images(np.stack(inputs).astype(np.float32),
                                   (size, size))
  with timer.stage("model"):
    model = create_model(config, run.vocabularies)
    variables = run_lib.check_variables(run, model, stack[:1], train=False)
    logits, cams = gradcam_lib.gradcam_batches(
        model, variables, stack, layer=cnn.GRADCAM_LAYERS[bcfg.model],
        batch_size=int(config.batch_size))
    probs = _softmax(logits.astype(np.float64))
  field = LEVELS[level][1]
  names = list(run.vocabularies[field])
  for (image, index, box), p, cam in zip(owners, probs, cams):
    pred = image.prediction
    values = {n: float(v) for n, v in zip(names, p)}
    best = names[int(np.argmax(p))]
    if level == "patch":
      pred.calcifications[index]["morphology"] = values
      pred.calcifications[index]["predicted_morphology"] = best
    else:
      pred.clusters[index]["distribution"] = values
      pred.clusters[index]["predicted_distribution"] = best
      stored = _cam_to_stored(cam, box, image.mammogram.image.shape,
                              image.mammogram.flipped)
      pred.heatmap = (stored if pred.heatmap is None
                      else np.maximum(pred.heatmap, stored))
  return predictions
