"""MT-GCN: multi-task deep GCN for calcification morphology and distribution.

Variants (``--config=configs/mtgcn.py:VARIANT``):

* ``default`` -- the paper's proposed model (8 GENConv res+ layers, multi-task,
  KNN + radius graphs, self-attention fusion, GradNorm) on the embedded
  synthetic set, sized to finish in under 15 minutes on a 2-core CPU.
* ``paper`` -- the same model with the paper's / authors' full schedule
  (hidden 128, 100 epochs, lr 3e-4, weight decay 1e-4).
* ``teacher_node`` / ``teacher_graph`` -- task-specific teachers for
  knowledge distillation; ``student`` distils from them (set
  ``config.distill.teachers`` to the teachers' workdirs).
* ``test`` -- a tiny CPU configuration used by the test suite.
"""

import os
import sys

import ml_collections

# The repository root, so that the shared blocks import when this file is
# loaded by path (``--config=configs/X.py``) from any working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import common  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the MT-GCN configuration for ``variant``."""
  config = ml_collections.ConfigDict()
  config.method = "mtgcn"
  config.seed = 0

  # Dataset and patient-wise splits (fractions of patients for val and
  # test; with num_folds > 1 the non-test patients form k folds).
  config.dataset = common.dataset("synthetic_calcifications")  # 390 images.

  # Graph construction (on the host, per sample).
  config.graph = ml_collections.ConfigDict()
  config.graph.types = ("knn", "radius")
  config.graph.knn_k = 4
  config.graph.radius = 0.05  # Normalised coordinate units.
  config.graph.max_num_neighbors = 32
  # Padding budget: "max" fits any batch_size samples (fixed batch size);
  # "mean" packs by mean size (less padding, variable graphs per batch).
  config.graph.budget = "mean"

  # Model.
  config.model = ml_collections.ConfigDict()
  config.model.patch_embed_dim = 64
  config.model.patch_channels = (16, 32, 64)
  config.model.patch_norm = "batch"
  config.model.hidden_size = 64
  config.model.num_layers = 8
  config.model.aggr = "softmax"
  config.model.learn_t = True
  config.model.msg_norm = False
  config.model.learn_msg_scale = False
  config.model.mlp_layers = 2
  config.model.conv_norm = "layer"
  config.model.dropout = 0.1
  # Random bits per GCN dropout draw: 16 (two per threefry word; the rate
  # applied is within 2**-17 of config.model.dropout) or 32 (flax's
  # nn.Dropout, the masks of runs before 2026-12-03). docs/performance.md.
  config.model.dropout_bits = 16
  config.model.fusion = "attention"  # attention | concat | mean.
  config.model.num_heads = 1
  config.model.node_input = "patches"  # patches | features.
  # GCN res+ layers unrolled (False) or under nn.scan (True: compile time
  # independent of depth, params stacked under gcn/blocks). Unrolled is
  # ~1.1-1.4x faster per train step on CPU (docs/performance.md).
  config.model.scan = False

  # Tasks and objectives.
  config.tasks = ("node", "graph")  # node = morphology, graph = distribution.
  # Static task weights when GradNorm is off; () = 1 per task.
  config.task_weights = ()
  config.class_weighting = "none"  # none | inverse | effective (CE weights).
  # GradNorm on the fusion projection (the last shared layer; first_conv is
  # the authors' code's choice).
  config.gradnorm = common.gradnorm(layer="fusion")
  config.distill = ml_collections.ConfigDict()
  config.distill.teachers = ()  # Workdirs of trained teachers.
  config.distill.temperature = 2.0
  config.distill.alpha = 0.5

  # Optimisation.
  common.optimization(
      config, optimizer="adamw", learning_rate=1e-3, weight_decay=1e-4,
      batch_size=32, num_epochs=30,
  )
  config.num_report_graphs = 4

  if variant == "default":
    pass
  elif variant == "paper":
    config.model.hidden_size = 128
    config.learning_rate = 3e-4
    config.num_epochs = 100
    config.early_stopping_patience = 0
  elif variant == "teacher_node":
    config.tasks = ("node",)
    config.gradnorm.enabled = False
  elif variant == "teacher_graph":
    config.tasks = ("graph",)
    config.gradnorm.enabled = False
  elif variant == "student":
    config.distill.teachers = ("runs/teacher_node", "runs/teacher_graph")
  elif variant == "test":
    config.dataset.builder_config = "tiny"
    config.graph.budget = "max"
    config.model.patch_embed_dim = 8
    config.model.patch_channels = (4, 8)
    config.model.hidden_size = 16
    config.model.num_layers = 3
    config.batch_size = 8
    config.num_epochs = 2
    config.log_every_steps = 1
    config.num_report_graphs = 2
  else:
    raise ValueError(
        f"configs/mtgcn.py: unknown variant {variant!r}; expected one of "
        "default, paper, teacher_node, teacher_graph, student, test"
    )
  return config
