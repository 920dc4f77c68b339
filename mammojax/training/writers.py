"""Metric writers: JSON lines and TensorBoard event files (no TensorFlow)."""

import json
import math
import os
from typing import Any, Mapping

import numpy as np


def _to_python(value: Any) -> Any:
  """Converts numpy / jax scalars and arrays to JSON-serialisable values."""
  if isinstance(value, Mapping):
    return {str(k): _to_python(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_to_python(v) for v in value]
  if hasattr(value, "tolist"):
    return _to_python(np.asarray(value).tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return str(value)
  return value


class MetricWriter:
  """Writes scalar metrics to ``metrics.jsonl`` and TensorBoard events."""

  def __init__(self, workdir: str, *, enabled: bool = True):
    self._enabled = enabled
    self._jsonl = None
    self._tb = None
    if not enabled:
      return
    os.makedirs(workdir, exist_ok=True)
    self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a")
    try:
      from tensorboardX import SummaryWriter  # pylint: disable=g-import-not-at-top

      self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
    except ImportError:  # tensorboardX is optional at run time.
      self._tb = None

  def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
    """Appends one JSON line and one TensorBoard point per scalar."""
    if not self._enabled:
      return
    record = {"step": int(step), **_to_python(dict(scalars))}
    self._jsonl.write(json.dumps(record) + "\n")
    self._jsonl.flush()
    if self._tb is not None:
      for key, value in scalars.items():
        if np.ndim(value) == 0 and value is not None:
          try:
            self._tb.add_scalar(key, float(value), int(step))
          except (TypeError, ValueError):
            pass

  def close(self) -> None:
    """Flushes and closes the files."""
    if self._jsonl is not None:
      self._jsonl.close()
      self._jsonl = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None


def write_json(path: str, data: Any) -> None:
  """Writes ``data`` as indented JSON (numpy values converted)."""
  with open(path, "w") as f:
    json.dump(_to_python(data), f, indent=2)
    f.write("\n")
