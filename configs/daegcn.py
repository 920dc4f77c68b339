"""DAE-GCN (Zhang et al., MICCAI 2021): mass benign / malignant on mass ROIs.

Variants (``--config=configs/daegcn.py:VARIANT``):

* ``default`` -- the embedded ``synthetic_masses`` data (128 px crops
  resized to 64 x 64, each standardised by its own mean / std, random
  dihedral flips / rotations by 90 degrees when training), ResNet-34's
  depth at a quarter of its width (``backbone_kwargs.width=16``) from
  scratch, a light decoder, Adam 1e-3, 30 epochs, the tested checkpoint
  chosen by the summed validation loss: sized for 2 CPU cores
  (docs/results.md has the measured run and its wall time).
* ``paper`` -- the paper's sizes where it gives them (ResNet-34 encoder at
  torchvision's width, Adam, patient-wise 8:1:1 splits) and the usual ones
  where it does not (224 x 224 inputs normalised with one mean / std,
  ``h`` of 128 + 128 + 256, ML-GCN's 1024-wide GCN hidden layer, 100
  epochs); set ``model.pretrained_path`` to torchvision's
  ``resnet34`` weights file for ImageNet initialisation.
* ``test`` -- tiny (1-block ResNet, 32 x 32, one epoch) for the test suite.
* Ablations of Table 2 / the comparators: ``vanilla`` (ResNet-34 classifier),
  ``multitask`` (attributes as plain heads), ``chen`` (attribute GCN without
  disentangling, Chen et al.), ``ae`` (auto-encoder, no split),
  ``dae_no_hi`` (split without ``h_i``), ``dae`` (split with ``h_i``, no
  attributes); ``scripts/daegcn_ablation.py`` runs them all.

``--config.dataset.name=cbis_ddsm_masses --config.dataset.manual_dir=DIR``
trains on CBIS-DDSM masses (the CSVs' ``mass shape`` / ``mass margins``).
"""

import os
import sys

import ml_collections

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position

# variant -> (disentangle, attribute_head, reconstruct, has h_i); Table 2.
ABLATIONS = {
    "vanilla": (False, "none", False, False),
    "multitask": (False, "multitask", False, False),
    "chen": (False, "gcn", False, False),
    "ae": (False, "none", True, False),
    "dae_no_hi": (True, "none", True, False),
    "dae": (True, "none", True, True),
    "default": (True, "gcn", True, True),
}


def set_ablation(config: ml_collections.ConfigDict, name: str) -> None:
  """Sets the Table 2 switches of ablation ``name`` on ``config.model``."""
  disentangle, head, reconstruct, has_hi = ABLATIONS[name]
  m = config.model
  m.disentangle = disentangle
  m.attribute_head = head
  m.reconstruct = reconstruct
  if not has_hi:
    # Without h_i: with the split, h = [h_ma, h_mi]; without it, h keeps
    # the full width (dim_ma + dim_mi + dim_i) in one undivided vector.
    if disentangle:
      m.dim_i = 0
    else:
      m.dim_mi += m.dim_i
      m.dim_i = 0


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the DAE-GCN configuration for ``variant``."""
  config = ml_collections.ConfigDict()
  config.method = "daegcn"
  config.seed = 0

  # Dataset: patient-wise 8:1:1 (test 1/10, validation 1/9 of the rest),
  # stratified by pathology; the paper splits CBIS-DDSM randomly too
  # (official_test=True keeps a dataset's official test split instead).
  config.dataset = common.dataset(
      "synthetic_masses", val_fraction=1.0 / 9.0, test_fraction=0.1,
  )
  config.dataset.official_test = False

  # The model (models/daegcn.py).
  config.model = ml_collections.ConfigDict()
  config.model.backbone = "resnet34"  # A key of mammojax.models.cnn.MODELS.
  config.model.backbone_kwargs = ml_collections.ConfigDict()
  # ResNet-34's depth at a quarter of its width (16 stem channels, not 64):
  # from scratch on CPU it trains ~10x faster; ``paper`` keeps 64.
  config.model.backbone_kwargs.width = 16
  config.model.pretrained_path = ""  # torchvision resnet34 .pth / .npz.
  config.model.image_size = 64  # The crop is resized to this.
  config.model.dim_ma = 64  # h_ma: macroscopic attributes.
  config.model.dim_mi = 64  # h_mi: microscopic disease features.
  config.model.dim_i = 128  # h_i: disease-irrelevant features.
  config.model.disentangle = True
  config.model.attribute_head = "gcn"  # none | multitask | gcn.
  config.model.reconstruct = True  # The decoder and L_rec.
  config.model.decoder_features = (64, 32, 16, 8, 8)
  # The attribute vocabularies that become graph nodes (from the data).
  config.model.attributes = ("mass_shape", "mass_margin")
  # Node inputs: onehot | learned | path of a GloVe-format text file.
  config.model.attribute_embeddings = "onehot"
  config.model.attribute_embedding_dim = 0  # Expected file width; 0 = any.
  config.model.embedding_dim = 64  # Width of learned node inputs.
  config.model.gcn_hidden = (256,)  # ML-GCN: (1024,).
  # Training augmentation: none | flips | dihedral (flips + transposes: the
  # 8 rotations / mirror images by 90 degrees; the attributes and the
  # pathology do not depend on the orientation).
  config.model.augment = "dihedral"
  config.model.pixel_mean = 0.449
  config.model.pixel_std = 0.226
  # Normalise each crop by its own mean / std (the synthetic and the
  # CBIS-DDSM crops differ widely in brightness and contrast) instead of
  # pixel_mean / pixel_std.
  config.model.standardize = True

  # The attribute graph (ML-GCN's correlation matrix).
  config.graph = ml_collections.ConfigDict()
  config.graph.tau = 0.4  # Binarisation threshold (ML-GCN: 0.4).
  config.graph.p = 0.25  # Neighbour weight (ML-GCN: 0.25).
  config.graph.diagonal = "one_minus_p"  # The papers; "one": ML-GCN's code.
  config.graph.unseen = "error"  # error | isolate (never-seen values).

  # L = rec_weight L_rec + attribute_weight L_gcn + L_cls (paper: 1, 1).
  config.loss = ml_collections.ConfigDict()
  config.loss.rec_weight = 1.0
  config.loss.attribute_weight = 1.0

  config.report = ml_collections.ConfigDict()
  config.report.reconstructions = 6  # Test items in the Fig. 3 grid.

  # Optimisation (the paper: Adam).
  common.optimization(
      config, optimizer="adam", learning_rate=1e-3, weight_decay=0.0,
      batch_size=32, num_epochs=30, early_stopping_patience=0,
      # The validation split has ~49 crops: its AUC jumps by +-0.1 from
      # epoch to epoch; the summed validation loss (L_cls + L_rec + L_gcn)
      # is the steadier criterion for the checkpoint that is tested.
      selection_metric="val/loss",
  )

  if variant == "default":
    pass
  elif variant == "paper":
    config.dataset.builder_config = "paper"
    config.model.image_size = 224
    config.model.dim_ma = 128
    config.model.dim_mi = 128
    config.model.dim_i = 256
    config.model.gcn_hidden = (1024,)
    config.model.decoder_features = (512, 256, 128, 64, 32)
    config.model.backbone_kwargs.width = 64
    config.model.standardize = False
    config.learning_rate = 1e-4
    config.num_epochs = 100
    config.early_stopping_patience = 20
  elif variant == "test":
    config.dataset.builder_config = "tiny"
    config.model.backbone_kwargs.stage_sizes = (1, 1, 1, 1)
    config.model.backbone_kwargs.width = 8
    config.model.image_size = 32
    config.model.dim_ma = 8
    config.model.dim_mi = 8
    config.model.dim_i = 8
    config.model.gcn_hidden = (16,)
    config.model.decoder_features = (16, 8, 8, 8, 8)
    config.model.embedding_dim = 8
    config.batch_size = 8
    config.num_epochs = 1
    config.log_every_steps = 1
    config.report.reconstructions = 2
  elif variant in ABLATIONS:
    set_ablation(config, variant)
  else:
    raise ValueError(
        f"configs/daegcn.py: unknown variant {variant!r}; expected default, "
        f"paper, test or one of {sorted(ABLATIONS)}"
    )
  return config
