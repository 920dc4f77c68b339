"""ResNet-18 / ResNet-34 (BasicBlock) with torchvision's layout, NHWC.

Module names follow torchvision's ``state_dict`` (``conv1``, ``bn1``,
``layer3_1/bn2``, ``layer2_0/downsample_0``, ``fc``) so ``convert.py`` can load
torchvision weights. Blocks are unrolled rather than ``nn.scan``-ned: at most
five identical blocks per stage gain little compile time and the 1:1
parameter layout keeps checkpoints readable and conversion trivial.
"""

import functools
from typing import Any, Mapping, Sequence

import flax.linen as nn

from mammojax.models.cnn import layers

Array = Any


class BasicBlock(nn.Module):
  """torchvision ``BasicBlock``: two 3x3 convs, projection when shape changes."""

  features: int
  stride: int = 1

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    residual = x
    y = layers.conv(
        self.features, 3, stride=self.stride, padding=1, name='conv1'
    )(x)
    y = layers.batch_norm(train=train, name='bn1')(y)
    y = nn.relu(y)
    y = layers.conv(self.features, 3, padding=1, name='conv2')(y)
    y = layers.batch_norm(train=train, name='bn2')(y)
    if self.stride != 1 or x.shape[-1] != self.features:
      residual = layers.conv(
          self.features, 1, stride=self.stride, name='downsample_0'
      )(x)
      residual = layers.batch_norm(train=train, name='downsample_1')(residual)
    return nn.relu(y + residual)


class ResNet(nn.Module):
  """torchvision ResNet with BasicBlocks, a dropout before ``fc``.

  Attributes:
    stage_sizes: blocks per stage (``(2, 2, 2, 2)`` for ResNet-18).
    num_classes: logits per image.
    dropout: dropout rate applied to the pooled features before ``fc``
      (torchvision has none; the luminal paper uses 0.3).
    width: channels of the stem and the first stage (stage ``i`` has
      ``width * 2**i``); torchvision's 64 (only that width loads its
      weights). A narrower network trains faster from scratch on CPU.
  """

  stage_sizes: Sequence[int]
  num_classes: int = 1000
  dropout: float = 0.0
  width: int = 64

  @nn.compact
  def __call__(
      self,
      x: Array,
      *,
      train: bool,
      return_features: bool = False,
      feature_offsets: Mapping[str, Array] | None = None,
  ):
    """Runs the network.

    Args:
      x: images ``[batch, height, width, channels]`` (any channel count; the
        converter adapts ``conv1`` to it).
      train: batch statistics and dropout on (needs a ``'dropout'`` rng when
        ``dropout > 0``).
      return_features: also return the intermediate feature maps.
      feature_offsets: optional ``{feature name: offset}`` added to the tapped
        features (used by Grad-CAM to differentiate w.r.t. a layer).

    Returns:
      ``logits [batch, num_classes]``, or ``(logits, features)`` where
      ``features`` has ``'stem'``, ``'layer1'`` ... ``'layer4'``
      (``[batch, h, w, c]``) and ``'pooled'`` (``[batch, 8 * width]``).
    """
    feats, tap = layers.feature_taps(feature_offsets)
    x = layers.conv(self.width, 7, stride=2, padding=3, name='conv1')(x)
    x = layers.batch_norm(train=train, name='bn1')(x)
    x = nn.relu(x)
    x = layers.max_pool_3x3_s2(x)
    x = tap('stem', x)
    for i, num_blocks in enumerate(self.stage_sizes):
      features = self.width * 2**i
      for j in range(num_blocks):
        stride = 2 if i > 0 and j == 0 else 1
        x = BasicBlock(features, stride, name=f'layer{i + 1}_{j}')(
            x, train=train
        )
      x = tap(f'layer{i + 1}', x)
    logits = layers.classifier_head(
        x, tap_fn=tap, num_classes=self.num_classes, dropout=self.dropout,
        train=train, name='fc',
    )
    return (logits, feats) if return_features else logits


ResNet18 = functools.partial(ResNet, stage_sizes=(2, 2, 2, 2))
ResNet34 = functools.partial(ResNet, stage_sizes=(3, 4, 6, 3))
_ResNetTiny = functools.partial(ResNet, stage_sizes=(1, 1, 1, 1))
