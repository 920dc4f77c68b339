"""DiagNet (signed-graph regularised separable-conv net with adversarial
augmentation) for mass benign / malignant on mass ROIs.

``python -m mammojax.main --config=configs/diagnet.py --workdir=DIR`` runs
the ``diagnet_repeats`` protocol: ``protocol.num_repeats`` patient-wise
80/20 train/test splits (``dataset.split_seed`` = repeat index; 10 % of the
training patients validate for model selection), each with flips, the
adversarial augmentation, training and testing, then accuracy and AUC as
mean +/- std over the repeats.

Variants (``--config=configs/diagnet.py:VARIANT``):

* ``default`` -- sized for a 2-core CPU: ``synthetic_masses`` 128 px ROIs
  resized to 40 x 40, each standardised by its own mean / std, left-right
  flips (stored, before the adversarial augmentation) and a random one of
  the 8 dihedral orientations per ROI and training step, a narrow network
  (8 stem, 16 / 32 / 64 entry maps, 1 middle block, 3 x 64 fully connected,
  no dropout), T = 100 RACOS candidates per neighbour, Adam 3e-3 with a
  cosine decay over 12 epochs, the epoch of the lowest validation loss kept.
* ``paper`` -- the paper's sizes: 224 x 224 ROIs (``synthetic_masses/paper``
  crops), left-right and up-down flips, entry blocks 128 / 256 / 728, seven
  728-map middle blocks, three
  1024-unit fully connected layers with dropout 0.5, T = 200, Adam 1e-3,
  100 epochs (fixed [0, 1] normalisation, no dihedral step augmentation:
  the paper's setting).
* ``test`` -- tiny (``synthetic_masses/tiny``, 32 px), for the test suite.

Real data: ``--config.dataset.name=cbis_ddsm_masses`` or
``inbreast_masses`` with ``--config.dataset.manual_dir=...`` (same features).
"""

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the DiagNet configuration for ``variant``."""
  config = ml_collections.ConfigDict()
  config.method = "diagnet"
  config.seed = 0

  # Data: mass ROIs (box padded 1.6x), patient-wise 80/20 train/test.
  config.dataset = common.dataset(
      "synthetic_masses", val_fraction=0.1, test_fraction=0.2
  )

  config.diagnet = ml_collections.ConfigDict()
  d = config.diagnet
  d.image_size = 40  # ROI crops resized to this (paper 224).
  # Crops smaller than image_size are an error unless upsampling is allowed.
  d.allow_upsampling = False
  # Flips added to the training ROIs before the adversarial augmentation:
  # "lr" (left-right), "ud" (up-down), "lrud" (both).
  d.flips = ("lr",)
  # Label of the negative neighbours in J_l: "none" (only in J_g, as graph
  # negatives) or "class" (their seed's class).
  d.negative_label = "none"
  d.pixel_mean = 0.5
  d.pixel_std = 0.25
  # Standardise each ROI by its own mean / std (pixel_mean / pixel_std unused).
  d.per_image_norm = True
  # A random one of the 8 flips / quarter turns of each training ROI per step.
  d.dihedral = True

  # The network (paper 4.2, Fig. 1b).
  d.model = ml_collections.ConfigDict()
  d.model.stem_features = 8
  d.model.entry_features = (16, 32, 64)
  d.model.num_middle_blocks = 1
  d.model.fc_features = 64
  d.model.num_fc = 3
  # Paper 0.5; the default's 64-unit layers underfit with it (measured:
  # training AUC 0.62 after 15 epochs at 0.5, docs/results.md).
  d.model.dropout = 0.0

  # Signed graph (eq. 3) and J = J_l + weight * J_g (eq. 4-6).
  d.graph = ml_collections.ConfigDict()
  d.graph.n_pos = 1  # n+
  d.graph.n_neg = 4  # n-
  d.graph.margin = 1.0  # m
  d.graph.weight = 1.0  # lambda
  # Neighbour ranks from the augmentation's input features ("input") or the
  # current embeddings ("embedding").
  d.graph.space = "input"

  # Adversarial augmentation (3.1, 4.2; objectives.adversarial_augmentation).
  d.augment = ml_collections.ConfigDict()
  a = d.augment
  a.enabled = True
  a.positive_fraction = 0.2
  a.negative_fraction = 0.2
  a.num_candidates = 100  # T (paper 200).
  a.gamma = 1e-2
  a.r3_factor = 3.0
  a.refit_every = 10
  a.noise_std = 0.02
  a.intensity_grid = 4
  a.intensity_amplitude = 0.15
  a.displacement_grid = 3
  a.displacement_amplitude = 0.06
  a.feature_size = 8
  a.svm_c = 1.0
  # "" = no cache; a folder caches the neighbours per split and settings.
  a.cache_dir = ""

  # "constant" (the paper) or "cosine" decay to 0 over num_epochs.
  d.lr_schedule = "cosine"

  config.class_weighting = "none"
  # A fixed schedule, the epoch of the lowest validation loss kept: the
  # validation split (10 % of the training patients, ~40 masses) is too small
  # for its AUC to select on or to stop early (measured: its AUC, 0.30-0.55,
  # kept epoch 0, test AUC 0.48, where epoch 11 reached 0.60;
  # docs/results.md).
  common.optimization(
      config, optimizer="adam", learning_rate=3e-3, weight_decay=1e-4,
      batch_size=32, num_epochs=12, early_stopping_patience=0,
      selection_metric="val/loss",
  )

  # The main command's protocol (mammojax.experiments.diagnet).
  config.protocol = ml_collections.ConfigDict()
  config.protocol.name = "diagnet_repeats"
  config.protocol.num_repeats = 5

  if variant == "default":
    pass
  elif variant == "paper":
    config.dataset.builder_config = "paper"
    d.image_size = 224
    d.flips = ("lr", "ud")
    d.model.stem_features = 32
    d.model.entry_features = (128, 256, 728)
    d.model.num_middle_blocks = 7
    d.model.fc_features = 1024
    a.num_candidates = 200
    d.model.dropout = 0.5
    d.per_image_norm = False
    d.dihedral = False
    config.learning_rate = 1e-3
    d.lr_schedule = "constant"
    config.num_epochs = 100
    config.early_stopping_patience = 20
    config.selection_metric = "val/mean_auc"
  elif variant == "test":
    config.dataset.builder_config = "tiny"
    d.image_size = 32
    d.flips = ("lr",)
    d.model.stem_features = 4
    d.model.entry_features = (8, 8, 16)
    d.model.num_middle_blocks = 1
    d.model.fc_features = 16
    a.num_candidates = 20
    a.feature_size = 8
    config.batch_size = 8
    config.num_epochs = 1
    config.early_stopping_patience = 0
    config.log_every_steps = 1
    config.protocol.num_repeats = 2
  else:
    raise ValueError(
        f"configs/diagnet.py: unknown variant {variant!r}; expected default, "
        "paper or test"
    )
  return config
