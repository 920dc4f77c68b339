"""The RMCG paper's Table 1: seven models x patient-wise folds, one command.

  python scripts/rmcg_table1.py --workdir=runs/rmcg_table1
  python scripts/rmcg_table1.py --workdir=runs/t1 --num_epochs=4 --folds=0,1

Runs the ``rmcg_cv`` protocol (``mammojax.experiments.rmcg``) of
``configs/rmcg.py:<variant>`` (default ``table1``: AlexNet, ResNet-18, ECC,
ResNet18-GCN, ResNet18-GAT, ResNet18-GCNII and RMCG with one data set,
split and schedule) and writes ``table1.md`` (accuracy, F1, precision,
recall in %, mean +/- std over the test folds), ``figures/table1.png``
(grouped bars like the paper's Fig. 5), ``results.json`` and
``report.md`` into ``--workdir``. Finished runs are reused, so an
interrupted call resumes. ``--num_epochs`` / ``--folds`` / ``--models``
reduce the schedule (docs/results.md says what was run).
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from configs import rmcg as rmcg_configs  # pylint: disable=g-import-not-at-top,wrong-import-position
from mammojax import runtime  # pylint: disable=g-import-not-at-top,wrong-import-position


def make_config(variant="table1", *, num_epochs=None, folds=None,
                models=None, builder_config=None):
  """``configs/rmcg.py:variant`` with the script's overrides."""
  config = rmcg_configs.get_config(variant)
  if num_epochs is not None:
    config.num_epochs = int(num_epochs)
  if folds:
    config.protocol.folds = tuple(int(f) for f in folds)
  if models:
    config.protocol.models = tuple(models)
  if builder_config:
    config.dataset.builder_config = builder_config
  return config


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True)
  parser.add_argument("--variant", default="table1",
                      help="configs/rmcg.py variant (table1, paper, test)")
  parser.add_argument("--num_epochs", type=int, default=None)
  parser.add_argument("--folds", default="",
                      help="comma-separated test folds (default: all)")
  parser.add_argument("--models", default="",
                      help=f"comma-separated subset of {rmcg_configs.MODELS}")
  args = parser.parse_args(argv)
  runtime.configure_jax()
  runtime.quiet_library_logging()
  from mammojax import experiments  # pylint: disable=g-import-not-at-top

  config = make_config(
      args.variant, num_epochs=args.num_epochs,
      folds=[f for f in args.folds.split(",") if f],
      models=[m for m in args.models.split(",") if m])
  out = experiments.run(config, args.workdir)
  print(f"Table 1 written to {os.path.join(args.workdir, 'table1.md')} and "
        f"{os.path.join(args.workdir, 'figures', 'table1.png')}")
  return out


if __name__ == "__main__":
  main()
