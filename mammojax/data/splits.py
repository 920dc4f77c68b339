"""Patient-wise splits, folds and epoch orders shared by every method.

Determinism: a split depends only on the split seed and the patient ids; the
order (and class-balanced resampling) of epoch ``e`` depends only on
``(seed, e)``, so a resumed run sees exactly the batches the interrupted run
would have seen.
"""

from typing import Any, Optional, Sequence

from absl import logging
import ml_collections
import numpy as np


def stratified_group_folds(
    patient_ids: Sequence[str], labels: Sequence[int], num_folds: int,
    seed: int,
) -> np.ndarray:
  """Assigns every example a fold in ``0..num_folds-1``, patient-wise.

  Patients are grouped by their most frequent label (stratification), each
  group is shuffled with ``seed`` and dealt round-robin into the folds, with
  the deal continuing across groups so that fold sizes stay balanced. All
  examples of a patient share a fold.
  """
  patient_ids = np.asarray(patient_ids)
  labels = np.asarray(labels)
  patients = sorted(set(patient_ids.tolist()))
  majority = {}
  for p in patients:
    values, counts = np.unique(labels[patient_ids == p], return_counts=True)
    majority[p] = int(values[np.argmax(counts)])
  rng = np.random.default_rng(seed)
  fold_of = {}
  position = 0
  for label in sorted(set(majority.values())):
    group = [p for p in patients if majority[p] == label]
    for p in rng.permutation(np.asarray(group, dtype=object)).tolist():
      fold_of[p] = position % num_folds
      position += 1
  return np.asarray([fold_of[p] for p in patient_ids.tolist()], np.int64)


def patient_splits(
    patient_ids: Sequence[str],
    labels: Sequence[int],
    *,
    val_fraction: float,
    test_fraction: float,
    num_folds: int = 1,
    fold: int = 0,
    seed: int = 0,
    fixed_test: Optional[np.ndarray] = None,
) -> dict[str, np.ndarray]:
  """Patient-wise stratified train/val/test indices.

  No patient appears in two splits. With ``num_folds > 1`` the patients not in
  the test set are divided into ``num_folds`` stratified folds and fold
  ``fold`` is the validation set (k-fold cross-validation); otherwise
  ``val_fraction`` of the patients form the validation set.

  Args:
    patient_ids: patient id of every example.
    labels: the stratification label of every example.
    val_fraction: fraction of patients for validation (without k-fold).
    test_fraction: fraction of patients held out for testing (ignored when
      ``fixed_test`` is given, e.g. an official test split).
    num_folds: k of k-fold cross-validation (1 = no CV).
    fold: which fold is the validation fold.
    seed: the split seed.
    fixed_test: boolean mask of examples that form the test set.

  Returns:
    ``{'train', 'val', 'test'}`` -> sorted example indices.
  """
  patient_ids = np.asarray(patient_ids)
  labels = np.asarray(labels)
  index = np.arange(len(patient_ids))
  if num_folds > 1 and not 0 <= fold < num_folds:
    raise ValueError(
        f"config.dataset.fold={fold}: expected 0..{num_folds - 1}"
    )
  for name, value in (("val_fraction", val_fraction),
                      ("test_fraction", test_fraction)):
    if not 0.0 <= value < 1.0:
      raise ValueError(
          f"config.dataset.{name}={value}: expected a fraction in [0, 1)"
      )

  def carve(idx, fraction, salt):
    """Splits ``idx`` by patients; returns (rest, held_out)."""
    if fraction <= 0 or len(idx) == 0:
      return idx, idx[:0]
    k = max(2, int(round(1.0 / fraction)))
    folds = stratified_group_folds(
        patient_ids[idx], labels[idx], k, seed + salt
    )
    return idx[folds != 0], idx[folds == 0]

  if fixed_test is not None:
    test = index[fixed_test]
    rest = index[~fixed_test]
    leaked = set(patient_ids[test]) & set(patient_ids[rest])
    if leaked:
      logging.warning(
          "%d patients are in the official test split and in training "
          "data; their training examples are dropped to avoid a leak: %s",
          len(leaked), sorted(leaked)[:10],
      )
      rest = rest[~np.isin(patient_ids[rest], list(leaked))]
  else:
    rest, test = carve(index, test_fraction, 0)
  if num_folds > 1:
    folds = stratified_group_folds(
        patient_ids[rest], labels[rest], num_folds, seed + 1
    )
    train, val = rest[folds != fold], rest[folds == fold]
  else:
    train, val = carve(rest, val_fraction, 1)
  return {
      "train": np.sort(train),
      "val": np.sort(val),
      "test": np.sort(test),
  }


def epoch_order(
    train: np.ndarray,
    labels: Sequence[int],
    *,
    seed: int,
    epoch: int,
    class_balanced: bool,
    size: Optional[int] = None,
) -> np.ndarray:
  """Example indices of training epoch ``epoch``; depends on (seed, epoch).

  With ``class_balanced`` the indices are drawn with replacement with
  probability inversely proportional to their label's frequency (torch's
  ``WeightedRandomSampler``); otherwise they are a permutation of ``train``,
  continued by further permutations when ``size`` exceeds ``len(train)``.

  Args:
    train: training example indices.
    labels: the balancing label of each of them.
    seed: the run seed.
    epoch: the epoch number.
    class_balanced: resample to balance ``labels``.
    size: number of indices (default ``len(train)``).
  """
  train = np.asarray(train)
  size = len(train) if size is None else int(size)
  rng = np.random.default_rng([seed, epoch])
  if class_balanced and len(train):
    labels = np.asarray(labels)
    values, counts = np.unique(labels, return_counts=True)
    freq = dict(zip(values.tolist(), counts.tolist()))
    p = np.asarray([1.0 / freq[l] for l in labels.tolist()])
    return rng.choice(train, size=size, replace=True, p=p / p.sum())
  order = [rng.permutation(train)]
  while len(train) and sum(len(o) for o in order) < size:
    order.append(rng.permutation(train))
  return np.concatenate(order)[:size]


def official_test(examples: Sequence[dict[str, Any]]) -> Optional[np.ndarray]:
  """Bool ``[N]``: the examples of the dataset's official ``test`` split.

  None when the dataset has no such split (then the test set is drawn).
  """
  flags = np.asarray([ex.get("source_split") == "test" for ex in examples])
  return flags if flags.any() else None


def cluster_splits(
    config: ml_collections.ConfigDict, examples: Sequence[dict[str, Any]]
) -> dict[str, np.ndarray]:
  """MT-GCN's patient-wise splits of calcification-cluster examples.

  ``patient_splits`` stratified by the cluster's distribution with the
  fields of ``config.dataset``; an official ``test`` source split is kept as
  the test set. Every method on the calcification datasets uses this, so
  their folds hold the same patients.
  """
  ds = config.dataset
  return patient_splits(
      [ex["patient_id"] for ex in examples],
      [ex["distribution"] for ex in examples],
      val_fraction=ds.val_fraction,
      test_fraction=ds.test_fraction,
      num_folds=ds.num_folds,
      fold=ds.fold,
      seed=ds.split_seed,
      fixed_test=official_test(examples),
  )
