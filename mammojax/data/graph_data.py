"""Calcification-graph data: examples -> per-sample graphs -> padded batches.

The calcification-graph datasets are small (hundreds of clusters), so every
example is read once into host memory and its graphs are built once for the
configured graph types. Batches are packed in order into one fixed padding
budget (``batching.estimate_budget``), so a jitted step compiles once.
Splits are ``splits.cluster_splits`` (patient-wise).
"""

import dataclasses
from typing import Any, Iterator, Optional, Sequence

from absl import logging
import ml_collections
import numpy as np

from mammojax.data import batching
from mammojax.data import graphs as graphs_lib
from mammojax.data import pipeline
from mammojax.data import splits as splits_lib


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
    return splits_lib.epoch_order(
        train,
        [self.examples[i]["distribution"] for i in train],
        seed=self.config.seed,
        epoch=epoch,
        class_balanced=self.config.dataset.class_balanced,
    )

  def batches(
      self, indices: Sequence[int], *, num_devices: int = 1,
      process_index: int = 0, process_count: int = 1,
  ) -> Iterator[Any]:
    """Padded batches; stacked per local device when there are several.

    A global step takes ``process_count * num_devices`` consecutive per-device
    batches of ``indices``; process ``process_index`` yields the
    ``num_devices`` of them its devices feed (stacked on a leading device
    axis whenever the step is pmapped: ``num_devices > 1`` or several
    processes). Every process packs the same batches, so the processes
    together see each item once. The last global step is completed with
    all-padding batches, which contribute nothing to losses or metrics.
    """
    samples = [self.sample_graphs[i] for i in indices]
    iterator = batching.batch_iterator(
        samples, self.budget, batch_size=self.per_device_batch_size
    )
    if num_devices == 1 and process_count == 1:
      yield from iterator
      return
    size = num_devices * process_count
    mine = slice(process_index * num_devices, (process_index + 1) * num_devices)
    group = []
    for batch in iterator:
      group.append(batch)
      if len(group) == size:
        yield batching.stack_batches(group[mine])
        group = []
    if group:
      while len(group) < size:
        group.append(_all_padding_like(group[0]))
      yield batching.stack_batches(group[mine])

  def train_batches(self, epoch: int, **shard):
    """Batches of training epoch ``epoch`` (``shard``: see ``batches``)."""
    return self.batches(self.epoch_order(epoch), **shard)

  def eval_batches(self, split: str, **shard):
    """Batches of ``split`` in a fixed order (``shard``: see ``batches``)."""
    return self.batches(self.splits[split], **shard)


def create_graph_data(
    config: ml_collections.ConfigDict,
    *,
    num_devices: int = 1,
    examples_and_info: Optional[tuple[list[dict[str, Any]], dict]] = None,
) -> GraphData:
  """Loads the dataset, splits it by patient and builds every graph."""
  examples, info = examples_and_info or pipeline.load_examples(config.dataset)
  if not examples:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: the dataset has no "
        f"examples (build report: {info.get('build_report')})"
    )
  splits = splits_lib.cluster_splits(config, examples)
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
  per_device = pipeline.per_device_batch_size(config, num_devices)
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
