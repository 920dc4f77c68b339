"""torchvision ``AlexNet`` (Krizhevsky et al.) as a Flax module.

``features`` (five convs, three 3 x 3 / 2 max pools), an adaptive average
pool to 6 x 6 (torch semantics: bins ``floor(i H / 6) .. ceil((i + 1) H / 6)``,
so small maps are replicated), then ``classifier``: dropout, Linear(9216,
hidden), ReLU, dropout, Linear(hidden, hidden), ReLU, Linear(hidden,
classes). ``hidden`` is torchvision's 4096 by default; the RMCG CPU configs
use a smaller one. Param names: ``conv_{0,3,6,8,10}``, ``fc_{1,4,6}``
(torchvision's Sequential indices).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def adaptive_avg_pool(x: Array, out: int) -> Array:
  """torch ``AdaptiveAvgPool2d(out)`` of NHWC ``x``."""
  _, h, w, _ = x.shape

  def bins(n):
    return [(math.floor(i * n / out), math.ceil((i + 1) * n / out))
            for i in range(out)]

  rows = [jnp.mean(x[:, a:b], axis=1) for a, b in bins(h)]
  x = jnp.stack(rows, axis=1)
  cols = [jnp.mean(x[:, :, a:b], axis=2) for a, b in bins(w)]
  return jnp.stack(cols, axis=2)


class AlexNet(nn.Module):
  """AlexNet; ``__call__(x [B, H, W, C], *, train) -> logits``."""

  num_classes: int = 1000
  dropout: float = 0.5
  hidden: int = 4096

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    def conv(features, kernel, stride, padding, name):
      return nn.Conv(features, (kernel, kernel), strides=(stride, stride),
                     padding=[(padding, padding)] * 2, name=name)

    def pool(x):
      return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")

    x = pool(nn.relu(conv(64, 11, 4, 2, "conv_0")(x)))
    x = pool(nn.relu(conv(192, 5, 1, 2, "conv_3")(x)))
    x = nn.relu(conv(384, 3, 1, 1, "conv_6")(x))
    x = nn.relu(conv(256, 3, 1, 1, "conv_8")(x))
    x = nn.relu(conv(256, 3, 1, 1, "conv_10")(x))
    if min(x.shape[1:3]) >= 3:
      x = pool(x)
    x = adaptive_avg_pool(x, 6)
    # torch flattens NCHW: channel-major.
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    drop = lambda y: nn.Dropout(self.dropout, deterministic=not train)(y)
    x = nn.relu(nn.Dense(self.hidden, name="fc_1")(drop(x)))
    x = nn.relu(nn.Dense(self.hidden, name="fc_4")(drop(x)))
    return nn.Dense(self.num_classes, name="fc_6")(x)
