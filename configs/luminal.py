"""Luminal vs non-luminal subtype from full mammograms (the luminal paper).

Variants (``--config=configs/luminal.py:VARIANT``):

* ``pretrain`` -- MLMC pretraining: ResNet-18, three sigmoid outputs
  (calcification, mass, malignant), BCE, Adam lr 1e-4, weight decay 5e-3.
* ``transfer`` -- luminal vs non-luminal (2-way softmax, CE, Adam lr 1e-5,
  weight decay 5e-3, weighted random sampling) from the best pretraining
  checkpoint of ``config.init_from`` (default ``runs/luminal_pretrain``);
  the 3-output head is replaced by a 2-output one, all layers fine-tuned.
* ``baseline`` -- the same as ``transfer`` without pretraining.
* ``protocol`` -- the paper's protocol (``mammojax.experiments.luminal``):
  5 patient-wise folds x (pretrain -> transfer, baseline), every fold tested
  on the 10 % independent test set, mean ± std and a paired t-test.
* ``paper`` -- ``protocol`` at the paper's size (3744 images at 1326 x 512,
  up to 100 epochs with early stopping); GPU-sized.
* ``test`` -- a tiny ``protocol`` (2 folds, tiny ResNet, 64 x 40) for tests.

All stages share the paper's settings: batch 16, dropout 0.3 before the
head, augmentation flip 0.5 / AugMix 0.2 / equalise 0.4 / erasing 0.1,
early stopping with patience 10 on the validation loss and the best
checkpoint by validation loss. Optional ImageNet initialisation:
``--config.<stage>.model.pretrained_path=resnet18.pth`` (a torchvision
state_dict you provide; nothing is downloaded).

CPU sizing (``protocol``): the ``synthetic_cmmd`` default dataset (600
images / 308 patients stored at 256 x 160) is trained at 128 x 80 (area
downsampling on load) for 3 epochs per stage, so the 15 runs finish in
under 20 minutes on 2 CPU cores (a ResNet-18 train step does ~20-25
images/s at 128 x 80 there). Avoid sizes like 96 x 60: XLA's CPU
convolutions were measured 10x slower there (2.6 vs 25 images/s). Train at
the stored size with ``--config.<stage>.dataset.image_size=()``. On
128 x 80 inputs ResNet-18's ``layer4`` map is 4 x 3, so Grad-CAM is coarse;
with ~60 optimiser steps per stage at the paper's learning rates the CPU
protocol is a functional check, not a reproduction of Table 2.
"""

import os
import sys

import ml_collections

# The repository root, so that the shared blocks import when this file is
# loaded by path (``--config=configs/X.py``) from any working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position

# Epochs per stage of the CPU protocol (the paper trains up to early
# stopping; a shared 2-core CPU affords 3 epochs of ~20 steps per stage).
_CPU = {"pretrain": 3, "transfer": 3, "baseline": 3}
# Learning rates (paper: 1e-4 MLMC, 1e-5 luminal).
_LR = {"pretrain": 1e-4, "transfer": 1e-5, "baseline": 1e-5}


def stage_config(stage: str) -> ml_collections.ConfigDict:
  """The CPU-sized configuration of one stage (pretrain/transfer/baseline)."""
  if stage not in _LR:
    raise ValueError(
        f"configs/luminal.py: unknown stage {stage!r}; expected one of "
        f"{sorted(_LR)}"
    )
  config = ml_collections.ConfigDict()
  config.method = "luminal"
  config.seed = 0

  # Dataset. Patient-wise splits on all images: test_fraction of the
  # patients form the independent test set; the rest is split in num_folds
  # folds (fold `fold` validates), or val_fraction of it validates when
  # num_folds == 1. Weighted random sampling (torch WeightedRandomSampler)
  # on balance_field.
  config.dataset = common.dataset(
      "synthetic_cmmd",  # Or cmmd (manual_dir).
      "default",  # 600 images, 256 x 160.
      val_fraction=0.2, test_fraction=0.1, num_folds=5,
      class_balanced=stage != "pretrain",
  )
  config.dataset.image_size = (128, 80)  # Training input; () = as stored.
  config.dataset.balance_field = "luminal" if stage != "pretrain" else ""

  # Model.
  config.model = ml_collections.ConfigDict()
  config.model.name = "resnet18"
  config.model.dropout = 0.3
  config.model.pretrained_path = ""  # torchvision ImageNet weights, if any.
  config.model.stage_sizes = ()  # ResNet blocks override (tests only).
  config.model.pixel_mean = 0.449
  config.model.pixel_std = 0.226

  # Tasks: MLMC (three sigmoid outputs, BCE) or luminal (softmax, CE).
  if stage == "pretrain":
    config.tasks = ("calcification", "mass", "malignant")
  else:
    config.tasks = ("luminal",)
  config.init_from = "runs/luminal_pretrain" if stage == "transfer" else ""

  # Augmentation inside the train step (the paper's probabilities).
  config.augment = ml_collections.ConfigDict()
  config.augment.enabled = True
  config.augment.p_flip = 0.5
  config.augment.p_augmix = 0.2
  config.augment.p_equalize = 0.4
  config.augment.p_erase = 0.1

  # Optimisation (torch Adam: weight decay as L2 on the gradient); the best
  # checkpoint and early stopping by the validation loss.
  common.optimization(
      config, optimizer="adam", learning_rate=_LR[stage], weight_decay=5e-3,
      batch_size=16, num_epochs=_CPU[stage], early_stopping_patience=10,
      selection_metric="val/loss",
  )

  # Report.
  config.report = ml_collections.ConfigDict()
  config.report.num_gradcam = 4
  config.report.gradcam_task = "malignant" if stage == "pretrain" else ""
  return config


def _protocol() -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.protocol = ml_collections.ConfigDict()
  config.protocol.name = "luminal_cv"  # mammojax.experiments.PROTOCOLS.
  config.protocol.num_folds = 5
  config.protocol.folds = ()  # () = all folds.
  for stage in ("pretrain", "transfer", "baseline"):
    config[stage] = stage_config(stage)
  return config


def get_config(variant: str = "protocol") -> ml_collections.ConfigDict:
  """Returns the luminal configuration for ``variant``."""
  if variant in ("pretrain", "transfer", "baseline"):
    return stage_config(variant)
  if variant not in ("protocol", "paper", "test"):
    raise ValueError(
        f"configs/luminal.py: unknown variant {variant!r}; expected one of "
        "pretrain, transfer, baseline, protocol, paper, test"
    )
  config = _protocol()
  for stage in ("pretrain", "transfer", "baseline"):
    c = config[stage]
    if variant == "paper":
      c.dataset.builder_config = "paper"  # 3744 images at 1326 x 512.
      c.dataset.image_size = ()
      c.num_epochs = 100
    elif variant == "test":
      c.dataset.builder_config = "tiny"  # 40 images, 64 x 40.
      c.dataset.image_size = ()
      c.model.stage_sizes = (1, 1, 1, 1)
      c.batch_size = 4
      c.num_epochs = 1
      c.num_devices = 1
      c.log_every_steps = 1
      c.report.num_gradcam = 2
  if variant == "test":
    config.protocol.num_folds = 2
  return config
