"""Config blocks every method shares (imported by ``configs/<method>.py``).

* ``dataset(name, builder_config)``: where the data comes from and the
  patient-wise splits (``mammojax.data.splits``).
* ``optimization(config, ...)``: the shared trainer's keys
  (``mammojax.training.loop``, validated by ``training.validation``).
* ``gradnorm(...)``: GradNorm's block, only in configs with several tasks
  (without it GradNorm is off and ``task_weights`` weight the tasks).
"""

import ml_collections


def dataset(
    name: str,
    builder_config: str = "default",
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    num_folds: int = 1,
    class_balanced: bool = True,
) -> ml_collections.ConfigDict:
  """The ``config.dataset`` block.

  Patient-wise splits: ``test_fraction`` of the patients (or the dataset's
  official test split) test; of the rest, ``val_fraction`` validates, or,
  with ``num_folds > 1``, fold ``fold`` of a stratified k-fold does.
  """
  ds = ml_collections.ConfigDict()
  ds.name = name
  ds.builder_config = builder_config
  ds.data_dir = ""  # "" -> $MAMMOJAX_DATA_DIR or ~/mammojax_data/tfds.
  ds.manual_dir = ""  # Real data / DICOM folder, if any.
  ds.val_fraction = val_fraction
  ds.test_fraction = test_fraction
  ds.num_folds = num_folds
  ds.fold = 0
  ds.split_seed = 0
  # Class-balanced resampling of the training items (torch's
  # WeightedRandomSampler with inverse-frequency weights).
  ds.class_balanced = class_balanced
  # DICOM ingestion of the real-data builders (mammojax.data.dicom.load_dicom;
  # docs/datasets.md): rules accepting non-MG files, e.g.
  # ('modality:OT', 'sop_class:1.2.840.10008.5.1.4.1.1.7', 'body_part:BREAST'),
  # and what FOR PROCESSING images without a window get: 'display' (log for
  # LIN data + a percentile window inside the breast) or 'min_max'.
  ds.accept_non_mg = ()
  ds.for_processing = "display"
  return ds


def optimization(
    config: ml_collections.ConfigDict,
    *,
    optimizer: str,
    learning_rate: float,
    weight_decay: float,
    batch_size: int,
    num_epochs: int,
    early_stopping_patience: int = 10,
    selection_metric: str = "val/mean_auc",
) -> None:
  """Sets the shared trainer's keys on ``config``."""
  config.optimizer = optimizer  # adam (L2 as torch) | adamw | sgd.
  config.learning_rate = learning_rate
  config.weight_decay = weight_decay
  config.grad_clip_norm = 0.0  # 0 = no clipping.
  config.batch_size = batch_size  # Items per step, over all devices.
  config.num_epochs = num_epochs
  config.early_stopping_patience = early_stopping_patience  # 0 disables.
  config.selection_metric = selection_metric  # Best checkpoint criterion.
  config.num_devices = 0  # 0 = all local devices.
  config.multihost = False  # jax.distributed.initialize() first.
  config.log_every_steps = 10


def gradnorm(
    *,
    alpha: float = 1.5,
    learning_rate: float = 1e-3,
    layer: str = "fusion",
    initial_loss: str = "first",
) -> ml_collections.ConfigDict:
  """The ``config.gradnorm`` block (Chen et al., ICML 2018)."""
  gn = ml_collections.ConfigDict()
  gn.enabled = True
  gn.alpha = alpha  # Restoring-force strength.
  gn.learning_rate = learning_rate  # Adam on the task weights.
  gn.layer = layer  # The shared weights W whose gradient norms are balanced.
  gn.initial_loss = initial_loss  # first | log_num_classes.
  return gn
