"""DiagNet's depth-wise separable convolution network (paper 4.2, Fig. 1b).

An Xception-like stack (the paper cites Chollet's Xception [5] for the
topology) on one-channel mass ROIs:

* stem: one 3 x 3 convolution (``stem_features``) + batch norm + ReLU at the
  input size (the paper gives no stem; this lifts the single grey channel);
* entry flow, the "DC blocks": for each width of ``entry_features`` (paper
  128, 256, 728 at input sizes 224, 112, 56), ReLU - SepConv - BN - ReLU -
  SepConv - BN - 3 x 3 max-pool stride 2, plus a strided 1 x 1 convolution
  + BN residual skip: the size halves each block (224 -> 112 -> 56 -> 28);
* middle flow, the "RC blocks": ``num_middle_blocks`` (paper 7) blocks of
  three ReLU - SepConv - BN at the last entry width (728 x 28 x 28) with
  identity skips;
* global average pooling, then ``num_fc`` (3) fully connected layers of
  ``fc_features`` (1024) with dropout ``dropout`` (0.5), and the softmax
  layer (one logit per class; the softmax is in the loss).

``SepConv`` is a 3 x 3 depth-wise convolution followed by a 1 x 1
point-wise one (no bias, batch norm after). The representation ``h`` of the
signed-graph regulariser ("directly behind the softmax layer") is the last
fully connected layer's output *before* its ReLU, so its angular distances
span [0, 1] (after a ReLU every cosine is >= 0 and no pair could reach the
margin m = 1); the classifier reads ``dropout(relu(h))``. Weight decay
(1e-4) is the optimiser's (``config.weight_decay``).

``__call__(images, train=)`` returns ``(logits [B, C], h [B, fc_features])``.
"""

from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax.numpy as jnp

from mammojax.models.cnn import layers

Array = Any


def depthwise_conv3x3(x: Array, kernel: Array) -> Array:
  """3 x 3 depth-wise convolution, stride 1, zero padding 1.

  The sum of nine shifted, per-channel scaled copies of ``x``: the same
  result as ``lax.conv_general_dilated`` with ``feature_group_count = C``,
  which XLA's CPU backend runs (and differentiates) several times slower
  (3.6x for one 16-channel layer, batch 32 at 40 x 40, forward + backward;
  docs/performance.md).

  Args:
    x: ``[B, H, W, C]``.
    kernel: ``[3, 3, 1, C]`` (flax's grouped-conv kernel layout).
  """
  h, w = x.shape[1], x.shape[2]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  out = 0.0
  for i in range(3):
    for j in range(3):
      out = out + xp[:, i:i + h, j:j + w, :] * kernel[i, j, 0]
  return out


class SeparableConv(nn.Module):
  """3 x 3 depth-wise then 1 x 1 point-wise convolution (no bias)."""

  features: int

  @nn.compact
  def __call__(self, x: Array) -> Array:
    c = x.shape[-1]
    kernel = self.param(
        "depthwise",
        nn.initializers.variance_scaling(2.0, "fan_out", "normal",
                                         in_axis=-2, out_axis=-1),
        (3, 3, 1, c), jnp.float32,
    )
    x = depthwise_conv3x3(x, kernel.astype(x.dtype))
    return layers.conv(self.features, 1, name="pointwise")(x)


class EntryBlock(nn.Module):
  """A down-sampling "DC block": two SepConvs, max-pool, strided skip."""

  features: int
  first: bool = False

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    skip = layers.conv(self.features, 1, stride=2, name="skip")(x)
    skip = layers.batch_norm(train=train, name="skip_bn")(skip)
    y = x if self.first else nn.relu(x)
    y = SeparableConv(self.features, name="sep1")(y)
    y = layers.batch_norm(train=train, name="bn1")(y)
    y = SeparableConv(self.features, name="sep2")(nn.relu(y))
    y = layers.batch_norm(train=train, name="bn2")(y)
    y = layers.max_pool_3x3_s2(y)
    return y + skip


class MiddleBlock(nn.Module):
  """A residual "RC block": three ReLU - SepConv - BN, identity skip."""

  @nn.compact
  def __call__(self, x: Array, *, train: bool) -> Array:
    y = x
    for i in range(3):
      y = SeparableConv(x.shape[-1], name=f"sep{i + 1}")(nn.relu(y))
      y = layers.batch_norm(train=train, name=f"bn{i + 1}")(y)
    return x + y


class DiagNet(nn.Module):
  """The separable-convolution classifier with its embedding ``h``.

  Attributes:
    num_classes: softmax outputs (2: benign, malignant).
    stem_features: width of the stem convolution.
    entry_features: widths of the down-sampling entry blocks.
    num_middle_blocks: residual middle blocks at the last entry width.
    fc_features: width of each fully connected layer.
    num_fc: fully connected layers (the last one's pre-activation is h).
    dropout: dropout rate after each fully connected layer.
    pixel_mean: intensity normalisation of the [0, 1] inputs.
    pixel_std: see ``pixel_mean``.
    per_image_norm: standardise each ROI by its own mean and standard
      deviation instead (``pixel_mean`` / ``pixel_std`` unused): a mass in a
      dense (bright) breast and one in a fatty breast reach the network at
      the same contrast.
  """

  num_classes: int = 2
  stem_features: int = 32
  entry_features: Sequence[int] = (128, 256, 728)
  num_middle_blocks: int = 7
  fc_features: int = 1024
  num_fc: int = 3
  dropout: float = 0.5
  pixel_mean: float = 0.5
  pixel_std: float = 0.25
  per_image_norm: bool = False

  @nn.compact
  def __call__(self, images: Array, *, train: bool) -> tuple[Array, Array]:
    """``(logits [B, C], h [B, fc_features])``.

    Args:
      images: ``[B, H, W]`` (or ``[B, H, W, 1]``) uint8 or float in [0, 1],
        or a batch dict holding them under ``image``.
      train: batch statistics and dropout on.
    """
    if isinstance(images, Mapping):
      images = images["image"]
    x = jnp.asarray(images)
    if x.dtype == jnp.uint8:
      x = x.astype(jnp.float32) / 255.0
    x = x.astype(jnp.float32)
    if x.ndim == 3:
      x = x[..., None]
    if self.per_image_norm:
      x = layers.standardize_per_image(x)
    else:
      x = (x - self.pixel_mean) / self.pixel_std
    x = layers.conv(self.stem_features, 3, padding=1, name="stem")(x)
    x = nn.relu(layers.batch_norm(train=train, name="stem_bn")(x))
    for i, features in enumerate(self.entry_features):
      x = EntryBlock(int(features), first=False, name=f"entry{i + 1}")(
          x, train=train
      )
    for i in range(self.num_middle_blocks):
      x = MiddleBlock(name=f"middle{i + 1}")(x, train=train)
    x = jnp.mean(nn.relu(x), axis=(1, 2))
    h = x
    for i in range(self.num_fc):
      h = nn.Dense(self.fc_features, name=f"fc{i + 1}")(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(h))
    logits = nn.Dense(self.num_classes, name="softmax")(x)
    return logits, h
