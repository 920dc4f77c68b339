"""The loss definition of an image classifier, for the shared steps.

One ``Task`` (``mammojax.training.steps``) serves every image method (the
luminal paper's ResNet-18, MT-GCN's CNN baselines):

* ``multi_label=False``: one task, a C-way softmax head with class-weighted
  cross-entropy (``losses.cross_entropy_terms``);
* ``multi_label=True``: one sigmoid logit per task with binary cross-entropy
  (``losses.binary_cross_entropy_terms``); each output is evaluated as a
  binary task with ``probs = [1 - p, p]``, so the shared metrics apply.

Items with an unknown label (-1) or padding (``mask`` False) count in no
loss. Images (uint8 0..255 or float in [0, 1]) are scaled to [0, 1] and, when
training, passed through the method's ``augment(images, key)`` on the step's
key (so resumed runs replay it).
"""

from typing import Any, Callable, Mapping, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mammojax.models.cnn import classifier
from mammojax.objectives import losses

AugmentFn = Callable[[jax.Array, jax.Array], jax.Array]


class ImageClassificationTask:
  """Softmax or multi-label sigmoid heads of an ``ImageClassifier``.

  Attributes:
    model: the linen model (``models.cnn.classifier.ImageClassifier``).
    task_names: the evaluated tasks.
    label_keys: task -> the batch key of its labels.
    multi_label: one sigmoid output per task (else one softmax task).
    class_weights: optional ``[C]`` weights of the softmax task.
    augment: optional ``(images [B, H, W], key) -> images`` when training.
  """

  def __init__(
      self,
      model: nn.Module,
      *,
      tasks: Sequence[str],
      label_keys: Optional[Mapping[str, str]] = None,
      multi_label: bool = False,
      class_weights: Optional[np.ndarray] = None,
      augment: Optional[AugmentFn] = None,
  ):
    self.model = model
    self.task_names = tuple(tasks)
    if not multi_label and len(self.task_names) != 1:
      raise ValueError(
          f"config.tasks={self.task_names!r}: a softmax head has one task"
      )
    self.label_keys = dict(label_keys or {t: t for t in self.task_names})
    self.multi_label = bool(multi_label)
    self.class_weights = (
        None if class_weights is None
        else jnp.asarray(class_weights, jnp.float32)
    )
    self.augment = augment

  def _labels(self, batch, task):
    labels = batch[self.label_keys[task]]
    return labels, jnp.logical_and(batch["mask"], labels >= 0)

  def normalisers(self, batch) -> jax.Array:
    """Summed item weights of the real, labelled items, per task ``[T]``."""
    out = []
    for task in self.task_names:
      labels, valid = self._labels(batch, task)
      weights = None if self.multi_label else self.class_weights
      out.append(jnp.sum(losses.item_weights(labels, valid, weights)))
    return jnp.stack(out)

  def images(self, batch, rng, *, train: bool) -> jax.Array:
    """Float ``[B, H, W]`` in [0, 1], augmented when training."""
    x = batch["image"]
    x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else (
        x.astype(jnp.float32)
    )
    if not train or self.augment is None:
      return x
    return self.augment(x, rng)

  def apply(self, params, model_state, batch, rng, *, train: bool):
    """Runs the model; returns ``(logits, new_model_state)``."""
    variables = {"params": params, **model_state}
    if not train:
      images = self.images(batch, None, train=False)
      return self.model.apply(variables, images, train=False), model_state
    aug_rng, drop_rng = jax.random.split(rng)
    images = self.images(batch, aug_rng, train=True)
    logits, new_state = self.model.apply(
        variables, images, train=True, rngs={"dropout": drop_rng},
        mutable=list(model_state.keys()),
    )
    return logits, dict(new_state)

  def loss_sums(self, params, model_state, batch, rng, *, train: bool):
    """Per-task loss sums ``[T]`` and ``(new_model_state, logits)``."""
    logits, new_state = self.apply(
        params, model_state, batch, rng, train=train
    )
    logits = logits.astype(jnp.float32)
    sums = []
    for k, task in enumerate(self.task_names):
      labels, valid = self._labels(batch, task)
      if self.multi_label:
        per_item = losses.binary_cross_entropy_terms(
            logits[:, k], labels, valid
        )
      else:
        per_item, _ = losses.cross_entropy_terms(
            logits, labels, valid, self.class_weights
        )
      sums.append(jnp.sum(per_item))
    return jnp.stack(sums), (new_state, logits)

  def gradnorm_layer(self, params) -> Any:
    """The head's kernel (the last shared layer is the pooled feature)."""
    return classifier.head_kernel(params)

  def eval_outputs(self, outputs, batch) -> dict[str, jax.Array]:
    """``{task}_probs [B, C]``, ``_labels``, ``_mask`` and the ``index``."""
    outputs = outputs.astype(jnp.float32)
    out = {"index": batch["index"]}
    for k, task in enumerate(self.task_names):
      if self.multi_label:
        p = jax.nn.sigmoid(outputs[:, k])
        probs = jnp.stack([1.0 - p, p], axis=-1)
      else:
        probs = jax.nn.softmax(outputs, axis=-1)
      out[f"{task}_probs"] = probs
      out[f"{task}_labels"] = batch[self.label_keys[task]]
      out[f"{task}_mask"] = batch["mask"]
    return out
