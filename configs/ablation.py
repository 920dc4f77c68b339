"""The MT-GCN paper's Table 1 ablations (``mammojax.experiments.ablation``).

``--config=configs/ablation.py:VARIANT``: ``VARIANT`` is the
``configs/mtgcn.py`` variant every MT-GCN row starts from (``default``,
``paper``, ``test``, ...). The config holds

* ``protocol`` -- ``name = "ablation"``, the rows, folds and overrides;
* ``mtgcn`` -- the MT-GCN config of the variant (the rows override it; the
  ``distill`` row sets its ``distill.teachers``);
* ``baselines`` -- one ``configs/cnn_baseline.py`` config per CNN row.

``scripts/ablation.py`` builds it from its flags.
"""

import os
import sys

import ml_collections

# The repository root, so that the other configs import when this file is
# loaded by path (``--config=configs/ablation.py``) from any working directory.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from configs import cnn_baseline  # pylint: disable=g-import-not-at-top,wrong-import-position
from configs import mtgcn  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax.experiments import ablation  # pylint: disable=g-import-not-at-top,wrong-import-position


def get_config(variant: str = "default") -> ml_collections.ConfigDict:
  """Returns the ablation protocol config on ``configs/mtgcn.py:variant``."""
  config = ml_collections.ConfigDict()
  config.protocol = ml_collections.ConfigDict()
  config.protocol.name = "ablation"
  config.protocol.variant = variant
  config.protocol.rows = ()  # () = every MT-GCN row; or names / groups.
  config.protocol.num_folds = 5
  config.protocol.folds = ()  # () = all folds.
  config.protocol.schedule = "default"  # ablation.SCHEDULES: or "paper".
  config.protocol.num_epochs = 0  # 0 = the schedule's own.
  config.protocol.dataset_builder_config = ""  # "" = the configs' own.
  config.protocol.report_only = False  # Train nothing, tabulate what exists.
  config.mtgcn = mtgcn.get_config(variant)
  config.baselines = ml_collections.ConfigDict()
  for _, baseline, _, _ in ablation.BASELINE_ROWS.values():
    config.baselines[baseline] = cnn_baseline.get_config(baseline)
  return config
