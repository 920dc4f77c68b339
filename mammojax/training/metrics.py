"""Host-side classification metrics (numpy): AUCs, F1, specificity, confusion.

MT-GCN reports multi-class AUC both one-vs-one (Hand & Till 2001, the paper's
citation) and one-vs-rest (the authors' code), per-class AUC, macro
specificity and confusion matrices. Everything here is plain numpy
on gathered predictions; AUCs use mid-ranks (ties count one half), so they
equal scikit-learn's ``roc_auc_score`` (``multi_class="ovo"`` / ``"ovr"``)
to rounding.

Classes absent from a split (no sample of that class in ``y_true``):

* per-class (one-vs-rest) AUC of such a class is ``None``; so is the AUC of a
  class that has no negatives (it is the only class present);
* ``ovr_auc`` averages the per-class AUCs of the classes that are present
  (scikit-learn would return NaN here);
* ``hand_till_auc`` averages over the pairs of present classes (what
  scikit-learn's ``multi_class='ovo'`` does when given ``labels=``);
* with fewer than 2 present classes both multi-class AUCs are ``None``.

``macro_f1`` / ``macro_specificity`` average over the classes that occur in
``y_true`` or in the predictions (scikit-learn's default label set); classes
that are neither true nor predicted have an undefined F1 and are left out.
"""

import itertools
from typing import Any, Sequence

import numpy as np


def _as_labels(y_true: np.ndarray) -> np.ndarray:
  """1-D integer label array."""
  y = np.asarray(y_true)
  if y.ndim != 1:
    raise ValueError(f"y_true must be 1-D, got shape {y.shape}.")
  return y


def _columns(
    y_true: np.ndarray, probs: np.ndarray, labels: Sequence[Any] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Validates; returns `(column index of each y [n], probs [n, C], labels)`."""
  y = _as_labels(y_true)
  probs = np.asarray(probs, np.float64)
  if probs.ndim != 2 or probs.shape[0] != y.shape[0]:
    raise ValueError(
        f"probs must be [n, C] with n = len(y_true) = {y.shape[0]}, got "
        f"{probs.shape}."
    )
  labels = (
      np.arange(probs.shape[1]) if labels is None else np.asarray(labels)
  )
  if labels.shape != (probs.shape[1],):
    raise ValueError(
        f"labels must name the {probs.shape[1]} columns of probs, got "
        f"{labels.tolist()}."
    )
  sorter = np.argsort(labels)
  pos = np.searchsorted(labels, y, sorter=sorter)
  pos = np.clip(pos, 0, len(labels) - 1)
  cols = sorter[pos]
  unknown = labels[cols] != y
  if np.any(unknown):
    raise ValueError(
        f"y_true holds labels {np.unique(y[unknown]).tolist()} that are not "
        f"in labels {labels.tolist()}."
    )
  return cols, probs, labels


def midranks(x: np.ndarray) -> np.ndarray:
  """1-based ranks of `x` `[n]`, ties getting the mean of their ranks."""
  x = np.asarray(x)
  n = x.shape[0]
  order = np.argsort(x, kind="mergesort")
  xs = x[order]
  new_group = np.r_[True, xs[1:] != xs[:-1]]
  starts = np.flatnonzero(new_group)
  ends = np.r_[starts[1:], n]
  mean_rank = (starts + 1 + ends) / 2.0
  ranks = np.empty(n, np.float64)
  ranks[order] = mean_rank[np.cumsum(new_group) - 1]
  return ranks


def binary_auc(is_positive: np.ndarray, scores: np.ndarray) -> float | None:
  """Mann-Whitney AUC ``(S_pos - n_pos (n_pos + 1) / 2) / (n_pos n_neg)``.

  Returns None when there is no positive or no negative sample.
  """
  is_positive = np.asarray(is_positive, bool)
  n_pos = int(is_positive.sum())
  n_neg = is_positive.shape[0] - n_pos
  if n_pos == 0 or n_neg == 0:
    return None
  rank_sum = midranks(scores)[is_positive].sum()
  return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def hand_till_auc(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    labels: Sequence[Any] | None = None,
) -> float | None:
  """Hand & Till (2001) multi-class AUC ``M`` (one-vs-one, macro).

  ``A(i|j) = (S_i - n_i (n_i + 1) / 2) / (n_i n_j)`` with ``S_i`` the
  mid-rank sum of class-i samples among classes i and j scored by
  ``p(i|x)``; ``A(i, j) = (A(i|j) + A(j|i)) / 2``; ``M`` is the mean of
  ``A(i, j)`` over pairs of classes present in `y_true`.

  Args:
    y_true: `[n]` labels.
    probs: `[n, C]` class probabilities.
    labels: `[C]` label of each column (default ``0..C-1``).

  Returns:
    ``M``, or None with fewer than 2 present classes.
  """
  cols, probs, _ = _columns(y_true, probs, labels)
  present = np.unique(cols)
  if present.shape[0] < 2:
    return None
  pair_aucs = []
  for i, j in itertools.combinations(present, 2):
    in_pair = (cols == i) | (cols == j)
    y_pair = cols[in_pair]
    a_ij = binary_auc(y_pair == i, probs[in_pair, i])
    a_ji = binary_auc(y_pair == j, probs[in_pair, j])
    pair_aucs.append((a_ij + a_ji) / 2.0)
  return float(np.mean(pair_aucs))


def per_class_auc(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    labels: Sequence[Any] | None = None,
) -> list[float | None]:
  """One-vs-rest AUC of each column `[C]`; None where undefined."""
  cols, probs, _ = _columns(y_true, probs, labels)
  return [binary_auc(cols == c, probs[:, c]) for c in range(probs.shape[1])]


def ovr_auc(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    labels: Sequence[Any] | None = None,
) -> float | None:
  """Macro one-vs-rest AUC over the classes with a defined AUC.

  Equals scikit-learn's ``roc_auc_score(multi_class='ovr')`` when every
  class is present; None with fewer than 2 present classes.
  """
  cols, _, _ = _columns(y_true, probs, labels)
  if np.unique(cols).shape[0] < 2:
    return None
  aucs = per_class_auc(y_true, probs, labels=labels)
  aucs = [a for a in aucs if a is not None]
  return float(np.mean(aucs))


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
  """Fraction of correct predictions; None for no sample."""
  y_true, y_pred = _as_labels(y_true), _as_labels(y_pred)
  if y_true.shape[0] == 0:
    return None
  return float(np.mean(y_true == y_pred))


def confusion_matrix(
    y_true: np.ndarray, y_pred: np.ndarray, *, num_classes: int
) -> np.ndarray:
  """int64 `[C, C]` counts, rows = true class, columns = predicted class."""
  y_true, y_pred = _as_labels(y_true), _as_labels(y_pred)
  for name, y in (("y_true", y_true), ("y_pred", y_pred)):
    if y.size and (y.min() < 0 or y.max() >= num_classes):
      raise ValueError(
          f"{name} must hold class indices in [0, {num_classes}), got "
          f"{np.unique(y).tolist()}."
      )
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (y_true, y_pred), 1)
  return cm


def _per_class_counts(cm: np.ndarray) -> dict[str, np.ndarray]:
  """True positives etc. per class `[C]` from a confusion matrix."""
  tp = np.diag(cm).astype(np.float64)
  fp = cm.sum(0) - tp
  fn = cm.sum(1) - tp
  tn = cm.sum() - tp - fp - fn
  return dict(tp=tp, fp=fp, fn=fn, tn=tn)


def per_class_f1(cm: np.ndarray) -> list[float | None]:
  """F1 per class `[C]` (``2 TP / (2 TP + FP + FN)``); None if undefined."""
  k = _per_class_counts(cm)
  den = 2 * k["tp"] + k["fp"] + k["fn"]
  return [
      float(2 * t / d) if d > 0 else None for t, d in zip(k["tp"], den)
  ]


def per_class_specificity(cm: np.ndarray) -> list[float | None]:
  """``TN / (TN + FP)`` per class `[C]`; None when there is no negative."""
  k = _per_class_counts(cm)
  den = k["tn"] + k["fp"]
  return [float(t / d) if d > 0 else None for t, d in zip(k["tn"], den)]


def _default_labels(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[int] | None
) -> np.ndarray:
  """Classes averaged over: `labels`, else those true or predicted."""
  if labels is not None:
    return np.asarray(labels)
  return np.union1d(_as_labels(y_true), _as_labels(y_pred))


def macro_f1(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    labels: Sequence[int] | None = None,
) -> float | None:
  """Unweighted mean F1 over `labels` (default: true ∪ predicted classes).

  Matches ``sklearn.metrics.f1_score(average='macro', zero_division=0)``.
  """
  labels = _default_labels(y_true, y_pred, labels)
  if labels.size == 0:
    return None
  num_classes = int(
      max(labels.max(), np.max(y_true, initial=0), np.max(y_pred, initial=0))
      + 1
  )
  f1 = per_class_f1(confusion_matrix(y_true, y_pred, num_classes=num_classes))
  return float(np.mean([f1[c] or 0.0 for c in labels]))


def macro_specificity(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    *,
    labels: Sequence[int] | None = None,
) -> float | None:
  """Mean ``TN / (TN + FP)`` over `labels` (default: true ∪ predicted).

  Classes without negatives (undefined specificity) are skipped.
  """
  labels = _default_labels(y_true, y_pred, labels)
  if labels.size == 0:
    return None
  num_classes = int(
      max(labels.max(), np.max(y_true, initial=0), np.max(y_pred, initial=0))
      + 1
  )
  spec = per_class_specificity(
      confusion_matrix(y_true, y_pred, num_classes=num_classes)
  )
  values = [spec[c] for c in labels if spec[c] is not None]
  return float(np.mean(values)) if values else None


def classification_report(
    y_true: np.ndarray,
    probs: np.ndarray,
    *,
    class_names: Sequence[str],
    mask: np.ndarray | None = None,
) -> dict[str, Any]:
  """All metrics of one task as a JSON-serialisable dict.

  Items with ``mask`` False or ``y_true == -1`` (unknown) are excluded and
  counted in ``num_excluded``. Predictions are ``argmax(probs)``.

  Args:
    y_true: int `[n]` class indices into `class_names`, `-1` = unknown.
    probs: `[n, C]` class probabilities (softmax outputs).
    class_names: `[C]` names.
    mask: optional bool `[n]`, False for padding.

  Returns:
    dict with ``num_samples``, ``num_excluded``, ``class_names``,
    ``support`` / ``per_class_auc`` / ``per_class_f1`` /
    ``per_class_specificity`` (dicts keyed by class name, None where
    undefined), ``per_class_auc_reason`` (why an AUC is None),
    ``present_classes``, ``absent_classes``, ``auc_ovo`` (Hand & Till),
    ``auc_ovr``, ``accuracy``, ``macro_f1``, ``macro_specificity``,
    ``confusion_matrix`` (list of lists, rows = true) and ``notes``.
  """
  y = _as_labels(y_true).astype(np.int64)
  probs = np.asarray(probs, np.float64)
  names = [str(n) for n in class_names]
  num_classes = len(names)
  if probs.shape != (y.shape[0], num_classes):
    raise ValueError(
        f"probs must be [n={y.shape[0]}, C={num_classes}] to match y_true and "
        f"class_names, got {probs.shape}."
    )
  keep = y >= 0
  if mask is not None:
    keep &= np.asarray(mask, bool)
  y, probs = y[keep], probs[keep]
  if y.size and y.max() >= num_classes:
    raise ValueError(
        f"y_true holds class indices {np.unique(y[y >= num_classes]).tolist()}"
        f" outside [0, {num_classes}) for class_names {names}."
    )
  pred = np.argmax(probs, axis=1) if y.size else y
  cm = confusion_matrix(y, pred, num_classes=num_classes)
  support = cm.sum(1)
  present = [names[c] for c in range(num_classes) if support[c] > 0]
  absent = [names[c] for c in range(num_classes) if support[c] == 0]
  labels = np.arange(num_classes)

  aucs = per_class_auc(y, probs, labels=labels)
  reasons = {}
  for c, auc in enumerate(aucs):
    if auc is None:
      reasons[names[c]] = (
          "class absent from y_true (no positive sample)"
          if support[c] == 0
          else "no negative sample (only class present)"
      )
  notes = []
  if absent:
    notes.append(
        f"classes absent from this split: {absent}; multi-class AUCs are "
        "averaged over present classes (ovr) / pairs of present classes (ovo)."
    )
  if len(present) < 2:
    notes.append("fewer than 2 classes present: multi-class AUC undefined.")
  spec = per_class_specificity(cm)
  return dict(
      num_samples=int(y.shape[0]),
      num_excluded=int((~keep).sum()),
      class_names=names,
      support={n: int(s) for n, s in zip(names, support)},
      present_classes=present,
      absent_classes=absent,
      auc_ovo=hand_till_auc(y, probs, labels=labels),
      auc_ovr=ovr_auc(y, probs, labels=labels),
      per_class_auc=dict(zip(names, aucs)),
      per_class_auc_reason=reasons,
      accuracy=accuracy(y, pred),
      macro_f1=macro_f1(y, pred),
      macro_specificity=macro_specificity(y, pred),
      per_class_f1=dict(zip(names, per_class_f1(cm))),
      per_class_specificity=dict(zip(names, spec)),
      confusion_matrix=cm.tolist(),
      notes=notes,
  )
