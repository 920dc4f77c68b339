"""Train state: parameters, optimiser, model state and GradNorm state."""

from typing import Any, Optional

import flax
from flax.training import train_state
import ml_collections
import optax


class TrainState(train_state.TrainState):
  """Flax TrainState plus mutable model collections and GradNorm weights.

  Attributes:
    model_state: non-parameter collections (e.g. ``batch_stats``).
    gradnorm: a ``GradNormState`` when GradNorm balances the tasks, else None.
    task_weights: static task weights ``[T]`` used when GradNorm is off
      (``config.task_weights``, default 1 each).
  """

  model_state: flax.core.FrozenDict[str, Any] | dict[str, Any]
  gradnorm: Optional[Any]
  task_weights: Any


def create_optimizer(
    config: ml_collections.ConfigDict,
) -> optax.GradientTransformation:
  """The network optimiser of ``config.optimizer`` (constant learning rate,
  as in the papers), with ``weight_decay`` and ``grad_clip_norm``."""
  name = config.optimizer
  if name == "adam":
    tx = optax.adam(config.learning_rate)
    if config.weight_decay:
      # torch.optim.Adam(weight_decay=...) adds L2 to the gradient.
      tx = optax.chain(optax.add_decayed_weights(config.weight_decay), tx)
  elif name == "adamw":
    tx = optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
  elif name == "sgd":
    tx = optax.chain(
        optax.add_decayed_weights(config.weight_decay),
        optax.sgd(config.learning_rate, momentum=0.9),
    )
  else:
    raise ValueError(
        f"config.optimizer={name!r}: expected one of adam, adamw, sgd"
    )
  if config.get("grad_clip_norm", 0.0):
    tx = optax.chain(optax.clip_by_global_norm(config.grad_clip_norm), tx)
  return tx
