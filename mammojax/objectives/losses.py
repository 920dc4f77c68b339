"""Masked, class-weighted classification losses shared by every method.

Two forms of each loss:

* ``*_terms`` functions return per-item losses and weights, zero where an
  item is not valid. A method's loss definition sums them: the trainer
  (``mammojax.training.steps``) divides each sum by its normaliser summed
  over *all* devices, so N devices reproduce one device exactly.
* the scalar functions (``weighted_cross_entropy``,
  ``binary_cross_entropy_with_logits``) are those sums over their
  normalisers (torch ``reduction='mean'`` semantics).

Conventions shared by every loss here:

* Items are excluded by a boolean ``mask`` (False = padding) and, for
  single-label losses, by ``label == -1`` (unknown label).
* Means are taken over valid items only. When no item is valid the loss is 0
  and its gradient is 0 (never NaN), so padded-only batches are harmless.
* Excluded items never reach a ``log`` or a division: their logits are
  replaced by zeros with ``jnp.where`` so that NaN / inf in padded rows cannot
  leak into the gradient.
"""

from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np


def safe_divide(num: jax.Array, den: jax.Array) -> jax.Array:
  """`num / den` where `den > 0`, else 0; gradient-safe (no 0/0 in the VJP)."""
  positive = den > 0
  return jnp.where(positive, num / jnp.where(positive, den, 1.0), 0.0)


def _valid_items(
    labels: jax.Array, mask: jax.Array | None
) -> jax.Array:
  """Boolean `[...]` of items that take part in a single-label loss."""
  valid = labels >= 0
  if mask is not None:
    valid = jnp.logical_and(valid, jnp.broadcast_to(mask, labels.shape))
  return valid


def item_weights(
    labels: jax.Array,
    valid: jax.Array,
    class_weights: jax.Array | None = None,
) -> jax.Array:
  """Each item's class weight (1 without `class_weights`), 0 where invalid.

  The normaliser of a class-weighted cross-entropy sum is the sum of these.
  """
  if class_weights is None:
    return valid.astype(jnp.float32)
  safe_labels = jnp.where(valid, labels, 0)
  class_weights = jnp.asarray(class_weights, jnp.float32)
  return jnp.where(valid, class_weights[safe_labels], 0.0)


def cross_entropy_terms(
    logits: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    class_weights: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
  """Per-item weighted softmax cross-entropy and its weights.

  ``sum(ce) / sum(w)`` over a batch equals torch's
  ``CrossEntropyLoss(weight=class_weights)``.

  Args:
    logits: `[..., C]` unnormalised scores.
    labels: int `[...]` class indices (any value where not `valid`).
    valid: bool `[...]`, the items that count.
    class_weights: optional `[C]` non-negative per-class weights.

  Returns:
    ``(w * nll, w)``, each `[...]` and 0 where not `valid`, with ``w`` the
    item's class weight (1 without `class_weights`).
  """
  safe_labels = jnp.where(valid, labels, 0)
  # Padding rows may hold garbage (NaN / inf); keep them out of log_softmax.
  logits = jnp.where(valid[..., None], logits.astype(jnp.float32), 0.0)
  log_probs = jax.nn.log_softmax(logits, axis=-1)
  nll = -jnp.take_along_axis(log_probs, safe_labels[..., None], axis=-1)[
      ..., 0
  ]
  w = item_weights(labels, valid, class_weights)
  return w * nll, w


def binary_cross_entropy_terms(
    logits: jax.Array,
    labels: jax.Array,
    valid: jax.Array,
    pos_weight: jax.Array | None = None,
) -> jax.Array:
  """Per-element sigmoid cross-entropy, 0 where not `valid`.

  ``l = -[p y log s(x) + (1 - y) log(1 - s(x))]`` (torch
  ``BCEWithLogitsLoss(pos_weight=p, reduction='none')``).

  Args:
    logits: `[...]` scores.
    labels: `[...]` targets in `[0, 1]` (soft targets allowed).
    valid: bool, broadcastable to `logits`, the elements that count.
    pos_weight: optional weight of the positive term (broadcastable).

  Returns:
    `[...]` per-element losses.
  """
  valid = jnp.broadcast_to(valid, logits.shape)
  logits = jnp.where(valid, logits.astype(jnp.float32), 0.0)
  labels = jnp.where(valid, labels.astype(jnp.float32), 0.0)
  pos_term = labels * jax.nn.log_sigmoid(logits)
  if pos_weight is not None:
    pos_term = jnp.asarray(pos_weight, jnp.float32) * pos_term
  per_element = -(pos_term + (1.0 - labels) * jax.nn.log_sigmoid(-logits))
  return jnp.where(valid, per_element, 0.0)


def weighted_cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    *,
    class_weights: jax.Array | None = None,
    mask: jax.Array | None = None,
    label_smoothing: float = 0.0,
) -> jax.Array:
  """Softmax cross-entropy with torch ``CrossEntropyLoss`` weighting.

  With per-class weights ``w`` and per-item losses ``l_n = -log p_n[y_n]``
  the result is ``sum_n w[y_n] l_n / sum_n w[y_n]`` over valid items, exactly
  like ``torch.nn.CrossEntropyLoss(weight=w, reduction='mean')``. Label
  smoothing ``eps`` follows torch too::

    (1 - eps) * nll + eps / C * sum_n sum_c w[c] (-log p_n[c]) / sum_n w[y_n]

  (without weights ``w = 1`` and the denominators are the number of valid
  items).

  Args:
    logits: `[..., C]` unnormalised scores.
    labels: int `[...]` class indices; `-1` marks an unknown label (excluded).
    class_weights: optional `[C]` non-negative per-class weights.
    mask: optional bool `[...]`, False for padding items (excluded).
    label_smoothing: torch-style smoothing in `[0, 1]`.

  Returns:
    Scalar loss; 0 (with zero gradient) when no item is valid.
  """
  num_classes = logits.shape[-1]
  valid = _valid_items(labels, mask)
  terms, item_weights = cross_entropy_terms(
      logits, labels, valid, class_weights
  )
  den = jnp.sum(item_weights)
  loss = safe_divide(jnp.sum(terms), den)
  if label_smoothing:
    logits = jnp.where(valid[..., None], logits.astype(jnp.float32), 0.0)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    if class_weights is not None:
      log_probs = log_probs * jnp.asarray(class_weights, jnp.float32)
    smooth = jnp.where(valid, -jnp.sum(log_probs, axis=-1), 0.0)
    smooth_loss = safe_divide(jnp.sum(smooth), den)
    loss = (1.0 - label_smoothing) * loss + (
        label_smoothing / num_classes
    ) * smooth_loss
  return loss


def class_weights_from_counts(
    counts: np.ndarray,
    *,
    scheme: Literal["inverse", "effective"] = "inverse",
    beta: float = 0.999,
) -> np.ndarray:
  """Per-class loss weights from training-set class counts (host side).

  * ``'inverse'``: ``w_c = N / (K n_c)`` (scikit-learn ``'balanced'``), with
    ``K`` the number of classes that occur; then ``sum_c w_c n_c = N``.
  * ``'effective'``: class-balanced loss of Cui et al. (CVPR 2019),
    ``w_c ∝ (1 - beta) / (1 - beta ** n_c)``, scaled so the weights of the
    occurring classes sum to ``K``.

  Classes with a zero count get weight 0 (they never occur as a label, so
  their weight only matters for label smoothing).

  Args:
    counts: `[C]` non-negative class counts.
    scheme: ``'inverse'`` or ``'effective'``.
    beta: effective-number hyper-parameter in `[0, 1)` (``'effective'`` only).

  Returns:
    float32 `[C]` weights.
  """
  counts = np.asarray(counts, np.float64)
  if counts.ndim != 1 or np.any(counts < 0):
    raise ValueError(
        f"counts must be a 1-D array of non-negative numbers, got {counts}."
    )
  present = counts > 0
  num_present = int(present.sum())
  if num_present == 0:
    raise ValueError("counts are all zero; no class occurs.")
  weights = np.zeros_like(counts)
  if scheme == "inverse":
    weights[present] = counts.sum() / (num_present * counts[present])
  elif scheme == "effective":
    if not 0.0 <= beta < 1.0:
      raise ValueError(f"beta must be in [0, 1), got {beta}.")
    effective_num = (1.0 - np.power(beta, counts[present])) / (1.0 - beta)
    raw = 1.0 / effective_num
    weights[present] = raw * num_present / raw.sum()
  else:
    raise ValueError(
        f"scheme must be 'inverse' or 'effective', got {scheme!r}."
    )
  return weights.astype(np.float32)


def class_weights_by_task(
    scheme: str, counts: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
  """Per-task class weights for ``config.class_weighting``.

  Args:
    scheme: ``none`` (no weights) or ``inverse`` / ``effective`` (see
      `class_weights_from_counts`).
    counts: task -> its training-set class counts.

  Returns:
    task -> float32 `[C]` weights; empty for ``none``.
  """
  if scheme == "none":
    return {}
  if scheme not in ("inverse", "effective"):
    raise ValueError(
        f"config.class_weighting={scheme!r}: expected none, inverse or "
        "effective"
    )
  return {
      task: class_weights_from_counts(c, scheme=scheme)
      for task, c in counts.items()
  }


def binary_cross_entropy_with_logits(
    logits: jax.Array,
    labels: jax.Array,
    *,
    mask: jax.Array | None = None,
    pos_weight: jax.Array | None = None,
) -> jax.Array:
  """Sigmoid cross-entropy for multi-label heads (torch ``BCEWithLogitsLoss``).

  Per element ``l = -[p y log s(x) + (1 - y) log(1 - s(x))]`` with
  ``p = pos_weight`` (per label, default 1), averaged over valid elements.

  Args:
    logits: `[..., K]` scores.
    labels: `[..., K]` targets in `[0, 1]` (soft targets allowed).
    mask: optional bool, broadcastable to `[..., K]`; False elements (padding
      items or unknown labels) are excluded.
    pos_weight: optional `[K]` weight of the positive term.

  Returns:
    Scalar mean over valid elements; 0 when none is valid.
  """
  if mask is None:
    valid = jnp.ones(logits.shape, bool)
  else:
    valid = jnp.broadcast_to(mask, logits.shape)
  per_element = binary_cross_entropy_terms(logits, labels, valid, pos_weight)
  return safe_divide(
      jnp.sum(per_element), jnp.sum(valid.astype(jnp.float32))
  )
