"""Method registry: what ``train_and_evaluate`` needs from each paper.

A method bundles its data pipeline, model, loss definition (a ``Task`` of
``steps.py``) and report. ``config.method`` picks one; every method shares
the loop, the steps, checkpoints, metrics and writers.
"""

import importlib
from typing import Any, Optional, Protocol, Sequence

import ml_collections


class Method(Protocol):
  """The hooks of one method."""

  def create_data(
      self,
      config: ml_collections.ConfigDict,
      *,
      num_devices: int,
      examples_and_info: Optional[tuple[list[dict[str, Any]], dict]],
  ) -> Any:
    """Data with ``train_batches(epoch, num_devices=)``,
    ``eval_batches(split, num_devices=)``, ``splits``, ``vocabularies`` and
    ``info``."""

  def create_model(self, config, vocabularies) -> Any:
    """The linen model."""

  def create_task(self, config, model, data) -> Any:
    """The ``steps.Task`` (losses, GradNorm layer, eval outputs)."""

  def class_names(self, data, task: str) -> Sequence[str]:
    """Class names of one task head."""

  def num_items(self, batch) -> int:
    """Real (non-padding) training items in a host batch."""

  def write_report(self, workdir, config, data, results, raw_outputs,
                   state) -> None:
    """Figures and ``report.md`` at the end of a run."""

  # Optional: ``adapt_initial_state(config, state) -> state`` runs on the
  # freshly initialised state of a new run (not on a resumed one), e.g. to
  # load pretrained weights.


_METHODS = {
    "mtgcn": ("mammojax.training.mtgcn_task", "MTGCNMethod"),
    "luminal": ("mammojax.training.luminal_task", "LuminalMethod"),
    "cnn_baseline": ("mammojax.training.cnn_baseline_task",
                     "CNNBaselineMethod"),
}


def register(name: str, module: str, attribute: str) -> None:
  """Registers a method implemented in ``module.attribute``."""
  _METHODS[name] = (module, attribute)


def get_method(config: ml_collections.ConfigDict) -> Method:
  """The method named by ``config.method``."""
  name = config.get("method", "mtgcn")
  if name not in _METHODS:
    raise ValueError(
        f"config.method={name!r}: expected one of {sorted(_METHODS)}"
    )
  module, attribute = _METHODS[name]
  return getattr(importlib.import_module(module), attribute)()
