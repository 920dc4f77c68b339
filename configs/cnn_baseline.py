"""CNN baselines of the MT-GCN paper's Table 1 (ResNet, DenseNet, ...).

Variants (``--config=configs/cnn_baseline.py:VARIANT``):

* ``{model}_{level}`` for ``model`` in ``resnet18``, ``resnet34``,
  ``densenet121``, ``mobilenet_v2``, ``shufflenet_v2_x1_0`` and ``level`` in
  ``image`` (the cluster crop at 96 x 96 -> distribution, task ``graph``) or
  ``patch`` (each calcification patch upsampled to 32 x 32 -> morphology,
  task ``node``), e.g. ``resnet18_image``, ``densenet121_patch``. Sizes are
  chosen for a CPU; set ``baseline.image_size`` / ``patch_size`` higher on
  an accelerator.
* ``default`` -- ``resnet18_image``.
* ``test`` -- a tiny CPU configuration (1-block ResNet, 32 x 32 crops) used
  by the test suite; set ``baseline.level`` to ``patch`` for the patch level.

The dataset fields (patient-wise splits, k-fold, class balancing) are those
of ``configs/mtgcn.py``, so a baseline and MT-GCN fold hold the same patients.
"""

import os
import sys

import ml_collections

# The repository root, so that the shared blocks import when this file is
# loaded by path (``--config=configs/X.py``) from any working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position

MODELS = (
    "resnet18", "resnet34", "densenet121", "mobilenet_v2",
    "shufflenet_v2_x1_0",
)
LEVELS = ("image", "patch")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the CNN baseline configuration for ``variant``."""
  config = ml_collections.ConfigDict()
  config.method = "cnn_baseline"
  config.seed = 0

  # Dataset: the fields of configs/mtgcn.py. Class-balanced resampling
  # balances the target (distribution at the image level, morphology at the
  # patch level).
  config.dataset = common.dataset("synthetic_calcifications")  # 390 images.

  # The baseline.
  config.baseline = ml_collections.ConfigDict()
  config.baseline.level = "image"  # image (-> distribution) | patch (-> morph.)
  config.baseline.model = "resnet18"  # A key of mammojax.models.cnn.MODELS.
  config.baseline.image_size = 96  # Cluster crop (192 x 192) resized to this.
  config.baseline.patch_size = 32  # Calcification patch (14 x 14) resized.
  config.baseline.dropout = 0.2  # Before the classification head.
  config.baseline.flip = True  # Random horizontal / vertical flips.
  config.baseline.pixel_mean = 0.449
  config.baseline.pixel_std = 0.226
  # Extra backbone constructor arguments (e.g. stage_sizes for tiny ResNets).
  config.baseline.model_kwargs = ml_collections.ConfigDict()

  # One task, named like MT-GCN's and set by baseline.level: graph
  # (distribution) or node (morphology). () derives it from the level; a
  # non-empty value must match it.
  config.tasks = ()
  config.class_weighting = "none"  # none | inverse | effective (CE weights).

  # Optimisation.
  common.optimization(
      config, optimizer="adamw", learning_rate=1e-3, weight_decay=1e-4,
      batch_size=32, num_epochs=30,
  )

  def set_level(level):
    config.baseline.level = level
    if level == "patch":
      config.batch_size = 128  # Patches are small and many.

  if variant == "default":
    pass
  elif variant == "test":
    config.dataset.builder_config = "tiny"
    config.baseline.image_size = 32
    config.baseline.patch_size = 32
    config.baseline.model_kwargs.stage_sizes = (1, 1, 1, 1)
    config.batch_size = 8
    config.num_epochs = 1
    config.early_stopping_patience = 0
    config.log_every_steps = 1
  else:
    model, _, level = variant.rpartition("_")
    if model not in MODELS or level not in LEVELS:
      known = ", ".join(f"{m}_{l}" for m in MODELS for l in LEVELS)
      raise ValueError(
          f"configs/cnn_baseline.py: unknown variant {variant!r}; expected "
          f"default, test or one of {known}"
      )
    config.baseline.model = model
    set_level(level)
  return config
