"""Input pipeline: TFDS builders -> ``tfds.data_source`` -> in-memory examples.

``load_examples`` builds (or reuses) a dataset's ``array_record`` files and
reads every example into host memory (the datasets of the methods are small);
``ArrayBatches`` turns in-memory arrays into fixed-shape batches. Splits live
in ``splits.py``, graph data in ``graph_data.py``, image data in
``images.py``.
"""

import dataclasses
import hashlib
import importlib
import json
import os
import pathlib
from typing import Any, Sequence

import jax
import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from mammojax.data import builders
from mammojax.data import dicom


def default_data_dir() -> str:
  """``$MAMMOJAX_DATA_DIR`` or ``~/mammojax_data/tfds``."""
  return os.environ.get(
      "MAMMOJAX_DATA_DIR",
      str(pathlib.Path.home() / "mammojax_data" / "tfds"),
  )


def per_device_batch_size(
    config: ml_collections.ConfigDict, num_devices: int
) -> int:
  """``config.batch_size`` (global) split over every process's devices."""
  processes = jax.process_count()
  total = num_devices * processes
  if config.batch_size % total:
    raise ValueError(
        f"config.batch_size={config.batch_size} is not divisible by the "
        f"{total} devices ({processes} processes x {num_devices} "
        "config.num_devices)" if processes > 1 else
        f"config.batch_size={config.batch_size} is not divisible by the "
        f"{num_devices} devices"
    )
  return config.batch_size // total


def prepare_builder(dataset_config: ml_collections.ConfigDict):
  """Builds (or reuses the cached) TFDS dataset; returns the builder.

  In a multi-process run process 0 builds first and the others then reuse
  its files (a shared data dir is not built twice at once).
  """
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top

    if jax.process_index() == 0:
      builder = _prepare_builder(dataset_config)
    multihost_utils.sync_global_devices("mammojax_prepare_builder")
    if jax.process_index() != 0:
      builder = _prepare_builder(dataset_config)
    return builder
  return _prepare_builder(dataset_config)


# ``config.dataset`` keys that set the same-named field of the builder config
# (DICOM ingestion options of the builders that read user files).
INGESTION_KEYS = ("accept_non_mg", "for_processing")


def builder_config(dataset_config: ml_collections.ConfigDict, builder_cls):
  """The named builder config, with ``INGESTION_KEYS`` overrides applied.

  Returns the config name (a string) when nothing is overridden, else a
  copy of that config named ``<name>-<hash of the overrides>`` (its own
  cache folder under the data dir).

  Raises:
    ValueError: an override the dataset's builder does not take, or a bad
      value (names the config key).
  """
  name = dataset_config.get("builder_config") or "default"
  configs = builder_cls.builder_configs
  if name not in configs:
    raise ValueError(
        f"config.dataset.builder_config={name!r}: dataset "
        f"{dataset_config.name!r} has the configs {sorted(configs)}")
  base = configs[name]
  overrides = {}
  for key in INGESTION_KEYS:
    if key not in dataset_config:
      continue
    value = dataset_config[key]
    if isinstance(value, list):
      value = tuple(value)
    if not hasattr(base, key):
      default = () if key == "accept_non_mg" else "display"
      if value != default:
        raise ValueError(
            f"config.dataset.{key}={value!r}: dataset "
            f"{dataset_config.name!r} does not read user DICOM files; the "
            "ingestion options apply to the real-data builders")
      continue
    if key == "accept_non_mg":
      value = dicom.check_accept_rules(value, f"config.dataset.{key}")
    if key == "for_processing" and value not in dicom.FOR_PROCESSING_MODES:
      raise ValueError(
          f"config.dataset.for_processing={value!r}: expected one of "
          f"{dicom.FOR_PROCESSING_MODES}")
    if value != getattr(base, key):
      overrides[key] = value
  if not overrides:
    return name
  digest = hashlib.sha256(
      json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
  return dataclasses.replace(base, name=f"{name}-{digest}", **overrides)


def _prepare_builder(dataset_config: ml_collections.ConfigDict):
  name = dataset_config.name
  if name not in builders.BUILDER_MODULES:
    raise ValueError(
        f"config.dataset.name={name!r}: expected one of "
        f"{sorted(builders.BUILDER_MODULES)}"
    )
  data_dir = dataset_config.get("data_dir") or default_data_dir()
  # Importing the module registers the builder with TFDS.
  try:
    importlib.import_module(builders.BUILDER_MODULES[name])
  except ModuleNotFoundError as e:
    raise ValueError(
        f"config.dataset.name={name!r}: its builder module "
        f"{builders.BUILDER_MODULES[name]} is not available ({e})"
    ) from e
  kwargs = {"config": builder_config(dataset_config,
                                     tfds.builder_cls(name))}
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
      builder_kwargs={"config": builder.builder_config},
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

  def batches(
      self, indices: Sequence[int], *, num_devices: int = 1,
      process_index: int = 0, process_count: int = 1,
  ):
    """Fixed-shape batches of ``indices``, this process's part of each.

    A global step takes ``per_device_batch_size * num_devices *
    process_count`` consecutive items; process ``process_index`` gets rows
    ``[process_index * num_devices * per_device, ...)`` of it, stacked per
    local device whenever the step is pmapped (``num_devices > 1`` or
    several processes).
    """
    indices = np.asarray(indices, np.int64)
    local = self.per_device_batch_size * num_devices
    size = local * process_count
    stack = num_devices > 1 or process_count > 1
    for start in range(0, len(indices), size):
      first = start + process_index * local
      batch = self._batch(indices[first : min(first + local, start + size)],
                          local)
      if stack:
        batch = {
            k: v.reshape((num_devices, -1) + v.shape[1:])
            for k, v in batch.items()
        }
      yield batch

  def train_batches(self, epoch: int, **shard):
    """Batches of training epoch ``epoch`` (no padding; see ``batches``)."""
    return self.batches(self.epoch_order(epoch), **shard)

  def eval_batches(self, split: str, **shard):
    """Batches of ``split`` in a fixed order (last one padded)."""
    return self.batches(self.splits[split], **shard)
