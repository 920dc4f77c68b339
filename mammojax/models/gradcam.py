"""Grad-CAM (Selvaraju et al.) for any backbone with a tapped feature map.

``alpha_k^c = mean_ij d y^c / d A^k_ij`` with ``y^c`` the class score before
softmax; ``L^c = ReLU(sum_k alpha_k^c A^k)`` at feature resolution, upsampled
bilinearly (``jax.image.resize``, half-pixel centres like cv2) to the image and
min-max normalised per image (``(L - min) / (max - min + 1e-7)``, as
pytorch-grad-cam's ``scale_cam_image``; an all-zero map stays zero).

Two entry points:

* ``gradcam_from_features(head_fn, features, targets)`` - the split of
  Selvaraju et al. (ICCV 2017), as pytorch-grad-cam computes it:
  ``features = A`` and ``head_fn(A) -> logits``.
* ``gradcam(model, variables, images, layer=...)`` - for the models in
  ``mammojax.models.cnn``: ``d y / d A`` is the gradient w.r.t. a zero offset
  that the model adds to feature ``layer`` (``feature_offsets``), so no model
  needs to be split by hand.

Samples are independent in eval mode, so the gradient of the *sum* of the
selected scores gives per-sample gradients (unlike flax_gradcam's
``preds.max()`` over the whole batch). Both functions are jit-able with the
model and layer static.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = Any


class GradCam(NamedTuple):
  """Grad-CAM outputs.

  Attributes:
    cam: ``[batch, H, W]`` normalised maps in [0, 1] at ``image_size``.
    cam_lowres: ``[batch, h, w]`` ReLU'd maps at feature resolution,
      unnormalised.
    logits: ``[batch, num_classes]``.
    targets: ``[batch]`` int classes explained.
  """

  cam: Array
  cam_lowres: Array
  logits: Array
  targets: Array


def normalize_per_image(cam: Array, eps: float = 1e-7) -> Array:
  """Min-max normalises each ``[h, w]`` map of ``[batch, h, w]``."""
  lo = cam.min(axis=(1, 2), keepdims=True)
  hi = cam.max(axis=(1, 2), keepdims=True)
  return (cam - lo) / (hi - lo + eps)


def _select(logits: Array, targets: Array | int | None) -> Array:
  if targets is None:
    return jnp.argmax(jax.lax.stop_gradient(logits), axis=-1)
  return jnp.broadcast_to(jnp.asarray(targets, jnp.int32), logits.shape[:1])


def cam_from_gradients(
    features: Array, grads: Array, image_size: tuple[int, int] | None
) -> tuple[Array, Array]:
  """``ReLU(sum_k mean_ij(grads) A^k)``, resized and normalised.

  Args:
    features: ``[batch, h, w, k]``.
    grads: d score / d features, same shape.
    image_size: ``(H, W)`` to upsample to, or None to stay at ``(h, w)``.

  Returns:
    ``(normalised cam [batch, H, W], raw cam [batch, h, w])``.
  """
  alpha = grads.mean(axis=(1, 2))
  raw = jax.nn.relu(jnp.einsum('bhwk,bk->bhw', features, alpha))
  cam = raw
  if image_size is not None and tuple(image_size) != raw.shape[1:]:
    cam = jax.image.resize(
        raw, (raw.shape[0], *image_size), method='bilinear'
    )
  return normalize_per_image(cam), raw


def gradcam_from_features(
    head_fn: Callable[[Array], Array],
    features: Array,
    targets: Array | int | None = None,
    *,
    image_size: tuple[int, int] | None = None,
) -> GradCam:
  """Grad-CAM for a model split as ``logits = head_fn(features)``.

  Args:
    head_fn: maps ``[batch, h, w, k]`` features to ``[batch, classes]`` logits
      (scores before softmax).
    features: the conv feature map ``A``.
    targets: class per image (``[batch]`` or a scalar); default argmax logit.
    image_size: ``(H, W)`` of the input image for upsampling.

  Returns:
    A ``GradCam``.
  """

  def score(a):
    logits = head_fn(a)
    t = _select(logits, targets)
    picked = jnp.take_along_axis(logits, t[:, None], axis=1)
    return picked.sum(), (logits, t)

  grads, (logits, t) = jax.grad(score, has_aux=True)(features)
  cam, raw = cam_from_gradients(features, grads, image_size)
  return GradCam(cam, raw, logits, t)


def gradcam(
    model: Any,
    variables: Any,
    images: Array,
    *,
    layer: str,
    targets: Array | int | None = None,
    upsample: bool = True,
) -> GradCam:
  """Grad-CAM on feature ``layer`` of a ``mammojax.models.cnn`` model.

  Args:
    model: a module whose ``__call__(x, *, train, return_features,
      feature_offsets)`` follows ``mammojax.models.cnn`` (see
      ``cnn.GRADCAM_LAYERS`` for each model's last conv map).
    variables: ``{'params', 'batch_stats'}``; the model runs in eval mode.
    images: ``[batch, H, W, C]``.
    layer: feature name, e.g. ``'layer4'`` for ResNets.
    targets: class per image; default argmax logit.
    upsample: resize maps to ``(H, W)``.

  Returns:
    A ``GradCam``.
  """

  def run(offsets):
    return model.apply(
        variables, images, train=False, return_features=True,
        feature_offsets=offsets,
    )

  _, shapes = jax.eval_shape(run, None)
  if layer not in shapes:
    raise KeyError(f'no feature {layer!r}; model taps {sorted(shapes)}')
  zero = jnp.zeros(shapes[layer].shape, shapes[layer].dtype)

  def score(offset):
    logits, feats = run({layer: offset})
    t = _select(logits, targets)
    picked = jnp.take_along_axis(logits, t[:, None], axis=1)
    return picked.sum(), (logits, t, feats[layer])

  grads, (logits, t, features) = jax.grad(score, has_aux=True)(zero)
  size = images.shape[1:3] if upsample else None
  cam, raw = cam_from_gradients(features, grads, size)
  return GradCam(cam, raw, logits, t)


def gradcam_batches(
    model: Any,
    variables: Any,
    images: Any,
    *,
    layer: str,
    batch_size: int,
    targets: Array | int | None = None,
) -> tuple[Any, Any]:
  """``gradcam`` over many images in fixed-size batches (one compile).

  The last batch is zero-padded to ``batch_size`` so every call has the same
  shape; padded rows are dropped (samples are independent in eval mode).

  Args:
    model, variables, layer, targets: as ``gradcam``.
    images: ``[n, H, W, C]`` host array (numpy), n >= 1.
    batch_size: images per call.

  Returns:
    ``(logits [n, classes], cams [n, H, W])`` as numpy arrays.
  """
  explain = jax.jit(lambda v, x: gradcam(model, v, x, layer=layer,
                                         targets=targets))
  images = np.asarray(images, np.float32)
  logits, cams = [], []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    padded = np.zeros((batch_size,) + chunk.shape[1:], np.float32)
    padded[: len(chunk)] = chunk
    out = jax.device_get(explain(variables, jnp.asarray(padded)))
    logits.append(np.asarray(out.logits)[: len(chunk)])
    cams.append(np.asarray(out.cam)[: len(chunk)])
  return np.concatenate(logits), np.concatenate(cams)
