"""Tests of the shared ROC + confusion block and the losses table."""

import os

from absl.testing import absltest
import numpy as np

from mammojax.reporting import classification
from mammojax.reporting import report
from mammojax.training import metrics


class ClassificationFiguresTest(absltest.TestCase):

  def test_figures_of_real_items_only(self):
    workdir = self.create_tempdir().full_path
    rng = np.random.default_rng(0)
    labels = np.array([0, 1, 2, 1, -1, 0])
    mask = np.array([True, True, True, True, True, False])
    probs = rng.dirichlet(np.ones(3), 6)
    raw = {"t_probs": probs, "t_labels": labels, "t_mask": mask}
    keep = classification.real_items(raw, "t")
    np.testing.assert_array_equal(keep, [1, 1, 1, 1, 0, 0])
    rep = metrics.classification_report(
        labels[keep], probs[keep], class_names=["a", "b", "c"]
    )
    figures = classification.write_task_figures(
        workdir, raw, rep, task="t", class_names=["a", "b", "c"],
        title="toy task", split="test",
    )
    self.assertEqual(figures, {
        "ROC curves, toy task": os.path.join("figures", "roc_t.png"),
        "Confusion matrix, toy task": os.path.join(
            "figures", "confusion_t.png"
        ),
    })
    for rel in figures.values():
      with open(os.path.join(workdir, rel), "rb") as f:
        self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
    empty = dict(raw, t_mask=np.zeros(6, bool))
    self.assertEqual(classification.write_task_figures(
        workdir, empty, rep, task="t", class_names=["a", "b", "c"],
        title="x", split="test"), {})
    self.assertEqual(classification.write_task_figures(
        workdir, {}, rep, task="t", class_names=["a"], title="x",
        split="test"), {})

  def test_loss_table_and_its_markdown(self):
    results = {
        "val": {"loss": 1.5, "loss_node": 1.0, "loss_rec": 1.0,
                "node": {"auc_ovo": 0.7}},
        "test": {"loss": 1.25, "loss_node": 0.75, "loss_rec": 1.0},
        "meta": {"epoch": 3},
    }
    table = classification.loss_table(results)
    self.assertEqual(table, {
        "val": {"loss": 1.5, "loss_node": 1.0, "loss_rec": 1.0},
        "test": {"loss": 1.25, "loss_node": 0.75, "loss_rec": 1.0},
    })
    text = report.render_markdown({"title": "t", "losses": table}, {})
    self.assertIn("## Losses", text)
    self.assertIn("| split | loss | loss_node | loss_rec |", text)
    self.assertIn("| test | 1.2500 | 0.7500 | 1.0000 |", text)


if __name__ == "__main__":
  absltest.main()
