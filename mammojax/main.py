"""Entry point: ``python -m mammojax.main --config=configs/mtgcn.py --workdir=DIR``.

Parses flags and hands the config to ``training.loop.train_and_evaluate``
(flax examples' ``main.py`` pattern), or, for a config with a ``protocol``
block (e.g. ``configs/luminal.py``), to the multi-run protocol
``config.protocol.name`` of ``mammojax.experiments``. Config fields are
overridden from the command line, e.g. ``--config.model.num_layers=16``.
"""

import os
from typing import Any

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from mammojax import runtime

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
config_flags.DEFINE_config_file(
    "config",
    None,
    "Training configuration file, e.g. configs/mtgcn.py or "
    "configs/mtgcn.py:paper.",
    lock_config=True,
)


def auc_summary(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
  """``{split: {task: AUC ovo}}`` of every task evaluated on val / test."""
  return {
      split: {
          task: report["auc_ovo"]
          for task, report in results[split].items()
          if isinstance(report, dict) and "auc_ovo" in report
      }
      for split in ("val", "test")
      if split in results
  }


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  runtime.configure_jax()
  runtime.quiet_library_logging()
  from mammojax import experiments  # pylint: disable=g-import-not-at-top
  from mammojax.training import loop  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  logging.info("config:\n%s", config)
  if config.get("protocol"):
    experiments.run(config, FLAGS.workdir)
    print(f"protocol {config.protocol.name}: results written to "
          f"{FLAGS.workdir}")
    return
  results = loop.train_and_evaluate(config, FLAGS.workdir)
  if jax.process_index() == 0:  # Multi-host: process 0 writes the results.
    print(f"results written to {os.path.join(FLAGS.workdir, 'results.json')}")
    print(f"AUC (Hand & Till one-vs-one): {auc_summary(results)}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
