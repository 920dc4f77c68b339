"""Input pipeline: TFDS data source -> patient-wise splits -> padded batches.

The calcification-graph datasets are small (hundreds of clusters), so every
example is read once from the ``array_record`` data source into host memory;
graphs are built once per example for the configured graph types. Batches are
packed in order into one fixed padding budget, so a jitted step compiles once.

Determinism: the split depends only on ``config.dataset.split_seed`` and the
patient ids; the order (and class-balanced resampling) of epoch ``e`` depends
only on ``(config.seed, e)``, so a resumed run sees exactly the batches the
interrupted run would have seen.
"""

import dataclasses
import importlib
import os
import pathlib
from typing import Any, Iterator, Optional, Sequence

from absl import logging
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from mammojax.data import batching
from mammojax.data import builders
from mammojax.data import graphs as graphs_lib



def default_data_dir() -> str:
  """``$MAMMOJAX_DATA_DIR`` or ``~/mammojax_data/tfds``."""
  return os.environ.get(
      "MAMMOJAX_DATA_DIR",
      str(pathlib.Path.home() / "mammojax_data" / "tfds"),
  )


def prepare_builder(dataset_config: ml_collections.ConfigDict):
  """Builds (or reuses the cached) TFDS dataset; returns the builder."""
  name = dataset_config.name
  if name not in builders.BUILDER_MODULES:
    raise ValueError(
        f"config.dataset.name={name!r}: expected one of "
        f"{sorted(builders.BUILDER_MODULES)}"
    )
  data_dir = dataset_config.get("data_dir") or default_data_dir()
  kwargs = {}
  if dataset_config.get("builder_config"):
    kwargs["config"] = dataset_config.builder_config
  # Importing the module registers the builder with TFDS.
  try:
    importlib.import_module(builders.BUILDER_MODULES[name])
  except ModuleNotFoundError as e:
    raise ValueError(
        f"config.dataset.name={name!r}: its builder module "
        f"{builders.BUILDER_MODULES[name]} is not available ({e})"
    ) from e
  builder = tfds.builder(
      name, data_dir=data_dir, file_format="array_record", **kwargs
  )
  download_config = None
  if dataset_config.get("manual_dir"):
    manual_dir = os.path.expanduser(dataset_config.manual_dir)
    if not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
      raise ValueError(
          f"config.dataset.manual_dir={manual_dir!r}: not a folder or empty;"
          f" dataset {name!r} expects: "
          f"{(builder.MANUAL_DOWNLOAD_INSTRUCTIONS or '').strip()}"
      )
    download_config = tfds.download.DownloadConfig(manual_dir=manual_dir)
  elif builder.MANUAL_DOWNLOAD_INSTRUCTIONS:
    raise ValueError(
        f"config.dataset.manual_dir: dataset {name!r} is built from files "
        f"you provide: {builder.MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
    )
  builder.download_and_prepare(download_config=download_config)
  return builder


def load_examples(
    dataset_config: ml_collections.ConfigDict,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """Reads every example of every split into memory.

  Returns:
    ``(examples, info)``: the examples (each with a ``source_split`` key) and
    a dict with ``vocabularies`` and ``build_report``.
  """
  builder = prepare_builder(dataset_config)
  sources = tfds.data_source(
      builder.name,
      data_dir=builder.data_dir_root,
      builder_kwargs={"config": builder.builder_config.name},
  )
  examples = []
  for split, source in sources.items():
    for i in range(len(source)):
      ex = dict(source[i])
      for key in ("example_id", "patient_id", "image_id", "laterality",
                  "view"):
        if isinstance(ex.get(key), bytes):
          ex[key] = ex[key].decode("utf-8")
      ex["source_split"] = split
      examples.append(ex)
  examples.sort(key=lambda e: e["example_id"])
  metadata = dict(builder.info.metadata)
  info = {
      "vocabularies": {
          k: list(v) for k, v in metadata["vocabularies"].items()
      },
      "build_report": metadata.get("build_report", {}),
  }
  return examples, info


def stratified_group_folds(
    patient_ids: Sequence[str], labels: Sequence[int], num_folds: int,
    seed: int,
) -> np.ndarray:
  """Assigns every example a fold in ``0..num_folds-1``, patient-wise.

  Patients are grouped by their most frequent label (stratification), each
  group is shuffled with ``seed`` and dealt round-robin into the folds, with
  the deal continuing across groups so that fold sizes stay balanced. All
  examples of a patient share a fold.
  """
  patient_ids = np.asarray(patient_ids)
  labels = np.asarray(labels)
  patients = sorted(set(patient_ids.tolist()))
  majority = {}
  for p in patients:
    values, counts = np.unique(labels[patient_ids == p], return_counts=True)
    majority[p] = int(values[np.argmax(counts)])
  rng = np.random.default_rng(seed)
  fold_of = {}
  position = 0
  for label in sorted(set(majority.values())):
    group = [p for p in patients if majority[p] == label]
    for p in rng.permutation(np.asarray(group, dtype=object)).tolist():
      fold_of[p] = position % num_folds
      position += 1
  return np.asarray([fold_of[p] for p in patient_ids.tolist()], np.int64)


def patient_splits(
    patient_ids: Sequence[str],
    labels: Sequence[int],
    *,
    val_fraction: float,
    test_fraction: float,
    num_folds: int = 1,
    fold: int = 0,
    seed: int = 0,
    fixed_test: Optional[np.ndarray] = None,
) -> dict[str, np.ndarray]:
  """Patient-wise stratified train/val/test indices.

  No patient appears in two splits. With ``num_folds > 1`` the patients not in
  the test set are divided into ``num_folds`` stratified folds and fold
  ``fold`` is the validation set (k-fold cross-validation); otherwise
  ``val_fraction`` of the patients form the validation set.

  Args:
    patient_ids: patient id of every example.
    labels: the stratification label of every example.
    val_fraction: fraction of patients for validation (without k-fold).
    test_fraction: fraction of patients held out for testing (ignored when
      ``fixed_test`` is given, e.g. an official test split).
    num_folds: k of k-fold cross-validation (1 = no CV).
    fold: which fold is the validation fold.
    seed: the split seed.
    fixed_test: boolean mask of examples that form the test set.

  Returns:
    ``{'train', 'val', 'test'}`` -> sorted example indices.
  """
  patient_ids = np.asarray(patient_ids)
  labels = np.asarray(labels)
  index = np.arange(len(patient_ids))
  if num_folds > 1 and not 0 <= fold < num_folds:
    raise ValueError(
        f"config.dataset.fold={fold}: expected 0..{num_folds - 1}"
    )
  for name, value in (("val_fraction", val_fraction),
                      ("test_fraction", test_fraction)):
    if not 0.0 <= value < 1.0:
      raise ValueError(
          f"config.dataset.{name}={value}: expected a fraction in [0, 1)"
      )

  def carve(idx, fraction, salt):
    """Splits ``idx`` by patients; returns (rest, held_out)."""
    if fraction <= 0 or len(idx) == 0:
      return idx, idx[:0]
    k = max(2, int(round(1.0 / fraction)))
    folds = stratified_group_folds(
        patient_ids[idx], labels[idx], k, seed + salt
    )
    return idx[folds != 0], idx[folds == 0]

  if fixed_test is not None:
    test = index[fixed_test]
    rest = index[~fixed_test]
    leaked = set(patient_ids[test]) & set(patient_ids[rest])
    if leaked:
      logging.warning(
          "%d patients are in the official test split and in training "
          "data; their training examples are dropped to avoid a leak: %s",
          len(leaked), sorted(leaked)[:10],
      )
      rest = rest[~np.isin(patient_ids[rest], list(leaked))]
  else:
    rest, test = carve(index, test_fraction, 0)
  if num_folds > 1:
    folds = stratified_group_folds(
        patient_ids[rest], labels[rest], num_folds, seed + 1
    )
    train, val = rest[folds != fold], rest[folds == fold]
  else:
    train, val = carve(rest, val_fraction, 1)
  return {
      "train": np.sort(train),
      "val": np.sort(val),
      "test": np.sort(test),
  }


def epoch_order(
    train: np.ndarray,
    labels: Sequence[int],
    *,
    seed: int,
    epoch: int,
    class_balanced: bool,
    size: Optional[int] = None,
) -> np.ndarray:
  """Example indices of training epoch ``epoch``; depends on (seed, epoch).

  With ``class_balanced`` the indices are drawn with replacement with
  probability inversely proportional to their label's frequency (torch's
  ``WeightedRandomSampler``); otherwise they are a permutation of ``train``,
  continued by further permutations when ``size`` exceeds ``len(train)``.

  Args:
    train: training example indices.
    labels: the balancing label of each of them.
    seed: the run seed.
    epoch: the epoch number.
    class_balanced: resample to balance ``labels``.
    size: number of indices (default ``len(train)``).
  """
  train = np.asarray(train)
  size = len(train) if size is None else int(size)
  rng = np.random.default_rng([seed, epoch])
  if class_balanced and len(train):
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    freq = dict(zip(values.tolist(), counts.tolist()))
    p = np.asarray([1.0 / freq[l] for l in labels.tolist()])
    return rng.choice(train, size=size, replace=True, p=p / p.sum())
  order = [rng.permutation(train)]
  while len(train) and sum(len(o) for o in order) < size:
    order.append(rng.permutation(train))
  return np.concatenate(order)[:size]


def _sample_arrays(example: dict[str, Any]) -> dict[str, Any]:
  """Node arrays and graph label of one example for ``graphs``."""
  return {
      "id": example["example_id"],
      "nodes": {
          "patches": np.asarray(example["patches"], np.float32),
          "coords": np.asarray(example["coords"], np.float32),
          "label": np.asarray(example["morphology"], np.int32),
      },
      "label": int(example["distribution"]),
  }


def _all_padding_like(batch: dict[str, Any]) -> dict[str, Any]:
  """A copy of ``batch`` whose every node and graph is masked out."""
  first = next(iter(batch.values()))
  nodes = dict(first.nodes, mask=np.zeros_like(first.nodes["mask"]))
  globals_ = dict(first.globals, mask=np.zeros_like(first.globals["mask"]))
  return {
      t: g._replace(nodes=nodes, globals=globals_) for t, g in batch.items()
  }


class ArrayBatches:
  """Fixed-shape batches of in-memory arrays (the image methods' data).

  Subclasses provide ``per_device_batch_size``, ``splits`` (split name ->
  item indices), ``epoch_order(epoch)`` and ``_batch(indices, size)``, which
  returns a dict of arrays with ``size`` leading rows, the rows past
  ``len(indices)`` masked padding.
  """

  per_device_batch_size: int
  splits: dict[str, np.ndarray]

  def epoch_order(self, epoch: int) -> np.ndarray:
    raise NotImplementedError

  def _batch(self, indices: np.ndarray, size: int) -> dict[str, np.ndarray]:
    raise NotImplementedError

  def batches(self, indices: Sequence[int], *, num_devices: int = 1):
    """Fixed-shape batches of ``indices`` (stacked per device if > 1)."""
    indices = np.asarray(indices, np.int64)
    size = self.per_device_batch_size * num_devices
    for start in range(0, len(indices), size):
      batch = self._batch(indices[start : start + size], size)
      if num_devices > 1:
        batch = {
            k: v.reshape((num_devices, -1) + v.shape[1:])
            for k, v in batch.items()
        }
      yield batch

  def train_batches(self, epoch: int, *, num_devices: int = 1):
    """Batches of training epoch ``epoch`` (no padding)."""
    return self.batches(self.epoch_order(epoch), num_devices=num_devices)

  def eval_batches(self, split: str, *, num_devices: int = 1):
    """Batches of ``split`` in a fixed order (last one padded)."""
    return self.batches(self.splits[split], num_devices=num_devices)


@dataclasses.dataclass
class GraphData:
  """Examples, splits, graphs and the padding budget of one experiment."""

  config: ml_collections.ConfigDict
  examples: list[dict[str, Any]]
  info: dict[str, Any]
  splits: dict[str, np.ndarray]
  sample_graphs: list[dict[str, Any]]
  budget: Any
  per_device_batch_size: int

  @property
  def vocabularies(self) -> dict[str, list[str]]:
    return self.info["vocabularies"]

  def class_counts(self, split: str, task: str) -> np.ndarray:
    """Label counts of ``task`` ('node' or 'graph') in ``split``."""
    vocab = self.vocabularies[
        "morphology" if task == "node" else "distribution"
    ]
    counts = np.zeros(len(vocab), np.int64)
    for i in self.splits[split]:
      ex = self.examples[i]
      labels = (
          np.asarray(ex["morphology"])
          if task == "node"
          else np.asarray([ex["distribution"]])
      )
      labels = labels[labels >= 0]
      counts += np.bincount(labels, minlength=len(vocab))
    return counts

  def epoch_order(self, epoch: int) -> np.ndarray:
    """Example indices of training epoch ``epoch`` (shuffled/resampled)."""
    train = self.splits["train"]
    return epoch_order(
        train,
        [self.examples[i]["distribution"] for i in train],
        seed=self.config.seed,
        epoch=epoch,
        class_balanced=self.config.dataset.class_balanced,
    )

  def batches(
      self, indices: Sequence[int], *, num_devices: int = 1
  ) -> Iterator[Any]:
    """Padded batches; with ``num_devices > 1`` stacked per device.

    The last device group is completed with all-padding batches, which
    contribute nothing to losses or metrics.
    """
    samples = [self.sample_graphs[i] for i in indices]
    iterator = batching.batch_iterator(
        samples, self.budget, batch_size=self.per_device_batch_size
    )
    if num_devices == 1:
      yield from iterator
      return
    from mammojax.training import parallel  # pylint: disable=g-import-not-at-top

    group = []
    for batch in iterator:
      group.append(batch)
      if len(group) == num_devices:
        yield parallel.stack_batches(group)
        group = []
    if group:
      while len(group) < num_devices:
        group.append(_all_padding_like(group[0]))
      yield parallel.stack_batches(group)

  def train_batches(self, epoch: int, *, num_devices: int = 1):
    """Batches of training epoch ``epoch``."""
    return self.batches(self.epoch_order(epoch), num_devices=num_devices)

  def eval_batches(self, split: str, *, num_devices: int = 1):
    """Batches of ``split`` in a fixed order."""
    return self.batches(self.splits[split], num_devices=num_devices)


def cluster_splits(
    config: ml_collections.ConfigDict, examples: Sequence[dict[str, Any]]
) -> dict[str, np.ndarray]:
  """MT-GCN's patient-wise splits of calcification-cluster examples.

  ``patient_splits`` stratified by the cluster's distribution with the
  fields of ``config.dataset``; an official ``test`` source split is kept as
  the test set. Every method on the calcification datasets uses this, so
  their folds hold the same patients.
  """
  ds = config.dataset
  fixed_test = None
  source_splits = {ex["source_split"] for ex in examples}
  if "test" in source_splits:
    fixed_test = np.asarray([ex["source_split"] == "test" for ex in examples])
  return patient_splits(
      [ex["patient_id"] for ex in examples],
      [ex["distribution"] for ex in examples],
      val_fraction=ds.val_fraction,
      test_fraction=ds.test_fraction,
      num_folds=ds.num_folds,
      fold=ds.fold,
      seed=ds.split_seed,
      fixed_test=fixed_test,
  )


def create_graph_data(
    config: ml_collections.ConfigDict,
    *,
    num_devices: int = 1,
    examples_and_info: Optional[tuple[list[dict[str, Any]], dict]] = None,
) -> GraphData:
  """Loads the dataset, splits it by patient and builds every graph."""
  examples, info = examples_and_info or load_examples(config.dataset)
  if not examples:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: the dataset has no "
        f"examples (build report: {info.get('build_report')})"
    )
  splits = cluster_splits(config, examples)
  gcfg = config.graph
  sample_graphs = [
      graphs_lib.build_sample_graphs(
          _sample_arrays(ex),
          graph_types=tuple(gcfg.types),
          knn_k=gcfg.knn_k,
          radius=gcfg.radius,
          max_num_neighbors=gcfg.max_num_neighbors,
      )
      for ex in examples
  ]
  if config.batch_size % num_devices:
    raise ValueError(
        f"config.batch_size={config.batch_size} is not divisible by the "
        f"{num_devices} devices"
    )
  per_device = config.batch_size // num_devices
  budget = batching.estimate_budget(
      sample_graphs,
      per_device,
      graph_types=tuple(gcfg.types),
      strategy=gcfg.get("budget", "max"),
  )
  logging.info(
      "splits: %s; padding budget %s",
      {k: len(v) for k, v in splits.items()},
      budget,
  )
  return GraphData(
      config=config,
      examples=examples,
      info=info,
      splits=splits,
      sample_graphs=sample_graphs,
      budget=budget,
      per_device_batch_size=per_device,
  )
