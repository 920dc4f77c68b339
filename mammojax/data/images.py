"""In-memory images with labels: the image methods' data and batches.

The image methods (the luminal paper's whole mammograms, MT-GCN's CNN
baselines on cluster crops or calcification patches) hold their inputs as
one array ``[N, H, W]`` (uint8, or float in [0, 1]) with one int label array
per field (``-1`` = unknown). Training epochs are ``splits.epoch_order`` over
the training items (class-balanced resampling on ``balance_field`` when
``config.dataset.class_balanced``), filled up to whole global batches, so a
train batch never holds padding (batch norm sees only real inputs);
evaluation batches are padded with masked items to the same fixed shape, and
every real item is evaluated exactly once. Batches are dicts of numpy arrays
(``image`` ``[B, H, W]``, or ``[B, H, W, 3]`` for RGB tiles, one int32
``[B]`` per label field, ``mask`` bool,
``index`` int32 = item index or -1), with a leading device axis
``[D, B / D, ...]`` when ``num_devices > 1``.
"""

import math
from typing import Any, Optional, Sequence

import ml_collections
import numpy as np

from mammojax.data import pipeline
from mammojax.data import resample
from mammojax.data import splits as splits_lib


def resize_images(images: np.ndarray, size: Sequence[int]) -> np.ndarray:
  """``[N, h, w]`` -> ``[N, H, W]`` of the same dtype (area down, linear up).

  ``resample.resize_image`` per image; uint8 results are rounded and clipped
  to 0..255, float results are float32. An empty ``size`` or the stored size
  returns ``images`` unchanged. The stored images are already aspect-fitted
  and zero-padded: ``size`` should keep their aspect ratio.
  """
  size = tuple(int(v) for v in size)
  if not size or tuple(images.shape[1:]) == size:
    return images
  uint8 = images.dtype == np.uint8
  out = np.empty((len(images),) + size, np.uint8 if uint8 else np.float32)
  for i, image in enumerate(images):
    small = resample.resize_image(np.asarray(image, np.float32), size)
    out[i] = np.clip(np.round(small), 0, 255) if uint8 else small
  return out


class ImageArrays(pipeline.ArrayBatches):
  """Images, label fields, splits and fixed-shape batches.

  Attributes:
    config: the experiment configuration.
    examples: the dataset's examples.
    info: ``vocabularies`` and ``build_report`` of the dataset.
    splits: split name -> item indices.
    images: ``[N, H, W]`` inputs, one per item.
    labels: field -> int ``[N]`` labels (-1 unknown).
    num_classes: field -> number of classes.
    balance_field: the field class-balanced sampling balances.
    per_device_batch_size: items per device and step.
    example_index: item -> index of its example (items can be parts of
      examples, e.g. calcification patches); the identity by default.
    example_splits: split name -> example indices (default: ``splits``).
  """

  def __init__(
      self,
      config: ml_collections.ConfigDict,
      examples: list[dict[str, Any]],
      info: dict[str, Any],
      splits: dict[str, np.ndarray],
      images: np.ndarray,
      labels: dict[str, np.ndarray],
      *,
      num_classes: dict[str, int],
      balance_field: str,
      per_device_batch_size: int,
      example_index: Optional[np.ndarray] = None,
      example_splits: Optional[dict[str, np.ndarray]] = None,
  ):
    self.config = config
    self.examples = examples
    self.info = info
    self.splits = splits
    self.images = images
    self.labels = labels
    self.num_classes = num_classes
    self.balance_field = balance_field
    self.per_device_batch_size = per_device_batch_size
    self.example_index = (
        np.arange(len(images)) if example_index is None else example_index
    )
    self.example_splits = splits if example_splits is None else example_splits

  @property
  def vocabularies(self) -> dict[str, list[str]]:
    return self.info["vocabularies"]

  def class_counts(self, split: str, field: str) -> np.ndarray:
    """Counts of the known labels of ``field`` in ``split``."""
    if field not in self.labels:
      raise ValueError(
          f"label field {field!r}: this data holds {sorted(self.labels)}"
      )
    y = self.labels[field][self.splits[split]]
    return np.bincount(y[y >= 0], minlength=self.num_classes[field])

  def epoch_order(self, epoch: int) -> np.ndarray:
    """Training items of ``epoch``, filled up to whole global batches."""
    train = self.splits["train"]
    if not len(train):
      raise ValueError(
          "the training split is empty (config.dataset: too few patients "
          "for the test fraction / folds?)"
      )
    batch = self.config.batch_size
    return splits_lib.epoch_order(
        train,
        self.labels[self.balance_field][train],
        seed=self.config.seed,
        epoch=epoch,
        class_balanced=bool(self.config.dataset.class_balanced),
        size=math.ceil(len(train) / batch) * batch,
    )

  def _batch(self, indices: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """One batch of ``size`` items; missing ones are masked padding."""
    n = len(indices)
    idx = np.zeros(size, np.int64)
    idx[:n] = indices
    mask = np.arange(size) < n
    batch = {
        "image": self.images[idx] * mask.reshape(
            (-1,) + (1,) * (self.images.ndim - 1)
        ).astype(self.images.dtype),
        "mask": mask,
        "index": np.where(mask, idx, -1).astype(np.int32),
    }
    for field, values in self.labels.items():
      batch[field] = np.where(mask, values[idx], -1).astype(np.int32)
    return batch


def check_batch_size(config: ml_collections.ConfigDict, num_devices: int):
  """``config.batch_size`` split over every process's ``num_devices``."""
  return pipeline.per_device_batch_size(config, num_devices)


def load_nonempty(
    config: ml_collections.ConfigDict,
    examples_and_info: Optional[tuple[list[dict[str, Any]], dict]],
    required: Sequence[str],
    needed_by: str,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
  """The dataset's examples, checked to exist and to hold ``required`` keys."""
  examples, info = examples_and_info or pipeline.load_examples(config.dataset)
  if not examples:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: the dataset has no "
        f"examples (build report: {info.get('build_report')})"
    )
  missing = [k for k in required if k not in examples[0]]
  if missing:
    raise ValueError(
        f"config.dataset.name={config.dataset.name!r}: examples lack "
        f"{missing}, needed by {needed_by} (features of "
        "docs/architecture.md)"
    )
  return examples, info
