"""Knowledge-distillation loss (Hinton, Vinyals & Dean, 2015).

MT-GCN (paper §2.3) trains task-specific teachers, then the multi-task
student on the teachers' soft targets. Per task head::

  loss = alpha * T^2 * CE(softmax(teacher / T), log_softmax(student / T))
         + (1 - alpha) * CE_hard(student, labels)

The ``T^2`` factor keeps the soft term's gradient magnitude independent of
the temperature (the soft gradients scale as ``1 / T^2``), so `alpha` keeps
its meaning when T changes.

``soft_target_terms`` is the per-item form that a method's loss definition
sums (MT-GCN mixes it per head, ``mammojax.methods.mtgcn``);
``distillation_loss`` is the scalar form over one batch.
"""

import jax
import jax.numpy as jnp

from mammojax.objectives import losses


def soft_target_terms(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    temperature: float,
) -> jax.Array:
  """Per item ``-sum_c q_c log p_c`` at temperature T (no ``T^2``).

  ``q = softmax(teacher / T)`` is a constant (no gradient reaches the
  teacher) and ``p = softmax(student / T)``.

  Args:
    student_logits: `[..., C]`.
    teacher_logits: `[..., C]`.
    temperature: T > 0.

  Returns:
    `[...]` per-item soft-target cross-entropies.
  """
  t = temperature
  teacher = jax.lax.stop_gradient(teacher_logits.astype(jnp.float32))
  targets = jax.nn.softmax(teacher / t, axis=-1)
  log_probs = jax.nn.log_softmax(student_logits.astype(jnp.float32) / t, -1)
  return -jnp.sum(targets * log_probs, axis=-1)


def soft_cross_entropy(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    *,
    temperature: float = 1.0,
    mask: jax.Array | None = None,
) -> jax.Array:
  """Mean of `soft_target_terms` over the items where ``mask`` is True.

  Returns a scalar; 0 when no item is valid (``mask``: optional bool
  `[...]`, False for padding items).
  """
  if mask is None:
    valid = jnp.ones(student_logits.shape[:-1], bool)
  else:
    valid = jnp.broadcast_to(mask, student_logits.shape[:-1])
  keep = valid[..., None]
  student = jnp.where(keep, student_logits, 0.0)
  teacher = jnp.where(keep, teacher_logits, 0.0)
  per_item = jnp.where(
      valid, soft_target_terms(student, teacher, temperature), 0.0
  )
  return losses.safe_divide(
      jnp.sum(per_item), jnp.sum(valid.astype(jnp.float32))
  )


def distillation_loss(
    student_logits: jax.Array,
    teacher_logits: jax.Array,
    labels: jax.Array,
    *,
    temperature: float,
    alpha: float,
    mask: jax.Array | None = None,
    class_weights: jax.Array | None = None,
) -> jax.Array:
  """Hinton distillation: soft-target CE mixed with the hard-label CE.

  The soft term averages over items with ``mask`` True (an unknown label,
  ``-1``, still has a teacher target); the hard term also drops ``label ==
  -1`` and uses `class_weights` as in `losses.weighted_cross_entropy`.

  Args:
    student_logits: `[..., C]` student scores.
    teacher_logits: `[..., C]` teacher scores (treated as constants).
    labels: int `[...]`, `-1` = unknown.
    temperature: softmax temperature T > 0 of the soft term.
    alpha: weight in `[0, 1]` of the soft term.
    mask: optional bool `[...]`, False for padding items.
    class_weights: optional `[C]` weights of the hard term.

  Returns:
    Scalar loss.
  """
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}.")
  if not 0.0 <= alpha <= 1.0:
    raise ValueError(f"alpha must be in [0, 1], got {alpha}.")
  soft = soft_cross_entropy(
      student_logits, teacher_logits, temperature=temperature, mask=mask
  )
  hard = losses.weighted_cross_entropy(
      student_logits, labels, class_weights=class_weights, mask=mask
  )
  return alpha * temperature**2 * soft + (1.0 - alpha) * hard
