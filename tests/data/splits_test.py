"""Tests of the patient-wise splits and folds (mammojax.data.splits)."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from mammojax.data import splits as splits_lib


def _patients(n_patients=40, images_per_patient=2, seed=0):
  rng = np.random.default_rng(seed)
  pids, labels = [], []
  for p in range(n_patients):
    label = int(rng.integers(0, 4))
    for _ in range(images_per_patient):
      pids.append(f"P{p:03d}")
      labels.append(label)
  return pids, labels


class SplitTest(parameterized.TestCase):

  def test_patient_splits_are_disjoint_and_complete(self):
    pids, labels = _patients()
    splits = splits_lib.patient_splits(
        pids, labels, val_fraction=0.1, test_fraction=0.2, seed=3
    )
    pids = np.asarray(pids)
    sets = {k: set(pids[v]) for k, v in splits.items()}
    self.assertEmpty(sets["train"] & sets["val"])
    self.assertEmpty(sets["train"] & sets["test"])
    self.assertEmpty(sets["val"] & sets["test"])
    everything = np.sort(np.concatenate(list(splits.values())))
    np.testing.assert_array_equal(everything, np.arange(len(pids)))
    # 20 % of 40 patients are held out for testing (stratified round robin).
    self.assertEqual(len(sets["test"]), 8)

  def test_splits_are_deterministic_per_seed(self):
    pids, labels = _patients()
    a = splits_lib.patient_splits(pids, labels, val_fraction=0.1,
                                  test_fraction=0.2, seed=1)
    b = splits_lib.patient_splits(pids, labels, val_fraction=0.1,
                                  test_fraction=0.2, seed=1)
    c = splits_lib.patient_splits(pids, labels, val_fraction=0.1,
                                  test_fraction=0.2, seed=2)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
    self.assertFalse(np.array_equal(a["test"], c["test"]))

  def test_kfold_validation_folds_partition_the_non_test_patients(self):
    pids, labels = _patients(n_patients=50)
    folds = [
        splits_lib.patient_splits(
            pids, labels, val_fraction=0.0, test_fraction=0.2,
            num_folds=5, fold=f, seed=0,
        )
        for f in range(5)
    ]
    for f in folds:  # The held-out test set is the same for every fold.
      np.testing.assert_array_equal(f["test"], folds[0]["test"])
    vals = np.concatenate([f["val"] for f in folds])
    self.assertLen(set(vals.tolist()), len(vals))
    rest = np.setdiff1d(np.arange(len(pids)), folds[0]["test"])
    np.testing.assert_array_equal(np.sort(vals), rest)

  def test_stratification_spreads_each_label_over_folds(self):
    pids, labels = _patients(n_patients=60, images_per_patient=1)
    folds = splits_lib.stratified_group_folds(pids, labels, 3, seed=0)
    for label in set(labels):
      counts = np.bincount(folds[np.asarray(labels) == label], minlength=3)
      self.assertLessEqual(counts.max() - counts.min(), 1)

  def test_official_test_split_drops_leaking_training_patients(self):
    pids = ["A", "A", "B", "C", "D", "E"]
    labels = [0, 0, 1, 0, 1, 0]
    fixed = np.asarray([True, False, False, False, False, False])
    splits = splits_lib.patient_splits(
        pids, labels, val_fraction=0.0, test_fraction=0.0, fixed_test=fixed
    )
    np.testing.assert_array_equal(splits["test"], [0])
    self.assertNotIn(1, splits["train"])

  @parameterized.parameters(
      ("val_fraction", 1.5), ("test_fraction", -0.1)
  )
  def test_bad_fractions_name_the_config_key(self, key, value):
    kwargs = {"val_fraction": 0.1, "test_fraction": 0.2, key: value}
    with self.assertRaisesRegex(ValueError, f"config.dataset.{key}"):
      splits_lib.patient_splits(["a", "b"], [0, 1], **kwargs)


if __name__ == "__main__":
  absltest.main()
