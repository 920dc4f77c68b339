"""ShuffleNetV2 (x1.0) with torchvision's layout, NHWC.

Names follow torchvision's ``state_dict`` (``conv1_0``, ``stage2_0/branch1_2``,
``conv5_1``, ``fc``). Channel split / concat / shuffle act on the last (NHWC)
axis in the same channel order as torch's NCHW code.
"""

import functools
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mammojax.models.cnn import layers

Array = Any


def channel_shuffle(x: Array, groups: int) -> Array:
  """torchvision ``channel_shuffle`` on ``[b, h, w, c]``."""
  b, h, w, c = x.shape
  x = x.reshape(b, h, w, groups, c // groups)
  return jnp.swapaxes(x, 3, 4).reshape(b, h, w, c)


class ShuffleUnit(nn.Module):
  """torchvision ShuffleNetV2 ``InvertedResidual`` (stride 1 or 2)."""

  features: int
  stride: int

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    branch = self.features // 2
    bn = functools.partial(layers.batch_norm, train=train)

    def branch2(y):
      y = layers.conv(branch, 1, name='branch2_0')(y)
      y = nn.relu(bn(name='branch2_1')(y))
      y = layers.conv(
          branch, 3, stride=self.stride, padding=1, groups=branch,
          name='branch2_3',
      )(y)
      y = bn(name='branch2_4')(y)
      y = layers.conv(branch, 1, name='branch2_5')(y)
      return nn.relu(bn(name='branch2_6')(y))

    if self.stride == 1:
      x1, x2 = jnp.split(x, 2, axis=-1)
      out = jnp.concatenate([x1, branch2(x2)], axis=-1)
    else:
      c = x.shape[-1]
      y = layers.conv(
          c, 3, stride=self.stride, padding=1, groups=c, name='branch1_0'
      )(x)
      y = bn(name='branch1_1')(y)
      y = layers.conv(branch, 1, name='branch1_2')(y)
      y = nn.relu(bn(name='branch1_3')(y))
      out = jnp.concatenate([y, branch2(x)], axis=-1)
    return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
  """torchvision ShuffleNetV2.

  Attributes:
    stages_repeats: units per stage (x1.0: ``(4, 8, 4)``).
    stages_out_channels: stem, stage2..4 and conv5 widths.
    num_classes: logits per image.
    dropout: rate before ``fc`` (torchvision has none).
  """

  stages_repeats: Sequence[int] = (4, 8, 4)
  stages_out_channels: Sequence[int] = (24, 116, 232, 464, 1024)
  num_classes: int = 1000
  dropout: float = 0.0

  @nn.compact
  def __call__(
      self,
      x: Array,
      *,
      train: bool,
      return_features: bool = False,
      feature_offsets: Mapping[str, Array] | None = None,
  ):
    """Logits ``[batch, num_classes]`` (or ``(logits, features)``).

    Features: ``'stage2'``..``'stage4'``, ``'conv5'`` (last map) and
    ``'pooled'``; arguments as in ``ResNet.__call__``.
    """
    feats, tap = layers.feature_taps(feature_offsets)
    widths = self.stages_out_channels
    x = layers.conv(widths[0], 3, stride=2, padding=1, name='conv1_0')(x)
    x = nn.relu(layers.batch_norm(train=train, name='conv1_1')(x))
    x = layers.max_pool_3x3_s2(x)
    for i, (repeats, width) in enumerate(
        zip(self.stages_repeats, widths[1:-1])
    ):
      for j in range(repeats):
        x = ShuffleUnit(width, 2 if j == 0 else 1, name=f'stage{i + 2}_{j}')(
            x, train=train
        )
      x = tap(f'stage{i + 2}', x)
    x = layers.conv(widths[-1], 1, name='conv5_0')(x)
    x = nn.relu(layers.batch_norm(train=train, name='conv5_1')(x))
    x = tap('conv5', x)
    logits = layers.classifier_head(
        x, tap_fn=tap, num_classes=self.num_classes, dropout=self.dropout,
        train=train, name='fc',
    )
    return (logits, feats) if return_features else logits


ShuffleNetV2X1_0 = functools.partial(
    ShuffleNetV2,
    stages_repeats=(4, 8, 4),
    stages_out_channels=(24, 116, 232, 464, 1024),
)
