"""Tests for mammojax.reporting.report."""

import pathlib
import tempfile

from absl.testing import absltest
import numpy as np

from mammojax.reporting import report
from mammojax.training import metrics


class ReportTest(absltest.TestCase):

  def test_tables_numbers_and_links(self):
    rng = np.random.default_rng(0)
    node = metrics.classification_report(
        rng.integers(0, 3, 50), rng.dirichlet(np.ones(4), 50),
        class_names=["punctate", "amorphous", "pleomorphic", "linear"],
    )
    graph = metrics.classification_report(
        rng.integers(0, 2, 20), rng.dirichlet(np.ones(2), 20),
        class_names=["grouped", "segmental"],
    )
    results = {
        "title": "MT-GCN test run",
        "run": {"config": "configs/test.py", "steps": 10, "seed": 0},
        "tasks": {"node (morphology)": node, "graph (distribution)": graph},
        "gradnorm": {"final_weights": [1.2, 0.8]},
        "notes": ["synthetic data"],
    }
    figures = {"ROC node": "figures/roc_node.png", "weights": "w.png"}
    path = report.write_markdown_report(
        pathlib.Path(tempfile.mkdtemp()) / "out" / "report.md", results,
        figures,
    )
    text = path.read_text()
    self.assertTrue(text.startswith("# MT-GCN test run\n"))
    summary = [l for l in text.splitlines()
               if l.startswith("| node (morphology) |")]
    self.assertLen(summary, 1)
    for key in ("auc_ovo", "auc_ovr", "accuracy", "macro_f1",
                "macro_specificity"):
      self.assertIn(f"{node[key]:.4f}", summary[0])
      self.assertIn(f"{graph[key]:.4f}", text)
    self.assertIn("AUC ovo (Hand & Till)", text)
    self.assertIn(f"| amorphous | {node['support']['amorphous']} | "
                  f"{node['per_class_auc']['amorphous']:.4f} |", text)
    self.assertIn("| linear | 0 | n/a (class absent", text)
    self.assertIn("| true \\ pred | punctate |", text)
    row = " | ".join(str(v) for v in node["confusion_matrix"][0])
    self.assertIn(f"| punctate | {row} |", text)
    self.assertIn("![ROC node](figures/roc_node.png)", text)
    self.assertIn("![weights](w.png)", text)
    self.assertIn("| config | configs/test.py |", text)
    self.assertIn("| final_weights | [1.2, 0.8] |", text)
    self.assertIn("- synthetic data", text)

  def test_format_value(self):
    self.assertEqual(report.format_value(None), "n/a")
    self.assertEqual(report.format_value(0.123456), "0.1235")
    self.assertEqual(report.format_value(3), "3")
    self.assertEqual(report.format_value("a|b"), "a\\|b")


if __name__ == "__main__":
  absltest.main()
