"""Tests for mammojax.reporting.luminal (the luminal method's run report)."""

import os
import subprocess
import sys
import types

from absl.testing import absltest
import ml_collections
import numpy as np

from mammojax.reporting import luminal as report
from mammojax.training import metrics


def _data():
  """Ten images; test = 0..5 (luminal 1 0 1 1 0 0), val = 6..9."""
  luminal = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 0])
  return types.SimpleNamespace(
      examples=[{"example_id": f"img{i}"} for i in range(10)],
      splits={"test": np.arange(6), "val": np.arange(6, 10)},
      images=np.zeros((10, 16, 8), np.uint8),
      labels={"luminal": luminal},
  )


def _raw(indices, labels, p_luminal, pad=2):
  n = len(indices)
  probs = np.stack([1 - p_luminal, p_luminal], -1)
  return {
      "index": np.concatenate([indices, -np.ones(pad, np.int32)]),
      "luminal_labels": np.concatenate([labels, -np.ones(pad, np.int32)]),
      "luminal_probs": np.concatenate([probs, np.full((pad, 2), 0.5)]),
      "luminal_mask": np.arange(n + pad) < n,
  }


class LuminalReportTest(absltest.TestCase):

  def test_pick_gradcam_examples_alternates_classes(self):
    data = _data()
    self.assertEqual(report.pick_gradcam_examples(data, "test", "luminal", 4),
                     [0, 1, 2, 4])
    self.assertEqual(report.pick_gradcam_examples(data, "test", "luminal", 10),
                     [0, 1, 2, 4, 3, 5])
    self.assertEqual(report.pick_gradcam_examples(data, "val", "luminal", 0),
                     [])

  def test_run_report_uses_the_given_class_names(self):
    workdir = self.create_tempdir().full_path
    data = _data()
    labels = data.labels["luminal"][:6]
    p = np.array([0.9, 0.2, 0.7, 0.4, 0.3, 0.6])
    raw = {"test": _raw(np.arange(6), labels, p)}
    names = ["non-lum", "lum"]
    results = {
        "test": {"luminal": metrics.classification_report(
            labels, raw["test"]["luminal_probs"][:6], class_names=names)},
        "meta": {"best_epoch": 2},
        "splits": {"train": 0, "val": 4, "test": 6},
        "timing": {"train_items_per_second": 12.345},
    }
    config = ml_collections.ConfigDict({
        "tasks": ("luminal",), "init_from": "runs/pretrain",
        "model": {"name": "resnet18"},
        "report": {"num_gradcam": 0, "gradcam_task": ""},
    })
    path = report.write_run_report(
        workdir, config, data, results, raw, None, model=None,
        class_names={"luminal": names},
    )
    self.assertEqual(path, os.path.join(workdir, "report.md"))
    text = open(path).read()
    self.assertIn("luminal method, tasks luminal", text)
    self.assertIn("runs/pretrain", text)
    self.assertIn("12.35", text)
    self.assertIn("figures/roc_luminal.png", text)
    for name in ("roc_luminal.png", "confusion_luminal.png"):
      self.assertTrue(os.path.exists(os.path.join(workdir, "figures", name)))
    saved = np.load(os.path.join(workdir, "predictions_test.npz"))
    np.testing.assert_array_equal(saved["index"], np.arange(6))  # No padding.
    np.testing.assert_array_equal(saved["example_id"],
                                  [f"img{i}" for i in range(6)])
    np.testing.assert_array_equal(saved["luminal_labels"], labels)
    np.testing.assert_allclose(saved["luminal_probs"][:, 1], p)
    with self.assertRaisesRegex(ValueError, r"class_names.*\['luminal'\]"):
      report.write_run_report(workdir, config, data, results, raw, None,
                              model=None, class_names={})

  def test_reporting_imports_no_method_or_experiment(self):
    code = ("import sys; import mammojax.reporting.luminal; "
            "print(sorted(m for m in sys.modules if m.startswith("
            "('mammojax.training', 'mammojax.methods', "
            "'mammojax.experiments'))))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, check=True, timeout=300)
    # No method, loop, metrics or experiment: reporting is a lower layer.
    self.assertEqual(run.stdout.strip(), "[]")

if __name__ == "__main__":
  absltest.main()
