"""RMCG (relation-aware multi-channel attention GCN) and its Table 1 baselines.

``python -m mammojax.main --config=configs/rmcg.py[:VARIANT] --workdir=DIR``
runs the protocol ``rmcg_cv`` (``mammojax.experiments.rmcg``): every model of
``protocol.models`` on every patient-wise test fold, then mean +/- std of
accuracy and macro precision / recall / F1 (eq. 8-11) and the summed
confusion matrix. Variants:

* ``default`` -- RMCG alone on the synthetic IDC tiles
  (``synthetic_databiox``: 96 40x tiles of 24 patients at 128 x 128),
  3 folds (8 test patients each), ResNet-18 (full size, from scratch) +
  multi-channel attention + 2 GAT layers + attention pooling, 6 epochs of
  batch 16 (4 steps each), Adam lr 3e-4. Sized for 2 CPU cores (docs/
  results.md has the measured time).
* ``table1`` -- the same schedule for all seven models of Table 1
  (AlexNet, ResNet-18, ECC, ResNet18-GCN, ResNet18-GAT, ResNet18-GCNII,
  RMCG); ``scripts/rmcg_table1.py`` runs it and writes the table and chart.
* ``<model>`` (``alexnet``, ``resnet18``, ``ecc``, ``resnet18_gcn``,
  ``resnet18_gat``, ``resnet18_gcnii``, ``rmcg``) -- one model.
* ``paper`` -- the paper's sizes: 224 x 224 40x tiles (``synthetic_databiox/
  paper``, 124 patients; for the real data set ``dataset.name=databiox``,
  ``builder_config=rmcg_40x``, ``manual_dir``), 5 folds, 100 epochs,
  AlexNet with its 4096-wide classifier, all seven models; accelerator-sized.
* ``test`` -- tiny (64 x 64 tiles of 6 patients, 1-block ResNet, 2 folds,
  1 epoch) for the test suite.

The paper gives no optimiser, schedule or graph sizes: Adam, lr 3e-4, weight
decay 0 (eq. 7's L2 is on the last layer only, ``l2_head`` = lambda = 1e-3),
128 hidden graph channels, 2 layers, 4 heads and an MI graph of in-degree 4
are this reimplementation's choices.
"""

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position

MODELS = ("alexnet", "resnet18", "ecc", "resnet18_gcn", "resnet18_gat",
          "resnet18_gcnii", "rmcg")


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the RMCG configuration for ``variant``."""
  config = ml_collections.ConfigDict()
  config.method = "rmcg"
  config.seed = 0

  # Data: Databiox layout (synthetic by default). Patient-wise folds: fold
  # `fold` of `num_folds` tests, val_fraction of the rest validates.
  config.dataset = common.dataset(
      "synthetic_databiox", "default", val_fraction=0.2, test_fraction=0.2,
      num_folds=3, class_balanced=False)

  # Model (mammojax.models.rmcg).
  config.model = ml_collections.ConfigDict()
  config.model.name = "rmcg"  # One of MODELS.
  config.model.stage_sizes = (2, 2, 2, 2)  # ResNet-18.
  config.model.hidden = 128
  config.model.num_layers = 2
  config.model.heads = 4
  config.model.top_k = 4  # MI graph in-degree.
  config.model.mi_bins = 8
  config.model.dropout = 0.3
  config.model.gcnii_alpha = 0.1
  config.model.gcnii_theta = 0.5
  config.model.alexnet_hidden = 1024  # torchvision: 4096 (paper variant).

  # Eq. 7: (lambda / 2) ||w||^2 on the last layer.
  config.l2_head = 1e-3

  # Augmentation: k * 90 degree rotations + translations (reflect padding).
  config.augment = ml_collections.ConfigDict()
  config.augment.enabled = True
  config.augment.max_shift = 0.125  # Fraction of the tile side.

  common.optimization(
      config, optimizer="adam", learning_rate=3e-4, weight_decay=0.0,
      batch_size=16, num_epochs=6, early_stopping_patience=0,
      selection_metric="val/loss")
  config.log_every_steps = 5

  config.protocol = ml_collections.ConfigDict()
  config.protocol.name = "rmcg_cv"
  config.protocol.models = ("rmcg",)
  config.protocol.folds = ()  # () = all folds.

  if variant == "default":
    pass
  elif variant == "table1":
    config.protocol.models = MODELS
  elif variant in MODELS:
    config.protocol.models = (variant,)
    config.model.name = variant
  elif variant == "paper":
    config.dataset.builder_config = "paper"
    config.dataset.num_folds = 5
    config.num_epochs = 100
    config.early_stopping_patience = 20
    config.model.alexnet_hidden = 4096
    config.protocol.models = MODELS
  elif variant == "test":
    config.dataset.builder_config = "tiny"
    config.dataset.num_folds = 2
    config.dataset.val_fraction = 0.34
    config.model.stage_sizes = (1, 1, 1, 1)
    config.model.hidden = 8
    config.model.heads = 2
    config.model.top_k = 2
    config.model.alexnet_hidden = 32
    config.batch_size = 4
    config.num_epochs = 1
    config.num_devices = 1
    config.log_every_steps = 1
  else:
    raise ValueError(
        f"configs/rmcg.py: unknown variant {variant!r}; expected default, "
        f"table1, paper, test or one of {MODELS}")
  return config
