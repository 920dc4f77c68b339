"""Orbax checkpoints: the latest state and the best state by validation.

Two managers live under ``workdir/checkpoints/{latest,best}``. The latest one
is written at the end of every epoch and is what a resumed run restores; the
best one is written when the selection metric improves and is what the final
test evaluation uses. A state is saved only after its loss was checked to be
finite, so a diverging run always leaves the last good checkpoint behind.
"""

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Latest + best checkpoint managers for one workdir."""

  def __init__(self, workdir: str):
    root = os.path.abspath(os.path.join(workdir, "checkpoints"))
    options = ocp.CheckpointManagerOptions(max_to_keep=1, create=True)
    self._latest = ocp.CheckpointManager(
        os.path.join(root, "latest"), options=options
    )
    self._best = ocp.CheckpointManager(
        os.path.join(root, "best"), options=options
    )

  @staticmethod
  def _save(manager, step: int, state: Any, meta: dict) -> None:
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

  @staticmethod
  def _restore(manager, abstract_state: Any) -> Optional[tuple[Any, dict]]:
    step = manager.latest_step()
    if step is None:
      return None
    restored = manager.restore(
        step,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state),
            meta=ocp.args.JsonRestore(),
        ),
    )
    return restored.state, dict(restored.meta)

  def restore_latest(self, abstract_state: Any):
    """Returns ``(state, meta)`` of the latest checkpoint, or None."""
    return self._restore(self._latest, abstract_state)

  def restore_best(self, abstract_state: Any):
    """Returns ``(state, meta)`` of the best checkpoint, or None."""
    return self._restore(self._best, abstract_state)

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
  """Shape/dtype structure of ``tree`` for restoring into it."""
  return jax.tree_util.tree_map(ocp.utils.to_shape_dtype_struct, tree)


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
  return {"params": state["params"], **dict(state["model_state"])}
