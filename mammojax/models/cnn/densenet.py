"""DenseNet-121 with torchvision's layout, NHWC.

Names follow torchvision's ``state_dict``: ``features_conv0``,
``features_denseblock2_denselayer5/conv1``, ``features_transition1/norm``,
``features_norm5``, ``classifier``. Dense layers are unrolled: their input
width grows layer by layer, so they cannot share one scanned parameter shape.
"""

import functools
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mammojax.models.cnn import layers

Array = Any


class DenseLayer(nn.Module):
  """BN-ReLU-conv1x1 (bottleneck) -> BN-ReLU-conv3x3 (``growth_rate`` maps)."""

  growth_rate: int
  bn_size: int

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    y = nn.relu(layers.batch_norm(train=train, name='norm1')(x))
    y = layers.conv(self.bn_size * self.growth_rate, 1, name='conv1')(y)
    y = nn.relu(layers.batch_norm(train=train, name='norm2')(y))
    return layers.conv(self.growth_rate, 3, padding=1, name='conv2')(y)


class Transition(nn.Module):
  """BN-ReLU-conv1x1 (halve channels) -> 2x2 average pool."""

  features: int

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    x = nn.relu(layers.batch_norm(train=train, name='norm')(x))
    x = layers.conv(self.features, 1, name='conv')(x)
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class DenseNet(nn.Module):
  """torchvision DenseNet (BC, compression 0.5).

  Attributes:
    block_config: dense layers per block (121: ``(6, 12, 24, 16)``).
    growth_rate: channels added per dense layer.
    num_init_features: stem width.
    bn_size: bottleneck width multiplier.
    num_classes: logits per image.
    dropout: rate before ``classifier`` (torchvision's ``drop_rate`` is the
      dropout inside dense layers and is 0; not implemented here).
  """

  block_config: Sequence[int] = (6, 12, 24, 16)
  growth_rate: int = 32
  num_init_features: int = 64
  bn_size: int = 4
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

    Features: ``'denseblock1'``..``'denseblock4'``, ``'features'`` (after
    ``norm5`` and ReLU, the map Grad-CAM uses) and ``'pooled'``; arguments as
    in ``ResNet.__call__``.
    """
    feats, tap = layers.feature_taps(feature_offsets)
    x = layers.conv(
        self.num_init_features, 7, stride=2, padding=3, name='features_conv0'
    )(x)
    x = nn.relu(layers.batch_norm(train=train, name='features_norm0')(x))
    x = layers.max_pool_3x3_s2(x)
    num_features = self.num_init_features
    for i, num_layers in enumerate(self.block_config):
      for j in range(num_layers):
        y = DenseLayer(
            self.growth_rate, self.bn_size,
            name=f'features_denseblock{i + 1}_denselayer{j + 1}',
        )(x, train=train)
        x = jnp.concatenate([x, y], axis=-1)
      num_features += num_layers * self.growth_rate
      x = tap(f'denseblock{i + 1}', x)
      if i != len(self.block_config) - 1:
        num_features //= 2
        x = Transition(num_features, name=f'features_transition{i + 1}')(
            x, train=train
        )
    x = layers.batch_norm(train=train, name='features_norm5')(x)
    x = tap('features', nn.relu(x))
    logits = layers.classifier_head(
        x, tap_fn=tap, num_classes=self.num_classes, dropout=self.dropout,
        train=train, name='classifier',
    )
    return (logits, feats) if return_features else logits


DenseNet121 = functools.partial(DenseNet, block_config=(6, 12, 24, 16))
