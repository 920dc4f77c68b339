"""Entry point: ``python -m mammojax.main --config=configs/mtgcn.py --workdir=DIR``.

Parses flags and hands the config to ``training.loop.train_and_evaluate``
(flax examples' ``main.py`` pattern). Config fields are overridden from the
command line, e.g. ``--config.model.num_layers=16``.
"""

import logging as std_logging
import os

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

FLAGS = flags.FLAGS

flags.DEFINE_string("workdir", None, "Directory for checkpoints and results.")
config_flags.DEFINE_config_file(
    "config",
    None,
    "Training configuration file, e.g. configs/mtgcn.py or "
    "configs/mtgcn.py:paper.",
    lock_config=True,
)


def configure_jax() -> None:
  """rbg PRNG and the persistent compilation cache (fast CPU start-up)."""
  jax.config.update("jax_default_prng_impl", "rbg")
  cache = os.environ.get(
      "MAMMOJAX_COMPILATION_CACHE",
      os.path.join(os.path.expanduser("~"), ".cache", "mammojax", "jax"),
  )
  if cache:
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


class _DropLibraryInfo(std_logging.Filter):
  """Keeps orbax's per-file INFO chatter out of the run log."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    noisy = "orbax" in record.pathname or "tensorflow_datasets" in (
        record.pathname
    )
    return record.levelno >= std_logging.WARNING or not noisy


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
  logging.get_absl_handler().addFilter(_DropLibraryInfo())
  configure_jax()
  from mammojax.training import loop  # pylint: disable=g-import-not-at-top

  config = FLAGS.config
  logging.info("config:\n%s", config)
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
