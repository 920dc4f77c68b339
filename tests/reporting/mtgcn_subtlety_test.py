"""Tests of the MT-GCN run report's per-subtlety AUCs."""

import types

from absl.testing import absltest
import numpy as np

from mammojax.reporting import mtgcn as report
from mammojax.training import metrics


class PerSubtletyTest(absltest.TestCase):

  def test_groups_follow_the_split_order(self):
    # Four test graphs (subtlety 2, 5, 2, unknown), 2 nodes each; padding
    # entries (mask False) sit between them as in packed batches.
    examples = [
        {"subtlety": 2, "morphology": [0, 1]},
        {"subtlety": 5, "morphology": [1, 0]},
        {"subtlety": 2, "morphology": [1, 1]},
        {"subtlety": -1, "morphology": [0, 0]},
    ]
    data = types.SimpleNamespace(
        examples=examples, splits={"test": np.arange(4)},
        vocabularies={"distribution": ["a", "b"], "morphology": ["x", "y"]})
    # Graph probabilities: perfect on subtlety 2, inverted on subtlety 5.
    raw = {
        "graph_mask": np.array([1, 1, 0, 1, 1, 0], bool),
        "graph_labels": np.array([0, 1, -1, 1, 0, -1]),
        "graph_probs": np.array([[.9, .1], [.9, .1], [.5, .5], [.2, .8],
                                 [.5, .5], [.5, .5]]),
        "node_mask": np.array([1, 1, 1, 1, 0, 1, 1, 1, 1], bool),
        "node_labels": np.array([0, 1, 1, 0, -1, 1, 1, 0, 0]),
        "node_probs": np.array([[.8, .2], [.3, .7], [.6, .4], [.4, .6],
                                [.5, .5], [.1, .9], [.2, .8], [.5, .5],
                                [.5, .5]]),
    }
    got = report.per_subtlety_metrics(data, raw, "test",
                                      metrics.classification_report)
    self.assertEqual(sorted(got), ["2", "5"])
    self.assertEqual((got["2"]["graphs"], got["2"]["graph_items"],
                      got["2"]["node_items"]), (2, 2, 4))
    self.assertAlmostEqual(got["2"]["graph_auc_ovo"], 1.0)
    self.assertAlmostEqual(got["2"]["node_auc_ovo"], 1.0)
    self.assertAlmostEqual(got["5"]["node_auc_ovo"], 0.0)
    self.assertEqual(got["5"]["graph_items"], 1)


if __name__ == "__main__":
  absltest.main()
