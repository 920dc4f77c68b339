"""The MT-GCN paper's Table 1 ablations with patient-wise k-fold CV.

A command line for ``mammojax.experiments.ablation`` (rows, folds, table;
see there): every row is ``configs/mtgcn.py`` (or, for the CNN baselines,
``configs/cnn_baseline.py``) with a few overrides, trained once per fold and
tested on the same patient-wise held-out test set; the table reports test
AUC as mean ± sample std (ddof = 1) over folds. ``--rows`` names rows of
``ROWS`` (``distill``: knowledge distillation from the fold's
``task_node`` and ``task_graph`` runs, trained first when missing) or
``BASELINE_ROWS``; ``baselines`` stands for every baseline row and ``all``
for every row.

  python scripts/ablation.py --workdir=runs/ablation --folds=5
  python scripts/ablation.py --workdir=runs/ablation_paper --folds=3 \
      --schedule=paper --rows=all
  python scripts/ablation.py --workdir=runs/ablation_quick --folds=2 \
      --num_epochs=5 --rows=proposed,task_node,task_graph,distill
  python scripts/ablation.py --workdir=runs/ablation_quick --folds=2 \
      --num_epochs=5 --rows=resnet18_image,resnet18_patch

Runs are resumable: a fold whose ``results.json`` exists is not retrained.
``--report_only`` trains nothing and tabulates the folds that exist (a row
averaging fewer folds than ``--folds`` says how many).
Writes ``ablation.json`` and ``ablation.md`` into the workdir.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import ablation as ablation_config  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax.experiments import ablation  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", "runs/ablation", "Output folder.")
flags.DEFINE_string(
    "variant", "default", "configs/mtgcn.py variant (MT-GCN rows)."
)
flags.DEFINE_integer("folds", 5, "k of the patient-wise k-fold CV.")
flags.DEFINE_list("only_folds", [], "Run only these fold indices.")
flags.DEFINE_enum(
    "schedule", "default", list(ablation.SCHEDULES),
    "Training schedule of every row: 'default' (the configs' own, 30 "
    "epochs) or 'paper' (configs/mtgcn.py:paper's: hidden 128, lr 3e-4, "
    "100 epochs, no early stopping; 100 epochs for the CNN baselines).")
flags.DEFINE_integer("num_epochs", 0,
                     "Override the schedule's num_epochs (0: keep).")
flags.DEFINE_list(
    "rows", [],
    "Rows to run (default: every ROWS row); names of ROWS or BASELINE_ROWS, "
    "'baselines' (every baseline row) or 'all'.",
)
flags.DEFINE_string("dataset_builder_config", "", "Override the dataset.")
flags.DEFINE_bool(
    "report_only", False,
    "Train nothing: build the table from the folds whose results.json "
    "exists (rows show how many folds they average when fewer than --folds).",
)


def get_config():
  """The protocol config of the flags."""
  unknown = ablation.unknown_rows(FLAGS.rows)
  if unknown:
    raise app.UsageError(
        f"--rows: unknown {unknown}; known {list(ablation.ROWS)}, "
        f"{list(ablation.BASELINE_ROWS)}, baselines, all"
    )
  config = ablation_config.get_config(FLAGS.variant)
  p = config.protocol
  p.rows = tuple(FLAGS.rows)
  p.num_folds = FLAGS.folds
  p.folds = tuple(int(f) for f in FLAGS.only_folds)
  p.schedule = FLAGS.schedule
  p.num_epochs = FLAGS.num_epochs
  p.dataset_builder_config = FLAGS.dataset_builder_config
  p.report_only = FLAGS.report_only
  return config


def main(argv):
  del argv
  from mammojax import runtime  # pylint: disable=g-import-not-at-top

  config = get_config()
  runtime.configure_jax()
  runtime.quiet_library_logging()
  table = ablation.run_protocol(config, FLAGS.workdir)
  for name, row in table.items():
    for fold in row["missing_folds"]:
      path = os.path.join(ablation.fold_workdir(FLAGS.workdir, name, fold),
                          "results.json")
      print(f"{name} fold {fold}: no {path}; left out (--report_only)")
  with open(os.path.join(FLAGS.workdir, "ablation.md")) as f:
    print(f.read())


if __name__ == "__main__":
  app.run(main)
