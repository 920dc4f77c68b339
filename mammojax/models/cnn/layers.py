"""Layers shared by the torchvision-layout CNNs (conv, batch norm, feature taps).

Every CNN in this package names its Flax submodules so that the torchvision
``state_dict`` key is recovered by replacing ``_`` with ``.`` in each module
name (``layer1_0/downsample_0/kernel`` <-> ``layer1.0.downsample.0.weight``);
``convert.py`` relies on that rule and on torchvision module names never
containing an underscore.
"""

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax.numpy as jnp

Array = Any

# torch BatchNorm2d defaults: running stats decay 0.9 (torch momentum=0.1).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def conv(
    features: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    name: str,
    use_bias: bool = False,
) -> nn.Conv:
  """A ``torch.nn.Conv2d`` look-alike: square kernel, symmetric zero padding."""
  return nn.Conv(
      features,
      (kernel, kernel),
      strides=(stride, stride),
      padding=((padding, padding), (padding, padding)),
      feature_group_count=groups,
      use_bias=use_bias,
      kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
      name=name,
  )


def batch_norm(*, train: bool, name: str) -> nn.BatchNorm:
  """A ``torch.nn.BatchNorm2d`` look-alike (momentum 0.9, eps 1e-5)."""
  return nn.BatchNorm(
      use_running_average=not train,
      momentum=BN_MOMENTUM,
      epsilon=BN_EPSILON,
      name=name,
  )


def max_pool_3x3_s2(x: Array) -> Array:
  """``nn.MaxPool2d(3, 2, padding=1)`` (padding is -inf, as in torch)."""
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


def tap(
    name: str,
    x: Array,
    features: dict[str, Array],
    feature_offsets: Mapping[str, Array] | None,
) -> Array:
  """Records ``x`` as feature ``name`` and adds an optional offset to it.

  The offset is zero in practice; differentiating the logits with respect to
  it gives d logits / d feature, which is how Grad-CAM reaches any tapped
  layer without splitting the model in two.

  Args:
    name: feature name (e.g. ``'layer4'``).
    x: the activation, ``[batch, height, width, channels]``.
    features: dict the activation is stored into (after the offset).
    feature_offsets: optional ``{name: array like x}``.

  Returns:
    ``x`` plus the offset if one is given for ``name``.
  """
  if feature_offsets is not None and name in feature_offsets:
    x = x + feature_offsets[name]
  features[name] = x
  return x



def feature_taps(
    feature_offsets: Mapping[str, Array] | None,
) -> tuple[dict[str, Array], Any]:
  """``(features, tap)``: an empty feature dict and ``tap`` bound to it."""
  features: dict[str, Array] = {}
  return features, functools.partial(
      tap, features=features, feature_offsets=feature_offsets
  )


def classifier_head(
    x: Array,
    *,
    tap_fn: Any,
    num_classes: int,
    dropout: float,
    train: bool,
    name: str,
) -> Array:
  """Global average pool (tapped as ``'pooled'``) -> dropout -> ``Dense``.

  Called inside a backbone's ``nn.compact`` ``__call__``: the ``Dense`` is
  that backbone's submodule ``name`` (torchvision's ``fc`` / ``classifier``).
  """
  x = tap_fn('pooled', jnp.mean(x, axis=(1, 2)))
  x = nn.Dropout(dropout, deterministic=not train)(x)
  return nn.Dense(num_classes, name=name)(x)


def standardize_per_image(x: Array, eps: float = 1e-3) -> Array:
  """``(x - mean) / (std + eps)`` over each image's ``H, W, C``.

  Removes each crop's own brightness and contrast (the mass methods' ROIs
  vary widely in both); ``eps`` keeps a flat crop finite.
  """
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  std = jnp.std(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) / (std + eps)
