"""An image classifier: one ``MODELS`` backbone on one-channel images.

The image model of the luminal paper (ResNet-18 on full mammograms) and of
MT-GCN's CNN baselines (ResNet / DenseNet / MobileNetV2 / ShuffleNetV2 on
cluster crops or calcification patches). Inputs are normalised with one
grey mean / std (ImageNet's grey values by default); the backbone is the
submodule ``backbone`` so that torchvision weights convert into
``params['backbone']`` (``convert.load_pretrained``).
"""

from typing import Any, Mapping, Optional

import flax.linen as nn
import jax.numpy as jnp

from mammojax.models import cnn

# Where each backbone keeps its classification head (inside ``backbone``).
HEADS = ("fc", "classifier", "classifier_1")


class ImageClassifier(nn.Module):
  """A ``mammojax.models.cnn`` backbone on one-channel images.

  Attributes:
    backbone: key of ``cnn.MODELS``.
    num_outputs: logits per image.
    dropout: dropout before the head.
    backbone_kwargs: further constructor arguments of the backbone as
      ``(name, value)`` pairs (e.g. ``stage_sizes`` for tiny test ResNets).
    pixel_mean: intensity normalisation of the [0, 1] inputs.
    pixel_std: see ``pixel_mean``.
  """

  backbone: str = "resnet18"
  num_outputs: int = 2
  dropout: float = 0.3
  backbone_kwargs: tuple[tuple[str, Any], ...] = ()
  pixel_mean: float = 0.449
  pixel_std: float = 0.226

  @nn.compact
  def __call__(
      self,
      batch: Any,
      *,
      train: bool,
      return_features: bool = False,
      feature_offsets: Optional[Mapping[str, Any]] = None,
  ):
    """Logits ``[B, num_outputs]`` (and features) of a batch or images.

    Args:
      batch: a batch dict with ``image``, or images ``[B, H, W]`` /
        ``[B, H, W, 1]``, uint8 (0..255) or float in [0, 1].
      train: batch statistics and dropout on.
      return_features: also return the backbone's tapped features.
      feature_offsets: see ``mammojax.models.cnn`` (Grad-CAM).
    """
    images = batch["image"] if isinstance(batch, Mapping) else batch
    x = jnp.asarray(images)
    if x.dtype == jnp.uint8:
      x = x.astype(jnp.float32) / 255.0
    x = x.astype(jnp.float32)
    if x.ndim == 3:
      x = x[..., None]
    x = (x - self.pixel_mean) / self.pixel_std
    net = cnn.create_model(
        self.backbone, num_classes=self.num_outputs, dropout=self.dropout,
        name="backbone", **dict(self.backbone_kwargs),
    )
    return net(
        x, train=train, return_features=return_features,
        feature_offsets=feature_offsets,
    )


def head_kernel(params: Mapping[str, Any]) -> Any:
  """The classification head's kernel in ``params`` of an ImageClassifier."""
  backbone = params["backbone"]
  head = next(h for h in HEADS if h in backbone)
  return backbone[head]["kernel"]
