"""Input pipeline: TFDS builders -> ``tfds.data_source`` -> in-memory examples.

``load_examples`` builds (or reuses) a dataset's ``array_record`` files and
reads every example into host memory (the datasets of the methods are small);
``ArrayBatches`` turns in-memory arrays into fixed-shape batches. Splits live
in ``splits.py``, graph data in ``graph_data.py``, image data in
``images.py``.
"""

import importlib
import os
import pathlib
from typing import Any, Sequence

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from mammojax.data import builders


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
