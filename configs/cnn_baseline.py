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

import ml_collections

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

  # Dataset: the fields of configs/mtgcn.py.
  config.dataset = ml_collections.ConfigDict()
  config.dataset.name = "synthetic_calcifications"
  config.dataset.builder_config = "default"  # 390 images / 200 patients.
  config.dataset.data_dir = ""  # "" -> $MAMMOJAX_DATA_DIR or ~/mammojax_data.
  config.dataset.manual_dir = ""  # Real data / DICOM folder, if any.
  config.dataset.morphology_field = "morphology"
  config.dataset.distribution_field = "distribution"
  config.dataset.val_fraction = 0.1
  config.dataset.test_fraction = 0.2
  config.dataset.num_folds = 1
  config.dataset.fold = 0
  config.dataset.split_seed = 0
  # Resample the training items to balance the target (distribution at the
  # image level, morphology at the patch level).
  config.dataset.class_balanced = True

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
  config.task_weights = (1.0,)
  config.class_weighting = "none"  # none | inverse (per-class CE weights).
  config.gradnorm = ml_collections.ConfigDict()  # Unused (one task).
  config.gradnorm.enabled = False
  config.gradnorm.alpha = 1.5
  config.gradnorm.learning_rate = 1e-3
  config.gradnorm.initial_loss = "first"

  # Optimisation.
  config.optimizer = "adamw"
  config.learning_rate = 1e-3
  config.weight_decay = 1e-4
  config.grad_clip_norm = 0.0
  config.batch_size = 32  # Items per step, over all devices.
  config.num_epochs = 30
  config.early_stopping_patience = 10  # Epochs; 0 disables.
  config.selection_metric = "val/mean_auc"
  config.num_devices = 0  # 0 = all local devices.
  config.multihost = False
  config.log_every_steps = 10

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
