"""Device set-up for data parallel training with ``jax.pmap``.

Each local device gets its own padded batch (graph batches cannot be split
along an axis), so batches are stacked on a new leading device axis on the
host. Multi-host runs call ``jax.distributed.initialize`` first; every
process then feeds its own local devices (its slice of each global step's
per-device batches, see ``GraphData.batches`` / ``ArrayBatches.batches``) and
the gradients are summed over all devices of all processes by the ``psum``
inside the step.
"""

import os
from typing import Any, Sequence

from absl import logging
import jax
import numpy as np

_ENV_KEYS = {
    "JAX_COORDINATOR_ADDRESS": "coordinator_address",
    "JAX_NUM_PROCESSES": "num_processes",
    "JAX_PROCESS_ID": "process_id",
}

AXIS_NAME = "batch"


def maybe_initialize_distributed(multihost: bool) -> None:
  """Calls ``jax.distributed.initialize`` when ``config.multihost`` is set.

  The coordinator address, process count and id are taken from
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``
  where set (``jax.distributed`` itself reads only the first); the rest come
  from its cluster auto-detection (SLURM, Open MPI, TPU pods). CPU
  collectives across processes use gloo (the setting only concerns the CPU
  backend).
  """
  if not multihost:
    return
  kwargs = {}
  for env, arg in _ENV_KEYS.items():
    value = os.environ.get(env)
    if value:
      if arg != "coordinator_address":
        try:
          value = int(value)
        except ValueError as e:
          raise ValueError(
              f"config.multihost=True: {env}={value!r} is not an integer"
          ) from e
      kwargs[arg] = value
  jax.config.update("jax_cpu_collectives_implementation", "gloo")
  jax.distributed.initialize(**kwargs)
  logging.info(
      "jax.distributed: process %d of %d (%s)",
      jax.process_index(), jax.process_count(), kwargs or "auto-detected",
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


def pmap_devices(num_local: int) -> list[Any]:
  """The first ``num_local`` devices of every process, process by process.

  pmap's device order: process ``p`` feeds the slots ``p * num_local ..``.
  """
  by_process: dict[int, list[Any]] = {}
  for device in jax.devices():
    by_process.setdefault(device.process_index, []).append(device)
  return [
      d for p in sorted(by_process)
      for d in sorted(by_process[p], key=lambda d: d.id)[:num_local]
  ]


def local_values(tree: Any) -> Any:
  """Host copies ``[local devices, ...]`` of pmapped (device-axis) outputs.

  In a multi-process run a pmap output spans every process's devices and only
  this process's part can be read.
  """

  def get(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      shards = sorted(x.addressable_shards, key=lambda s: s.device.id)
      return np.stack(
          [np.asarray(s.data).reshape(x.shape[1:]) for s in shards]
      )
    return np.asarray(x)

  return jax.tree_util.tree_map(get, tree)


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
  if jax.process_count() > 1:
    return jax.tree_util.tree_map(
        lambda x: np.asarray(x[0]), local_values(tree)
    )
  return jax.tree_util.tree_map(lambda x: x[0], tree)
