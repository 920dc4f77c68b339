"""Orbax checkpoints: the latest state and the best state by validation.

Two managers live under ``workdir/checkpoints/{latest,best}``. The latest one
is written at the end of every epoch and is what a resumed run restores; the
best one is written when the selection metric improves and is what the final
test evaluation uses. A state is saved only after its loss was checked to be
finite, so a diverging run always leaves the last good checkpoint behind.
In a multi-process run every process calls save and restore (orbax
coordinates them; the host arrays are written once).

The latest manager keeps two steps, so one damaged checkpoint (a truncated
file after a crash or a full disk) costs at most one epoch: restoring tries
the newest step and, if it cannot be read, logs a warning naming the step
directory and the error, *moves* the damaged step to
``workdir/checkpoints/damaged/<manager>-<step>`` (out of reach of orbax's
garbage collection, which would otherwise delete it once newer steps are
saved, and out of the way of the re-trained step of the same number) and
falls back to the previous step; with no readable step the run starts afresh,
with a warning. Nothing damaged is ever deleted.
"""

import os
import time
from typing import Any, Optional

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp


class Checkpointer:
  """Latest + best checkpoint managers for one workdir."""

  def __init__(self, workdir: str):
    root = os.path.abspath(os.path.join(workdir, "checkpoints"))
    self._damaged_dir = os.path.join(root, "damaged")
    # The step restore_latest resumed from (None: none, or not called yet).
    self.restored_latest_step: Optional[int] = None

    def options(name, max_to_keep):
      # Multi-process saves synchronise on barriers named after the step:
      # a prefix per manager keeps latest's and best's saves of one step
      # apart.
      return ocp.CheckpointManagerOptions(
          max_to_keep=max_to_keep, create=True,
          multiprocessing_options=ocp.options.MultiprocessingOptions(
              barrier_sync_key_prefix=name
          ),
      )

    # Two latest steps: the previous one is the fallback of a damaged newest.
    self._latest = ocp.CheckpointManager(
        os.path.join(root, "latest"), options=options("latest", 2)
    )
    self._best = ocp.CheckpointManager(
        os.path.join(root, "best"), options=options("best", 1)
    )

  @staticmethod
  def _save(manager, step: int, state: Any, meta: dict) -> None:
    if step in manager.all_steps():
      # A resumed run re-trains the epochs after the step it restored, so it
      # can reach the step of a best checkpoint again: the same state.
      manager.delete(step)
    manager.save(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
        ),
        force=True,
    )

  def save_latest(self, step: int, state: Any, meta: dict) -> None:
    """Saves the end-of-epoch state and loop metadata."""
    self._save(self._latest, step, state, meta)

  def save_best(self, step: int, state: Any, meta: dict) -> None:
    """Saves the state that has the best validation metric so far."""
    self._save(self._best, step, state, meta)

  def _set_aside(self, manager, step: int) -> str:
    """Moves a damaged step out of ``manager``; returns where it went."""
    source = os.path.join(str(manager.directory), str(step))
    name = f"{os.path.basename(str(manager.directory))}-{step}"
    target = os.path.join(self._damaged_dir, name)
    if os.path.exists(target):
      target = f"{target}-{int(time.time())}"
    if jax.process_index() == 0:
      os.makedirs(self._damaged_dir, exist_ok=True)
      os.rename(source, target)
    if jax.process_count() > 1:
      from jax.experimental import multihost_utils  # pylint: disable=g-import-not-at-top
      multihost_utils.sync_global_devices(f"mammojax_set_aside_{name}")
    manager.reload()
    return target

  def _restore(self, manager, abstract_state: Any):
    """The newest readable step of ``manager`` as ``(state, meta, step)``."""
    for step in sorted(manager.all_steps(), reverse=True):
      try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract_state),
                meta=ocp.args.JsonRestore(),
            ),
        )
      except Exception as e:  # pylint: disable=broad-except
        # TensorStore, JSON and orbax errors alike: a step we cannot read.
        path = os.path.join(str(manager.directory), str(step))
        target = self._set_aside(manager, step)
        logging.warning(
            "checkpoint %s cannot be restored (%s: %s); moved it to %s and "
            "trying the previous step", path, type(e).__name__,
            str(e).splitlines()[0] if str(e) else "", target,
        )
        continue
      return restored.state, dict(restored.meta), step
    return None

  def restore_latest(self, abstract_state: Any):
    """``(state, meta)`` of the newest readable latest step, or None."""
    had_steps = bool(self._latest.all_steps())
    restored = self._restore(self._latest, abstract_state)
    if restored is None:
      if had_steps:
        logging.warning(
            "NO readable checkpoint under %s (the damaged ones are in %s): "
            "TRAINING STARTS FROM SCRATCH", self._latest.directory,
            self._damaged_dir,
        )
      return None
    state, meta, step = restored
    self.restored_latest_step = step
    return state, meta

  def restore_best(self, abstract_state: Any):
    """``(state, meta)`` of the best checkpoint, or None."""
    restored = self._restore(self._best, abstract_state)
    return None if restored is None else restored[:2]

  def wait_until_finished(self) -> None:
    """Blocks until asynchronous saves are on disk."""
    self._latest.wait_until_finished()
    self._best.wait_until_finished()

  def close(self) -> None:
    """Finishes pending saves and releases the managers."""
    self.wait_until_finished()
    self._latest.close()
    self._best.close()


def abstract_like(tree: Any) -> Any:
  """Shape/dtype structure of ``tree`` for restoring into it.

  Host (numpy) leaves, as multi-process runs keep them, restore as numpy.
  """
  return jax.tree_util.tree_map(
      lambda x: x if isinstance(x, np.ndarray) else
      ocp.utils.to_shape_dtype_struct(x), tree,
  )


def restore_best_checkpoint(
    workdir: str, *, config_key: str
) -> tuple[dict[str, Any], int, str]:
  """``(variables, step, path)`` of a run's best checkpoint.

  ``variables`` is ``{'params': ..., **model_state}`` as saved (no target
  tree: the caller checks it against its model), ``step`` the training step
  it was saved at and ``path`` the best manager's folder.

  Args:
    workdir: the run's workdir.
    config_key: the config key or flag that named ``workdir`` (for the
      error).

  Raises:
    FileNotFoundError: naming ``config_key`` and the path when the run has
      no best checkpoint.
  """
  path = os.path.abspath(os.path.join(workdir, "checkpoints", "best"))
  if not os.path.isdir(path):
    raise FileNotFoundError(
        f"{config_key}={workdir!r}: no best checkpoint at {path}; train that "
        "run first"
    )
  with ocp.CheckpointManager(path) as manager:
    step = manager.latest_step()
    if step is None:
      raise FileNotFoundError(
          f"{config_key}={workdir!r}: {path} holds no checkpoint"
      )
    restored = manager.restore(
        step, args=ocp.args.Composite(state=ocp.args.StandardRestore())
    )
  state = restored.state
  variables = {"params": state["params"], **dict(state["model_state"])}
  return variables, int(step), path


def restore_best_variables(workdir: str, *, config_key: str) -> dict[str, Any]:
  """``{'params': ..., 'batch_stats': ...}`` of another run's best checkpoint.

  Used to start from, or distil from, an earlier run of the same command
  (transfer learning, teachers).

  Args:
    workdir: the earlier run's workdir.
    config_key: the config key that named ``workdir`` (for the error).

  Raises:
    FileNotFoundError: naming ``config_key`` when the run has no best
      checkpoint.
  """
  return restore_best_checkpoint(workdir, config_key=config_key)[0]
