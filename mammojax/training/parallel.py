"""Device set-up for data parallel training with ``jax.pmap``.

Each local device gets its own padded batch (graph batches cannot be split
along an axis), so batches are stacked on a new leading device axis on the
host. Multi-host runs call ``jax.distributed.initialize`` first; every host
then feeds its own local devices and gradients are averaged over all of them
by the ``psum`` inside the step.
"""

from typing import Any, Sequence

from absl import logging
import jax
import numpy as np

AXIS_NAME = "batch"


def maybe_initialize_distributed(multihost: bool) -> None:
  """Calls ``jax.distributed.initialize()`` when ``config.multihost`` is set.

  The coordinator address, process count and id come from the environment
  (``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES``, ``JAX_PROCESS_ID``) or
  from the cluster auto-detection of ``jax.distributed`` (SLURM, TPU pods).
  """
  if multihost:
    jax.distributed.initialize()
    logging.info(
        "jax.distributed: process %d of %d",
        jax.process_index(),
        jax.process_count(),
    )


def local_devices(num_devices: int) -> list[Any]:
  """Returns the first ``num_devices`` local devices (0 = all of them)."""
  devices = jax.local_devices()
  if num_devices < 0 or num_devices > len(devices):
    raise ValueError(
        f"config.num_devices={num_devices}: expected 0 (all) or 1.."
        f"{len(devices)} local {devices[0].platform} devices"
    )
  return devices[: num_devices or len(devices)]


def replicate(tree: Any, devices: Sequence[Any]) -> Any:
  """One copy of ``tree`` per device on a new leading axis (pmap input).

  The first pmapped call places the copies on their devices; the state it
  returns stays there.
  """
  n = len(devices)
  host = jax.device_get(tree)
  return jax.tree_util.tree_map(
      lambda x: np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), host
  )


def unreplicate(tree: Any) -> Any:
  """Takes the copy on the first device of a replicated tree."""
  return jax.tree_util.tree_map(lambda x: x[0], tree)
