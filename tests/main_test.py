"""Tests for mammojax.main: the printed AUC summary."""

from absl.testing import absltest

from mammojax import main


class MainTest(absltest.TestCase):

  def test_auc_summary_lists_every_evaluated_task(self):
    # A CNN baseline run: config.tasks is () there, the results name the
    # task (graph) the level derived.
    results = {
        "config": {"tasks": ()},
        "val": {"loss": 1.2, "mean_auc": 0.7, "loss_graph": 1.2,
                "graph": {"auc_ovo": 0.7, "auc_ovr": 0.72}},
        "test": {"loss": 1.1, "mean_auc": 0.65,
                 "graph": {"auc_ovo": 0.65, "accuracy": 0.5},
                 "node": {"auc_ovo": None}},
        "meta": {"best_epoch": 3},
    }
    self.assertEqual(main.auc_summary(results), {
        "val": {"graph": 0.7},
        "test": {"graph": 0.65, "node": None},
    })
    self.assertEqual(main.auc_summary({"val": {}}), {"val": {}})


if __name__ == "__main__":
  absltest.main()
