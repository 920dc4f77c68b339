"""Process-wide JAX settings shared by the entry points and scripts."""

import logging as std_logging
import os

from absl import logging
import jax


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
  """Keeps orbax's and TFDS's per-file INFO chatter out of the run log."""

  def filter(self, record: std_logging.LogRecord) -> bool:
    noisy = "orbax" in record.pathname or "tensorflow_datasets" in (
        record.pathname
    )
    return record.levelno >= std_logging.WARNING or not noisy


def quiet_library_logging() -> None:
  """Filters library INFO records from absl's log handler."""
  logging.get_absl_handler().addFilter(_DropLibraryInfo())
