"""``DenseStack``: PyG-style ``Sequential(Linear, ReLU, ..., Linear)``.

The small MLPs that NNConv (the edge network) and AttentionalAggregation
(the gate and feature networks) take as arguments: Dense layers named
``lin_0 ... lin_{L-1}`` with ReLU between them (none after the last), the
layout ``params_from_torch_state_dict`` reads from a ``torch.nn.Sequential``
of ``Linear`` and ``ReLU`` modules.
"""

from __future__ import annotations

import flax.linen as nn
import jax

Array = jax.Array


class DenseStack(nn.Module):
  """``Linear -> ReLU -> ... -> Linear`` with widths ``features``."""

  features: tuple[int, ...]
  bias: bool = True

  @nn.compact
  def __call__(self, x: Array) -> Array:
    if not self.features:
      raise ValueError('DenseStack.features: expected at least one width')
    for i, width in enumerate(self.features):
      x = nn.Dense(width, use_bias=self.bias, name=f'lin_{i}')(x)
      if i < len(self.features) - 1:
        x = nn.relu(x)
    return x
