"""Tests for mammojax.training.metrics against scikit-learn."""

import json
import warnings

from absl.testing import absltest
import numpy as np
from sklearn import metrics as skm

from mammojax.training import metrics


def _random_case(rng, ties):
  """Random labels [n] (every class present) and softmax probs [n, C]."""
  c = int(rng.integers(3, 7))
  n = int(rng.integers(30, 301))
  y = np.concatenate([np.arange(c), rng.integers(0, c, n - c)])
  rng.shuffle(y)
  logits = rng.normal(size=(n, c)) + 1.5 * np.eye(c)[y] * rng.uniform()
  if ties:
    logits = np.round(logits * 2) / 2  # many exactly tied scores
  p = np.exp(logits)
  return y, p / p.sum(1, keepdims=True)


class AucTest(absltest.TestCase):

  def test_midranks(self):
    np.testing.assert_array_equal(
        metrics.midranks(np.array([3.0, 1.0, 3.0, 2.0, 3.0])),
        [4.0, 1.0, 4.0, 2.0, 4.0],
    )

  def test_matches_sklearn_on_random_cases_with_ties(self):
    rng = np.random.default_rng(0)
    max_diff = 0.0
    for k in range(60):
      y, p = _random_case(rng, ties=k % 2 == 1)
      for mine, multi_class in (
          (metrics.hand_till_auc, "ovo"),
          (metrics.ovr_auc, "ovr"),
      ):
        want = skm.roc_auc_score(y, p, multi_class=multi_class)
        max_diff = max(max_diff, abs(mine(y, p) - want))
      want = skm.roc_auc_score(y, p, multi_class="ovr", average=None)
      got = metrics.per_class_auc(y, p)
      max_diff = max(max_diff, np.max(np.abs(np.array(got) - want)))
    self.assertLess(max_diff, 1e-12)

  def test_binary_auc_matches_sklearn(self):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 100)
    s = np.round(rng.normal(size=100), 1)
    self.assertAlmostEqual(
        metrics.binary_auc(y == 1, s), skm.roc_auc_score(y, s), places=12
    )
    self.assertIsNone(metrics.binary_auc(np.ones(5, bool), s[:5]))

  def test_string_labels(self):
    rng = np.random.default_rng(2)
    y, p = _random_case(rng, ties=False)
    names = np.array([f"c{i}" for i in range(p.shape[1])])
    self.assertAlmostEqual(
        metrics.hand_till_auc(names[y], p, labels=names),
        metrics.hand_till_auc(y, p),
        places=14,
    )
    with self.assertRaisesRegex(ValueError, "not in labels"):
      metrics.hand_till_auc(y + 1, p)

  def test_absent_class(self):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 80)  # class 3 of 4 absent
    p = rng.dirichlet(np.ones(4), 80)
    labels = [0, 1, 2, 3]
    # sklearn ovo with labels= averages over present pairs (Hand & Till M).
    self.assertAlmostEqual(
        metrics.hand_till_auc(y, p),
        skm.roc_auc_score(y, p, multi_class="ovo", labels=labels),
        places=12,
    )
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      per = skm.roc_auc_score(
          y, p, multi_class="ovr", labels=labels, average=None
      )
    got = metrics.per_class_auc(y, p)
    self.assertIsNone(got[3])
    np.testing.assert_allclose(got[:3], per[:3], atol=1e-12)
    self.assertAlmostEqual(metrics.ovr_auc(y, p), np.nanmean(per), places=12)

  def test_fewer_than_two_classes(self):
    p = np.full((4, 3), 1 / 3)
    self.assertIsNone(metrics.hand_till_auc(np.zeros(4, int), p))
    self.assertIsNone(metrics.ovr_auc(np.zeros(4, int), p))
    self.assertEqual(
        metrics.per_class_auc(np.zeros(4, int), p), [None, None, None]
    )


class CountMetricsTest(absltest.TestCase):

  def test_matches_sklearn(self):
    rng = np.random.default_rng(4)
    for _ in range(10):
      c = int(rng.integers(2, 6))
      y = rng.integers(0, c, 50)
      pred = rng.integers(0, c + 1, 50)  # may predict a class absent in y
      k = int(max(y.max(), pred.max()) + 1)
      np.testing.assert_array_equal(
          metrics.confusion_matrix(y, pred, num_classes=k),
          skm.confusion_matrix(y, pred, labels=np.arange(k)),
      )
      self.assertAlmostEqual(
          metrics.accuracy(y, pred), skm.accuracy_score(y, pred), places=12
      )
      self.assertAlmostEqual(
          metrics.macro_f1(y, pred),
          skm.f1_score(y, pred, average="macro", zero_division=0),
          places=12,
      )
      mcm = skm.multilabel_confusion_matrix(y, pred)
      tn, fp = mcm[:, 0, 0], mcm[:, 0, 1]
      self.assertAlmostEqual(
          metrics.macro_specificity(y, pred), np.mean(tn / (tn + fp)),
          places=12,
      )
      self.assertAlmostEqual(
          metrics.macro_f1(y, pred, labels=np.arange(c + 2)),
          skm.f1_score(y, pred, average="macro", labels=np.arange(c + 2),
                       zero_division=0),
          places=12,
      )

  def test_confusion_matrix_rejects_out_of_range(self):
    with self.assertRaisesRegex(ValueError, "y_pred"):
      metrics.confusion_matrix([0, 1], [0, 3], num_classes=3)


class ReportTest(absltest.TestCase):

  def test_report_with_absent_class_mask_and_unknown(self):
    rng = np.random.default_rng(5)
    names = ["a", "b", "c", "d"]
    y = np.concatenate([rng.integers(0, 3, 40), [-1, -1]])  # "d" absent
    p = rng.dirichlet(np.ones(4), 42)
    mask = np.ones(42, bool)
    mask[:2] = False
    rep = metrics.classification_report(y, p, class_names=names, mask=mask)
    json.dumps(rep)  # serialisable
    keep = mask & (y >= 0)
    yk, pk = y[keep], p[keep]
    self.assertEqual(rep["num_samples"], 38)
    self.assertEqual(rep["num_excluded"], 4)
    self.assertEqual(rep["absent_classes"], ["d"])
    self.assertIsNone(rep["per_class_auc"]["d"])
    self.assertIn("absent", rep["per_class_auc_reason"]["d"])
    self.assertAlmostEqual(
        rep["auc_ovo"],
        skm.roc_auc_score(yk, pk, multi_class="ovo", labels=[0, 1, 2, 3]),
        places=12,
    )
    self.assertAlmostEqual(
        rep["per_class_auc"]["b"],
        skm.roc_auc_score(yk == 1, pk[:, 1]),
        places=12,
    )
    pred = pk.argmax(1)
    self.assertAlmostEqual(rep["accuracy"], skm.accuracy_score(yk, pred))
    self.assertAlmostEqual(
        rep["macro_f1"],
        skm.f1_score(yk, pred, average="macro", zero_division=0),
        places=12,
    )
    np.testing.assert_array_equal(
        rep["confusion_matrix"], skm.confusion_matrix(yk, pred, labels=range(4))
    )
    self.assertEqual(rep["support"]["d"], 0)
    self.assertTrue(rep["notes"])

  def test_single_class_and_empty(self):
    p = np.array([[0.7, 0.3], [0.4, 0.6]])
    rep = metrics.classification_report([1, 1], p, class_names=["x", "y"])
    self.assertIsNone(rep["auc_ovo"])
    self.assertIsNone(rep["auc_ovr"])
    self.assertIn("only class", rep["per_class_auc_reason"]["y"])
    self.assertEqual(rep["accuracy"], 0.5)
    rep = metrics.classification_report(
        [-1, -1], p, class_names=["x", "y"]
    )
    self.assertEqual(rep["num_samples"], 0)
    self.assertIsNone(rep["accuracy"])
    self.assertIsNone(rep["macro_f1"])
    json.dumps(rep)


if __name__ == "__main__":
  absltest.main()
