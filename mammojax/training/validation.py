"""Config validation: once, at start, with errors that name the key.

``validate_config(config, method)`` checks the keys every method shares
(optimisation, splits, GradNorm) and then calls the method's own
``validate_config`` hook, so an out-of-range value (``graph.knn_k=0``, a
negative learning rate, a fold past ``num_folds``) stops the run before any
data is built instead of training silently on something else.
"""

from typing import Any, Optional, Sequence

import ml_collections

_MISSING = object()


def _lookup(config: ml_collections.ConfigDict, key: str) -> Any:
  node = config
  for part in key.split("."):
    if not hasattr(node, "get") or part not in node:
      return _MISSING
    node = node[part]
  return node


def check(
    config: ml_collections.ConfigDict,
    key: str,
    kind: type,
    *,
    minimum: Optional[float] = None,
    maximum: Optional[float] = None,
    exclusive: bool = False,
    exclusive_maximum: bool = False,
    choices: Optional[Sequence[Any]] = None,
    required: bool = True,
) -> Any:
  """Checks ``config.<key>`` (dotted) and returns its value.

  Args:
    config: the experiment configuration.
    key: dotted path, e.g. ``graph.knn_k``.
    kind: expected type (``float`` accepts ints too; ``int`` rejects bools).
    minimum: smallest allowed value (``exclusive``: the value must exceed it).
    maximum: largest allowed value (``exclusive_maximum``: must stay below).
    choices: the allowed values.
    required: whether a missing key is an error (else it is skipped).

  Raises:
    ValueError: naming ``config.<key>``, its value and what was expected.
  """
  value = _lookup(config, key)
  if value is _MISSING:
    if required:
      raise ValueError(f"config.{key} is missing: expected type {kind.__name__}")
    return None
  ok_type = (
      isinstance(value, (int, float)) and not isinstance(value, bool)
      if kind is float
      else isinstance(value, kind) and not (
          kind is int and isinstance(value, bool)
      )
  )
  if not ok_type:
    raise ValueError(
        f"config.{key}={value!r}: expected type {kind.__name__}"
    )
  if choices is not None and value not in choices:
    raise ValueError(
        f"config.{key}={value!r}: expected one of {', '.join(map(str, choices))}"
    )
  low_ok = minimum is None or (value > minimum if exclusive else value >= minimum)
  high_ok = maximum is None or (
      value < maximum if exclusive_maximum else value <= maximum
  )
  if not (low_ok and high_ok):
    bounds = []
    if minimum is not None:
      bounds.append(f"{'>' if exclusive else '>='} {minimum}")
    if maximum is not None:
      bounds.append(f"{'<' if exclusive_maximum else '<='} {maximum}")
    raise ValueError(
        f"config.{key}={value!r}: expected a value {' and '.join(bounds)}"
    )
  return value


def validate_common(config: ml_collections.ConfigDict) -> None:
  """The keys of the shared trainer (``configs/common.py``)."""
  check(config, "seed", int)
  check(config, "batch_size", int, minimum=1)
  check(config, "num_epochs", int, minimum=0)
  check(config, "optimizer", str, choices=("adam", "adamw", "sgd"))
  check(config, "learning_rate", float, minimum=0.0, exclusive=True)
  check(config, "weight_decay", float, minimum=0.0)
  check(config, "grad_clip_norm", float, minimum=0.0, required=False)
  check(config, "early_stopping_patience", int, minimum=0)
  check(config, "log_every_steps", int, minimum=1)
  check(config, "num_devices", int, minimum=0)
  selection = check(config, "selection_metric", str)
  if not selection.startswith("val/"):
    raise ValueError(
        f"config.selection_metric={selection!r}: expected a validation "
        "metric, e.g. val/mean_auc or val/loss"
    )
  if "dataset" in config:
    check(config, "dataset.name", str)
    check(config, "dataset.val_fraction", float, minimum=0.0, maximum=1.0,
          exclusive_maximum=True, required=False)
    check(config, "dataset.test_fraction", float, minimum=0.0, maximum=1.0,
          exclusive_maximum=True, required=False)
    folds = check(config, "dataset.num_folds", int, minimum=1, required=False)
    if folds is not None:
      check(config, "dataset.fold", int, minimum=0, maximum=folds,
            exclusive_maximum=True)
  if config.get("gradnorm") and config.gradnorm.get("enabled", False):
    check(config, "gradnorm.alpha", float, minimum=0.0)
    check(config, "gradnorm.learning_rate", float, minimum=0.0, exclusive=True)
    check(config, "gradnorm.initial_loss", str,
          choices=("first", "log_num_classes"))


def validate_config(config: ml_collections.ConfigDict, method: Any) -> None:
  """Shared checks, then the method's ``validate_config`` hook (if any)."""
  validate_common(config)
  hook = getattr(method, "validate_config", None)
  if hook is not None:
    hook(config)
