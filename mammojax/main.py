"""Entry point: ``python -m mammojax.main --config=configs/mtgcn.py --workdir=DIR``.

Parses flags and hands the config to ``training.loop.train_and_evaluate``
(flax examples' ``main.py`` pattern). Config fields are overridden from the
command line, e.g. ``--config.model.num_layers=16``.
"""

import os

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


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  runtime.configure_jax()
  runtime.quiet_library_logging()
  from mammojax.training import loop  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  logging.info("config:\n%s", config)
  if config.get("protocol"):
    from mammojax.experiments import luminal  # pylint: disable=g-import-not-at-top

    luminal.run_protocol(config, FLAGS.workdir)
    print(f"results written to {os.path.join(FLAGS.workdir, 'results.json')}")
    return
  results = loop.train_and_evaluate(config, FLAGS.workdir)
  summary = {
      split: {
          task: results[split][task].get("auc_ovo")
          for task in config.tasks
          if task in results.get(split, {})
      }
      for split in ("val", "test")
      if split in results
  }
  print(f"results written to {os.path.join(FLAGS.workdir, 'results.json')}")
  print(f"AUC (Hand & Till one-vs-one): {summary}")


if __name__ == "__main__":
  flags.mark_flags_as_required(["config", "workdir"])
  app.run(main)
