"""MobileNetV2 (width 1.0) with torchvision's layout, NHWC.

Names follow torchvision's ``state_dict``: ``features_0_0`` is
``features.0.0`` (stem conv), ``features_3_conv_1_0`` the depthwise conv of
block 3, ``classifier_1`` the head ``Linear``.
"""

from typing import Any, Mapping, Sequence

import flax.linen as nn

from mammojax.models.cnn import layers

Array = Any

# (expansion t, output channels c, repeats n, first stride s), torchvision's.
_INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _conv_bn_relu6(x, features, kernel, *, stride=1, groups=1, train, name):
  """torchvision ``Conv2dNormActivation`` with ReLU6 (``name_0``, ``name_1``)."""
  x = layers.conv(
      features, kernel, stride=stride, padding=(kernel - 1) // 2,
      groups=groups, name=f'{name}_0',
  )(x)
  x = layers.batch_norm(train=train, name=f'{name}_1')(x)
  return nn.relu6(x)


class InvertedResidual(nn.Module):
  """Expand (1x1) -> depthwise 3x3 -> linear project (1x1), residual if able."""

  features: int
  stride: int
  expand_ratio: int

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    in_features = x.shape[-1]
    hidden = int(round(in_features * self.expand_ratio))
    y, i = x, 0
    if self.expand_ratio != 1:
      y = _conv_bn_relu6(y, hidden, 1, train=train, name='conv_0')
      i = 1
    y = _conv_bn_relu6(
        y, hidden, 3, stride=self.stride, groups=hidden, train=train,
        name=f'conv_{i}',
    )
    y = layers.conv(self.features, 1, name=f'conv_{i + 1}')(y)
    y = layers.batch_norm(train=train, name=f'conv_{i + 2}')(y)
    if self.stride == 1 and in_features == self.features:
      return x + y
    return y


class MobileNetV2(nn.Module):
  """torchvision ``mobilenet_v2`` (width multiplier 1.0).

  Attributes:
    num_classes: logits per image.
    dropout: rate before the head (torchvision: 0.2).
    setting: the inverted-residual table ``(t, c, n, s)``.
  """

  num_classes: int = 1000
  dropout: float = 0.2
  setting: Sequence[tuple[int, int, int, int]] = _INVERTED_RESIDUAL_SETTING

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

    Features: ``'features'`` (last conv map, ``[b, h/32, w/32, 1280]``) and
    ``'pooled'``; arguments as in ``ResNet.__call__``.
    """
    feats, tap = layers.feature_taps(feature_offsets)
    x = _conv_bn_relu6(x, 32, 3, stride=2, train=train, name='features_0')
    index = 1
    for t, c, n, s in self.setting:
      for j in range(n):
        x = InvertedResidual(
            c, s if j == 0 else 1, t, name=f'features_{index}'
        )(x, train=train)
        index += 1
    x = _conv_bn_relu6(x, 1280, 1, train=train, name=f'features_{index}')
    x = tap('features', x)
    logits = layers.classifier_head(
        x, tap_fn=tap, num_classes=self.num_classes, dropout=self.dropout,
        train=train, name='classifier_1',
    )
    return (logits, feats) if return_features else logits
