"""Test-wide JAX settings: 4 host devices, rbg PRNG and a persistent cache.

These must be set before JAX initialises its backends, so they live here.
"""

import os
import pathlib

os.environ.setdefault(
    "XLA_FLAGS", "--xla_force_host_platform_device_count=4"
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # pylint: disable=g-import-not-at-top

_CACHE = pathlib.Path(
    os.environ.get(
        "MAMMOJAX_TEST_CACHE",
        pathlib.Path(__file__).resolve().parent.parent / ".cache" / "jax",
    )
)
jax.config.update("jax_default_prng_impl", "rbg")
jax.config.update("jax_compilation_cache_dir", str(_CACHE))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)

TESTDATA = pathlib.Path(__file__).resolve().parent / "testdata"

# absltest helpers (create_tempdir, ...) read absl flags; pytest never parses
# them, so take the defaults.
from absl import flags as _absl_flags  # pylint: disable=g-import-not-at-top

if not _absl_flags.FLAGS.is_parsed():
  _absl_flags.FLAGS.mark_as_parsed()
