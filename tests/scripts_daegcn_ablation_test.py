"""Tests of scripts/daegcn_ablation.py: rows, overrides, the table."""

import importlib.util
import pathlib

from absl.testing import absltest

_PATH = pathlib.Path(__file__).resolve().parent.parent / "scripts" / (
    "daegcn_ablation.py")
_SPEC = importlib.util.spec_from_file_location("daegcn_ablation", _PATH)
ablation = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ablation)


def _results(auc, acc, probe):
  return {
      "test": {"malignant": {"auc_ovr": auc}},
      "daegcn": {
          "test_split": "test",
          "attribute_accuracy": {"test": {
              "overall": {"accuracy": acc, "n": 10},
              "mass_shape": {"accuracy": acc, "n": 5},
              "mass_margin": {"accuracy": acc, "n": 5}}},
          "probe_auc": probe,
      },
  }


class AblationScriptTest(absltest.TestCase):

  def test_rows_follow_table_2(self):
    chen = ablation.row_config("chen", 3, num_epochs=2,
                               overrides=["model.image_size=32",
                                          "model.backbone_kwargs.stage_sizes="
                                          "(1, 1, 1, 1)"])
    m = chen.model
    self.assertEqual(
        (m.disentangle, m.attribute_head, m.reconstruct, m.dim_i,
         m.image_size, tuple(m.backbone_kwargs.stage_sizes)),
        (False, "gcn", False, 0, 32, (1, 1, 1, 1)))
    self.assertEqual((chen.dataset.split_seed, chen.seed, chen.num_epochs),
                     (3, 3, 2))
    no_hi = ablation.row_config("dae_no_hi", 0)
    self.assertEqual((no_hi.model.disentangle, no_hi.model.dim_i), (True, 0))
    with self.assertRaisesRegex(ValueError, r"no field 'model.width'"):
      ablation.row_config("default", 0, overrides=["model.width=3"])
    with self.assertRaisesRegex(ValueError, r"unknown row 'gcn'"):
      ablation.row_config("gcn", 0)

  def test_table_means_and_sample_std(self):
    runs = {
        "vanilla": [ablation.run_metrics(_results(0.7, None, {})),
                    ablation.run_metrics(_results(0.8, None, {}))],
        "default": [
            ablation.run_metrics(_results(0.9, 0.6, {"h_ma + h_mi": 0.9,
                                                     "h_i": 0.5})),
            ablation.run_metrics(_results(1.0, 0.8, {"h_ma + h_mi": 0.8,
                                                     "h_i": 0.7})),
        ],
    }
    summary = ablation.summarize(runs)
    self.assertAlmostEqual(summary["vanilla"]["auc"]["mean"], 0.75)
    self.assertAlmostEqual(summary["vanilla"]["auc"]["std"], 0.0707107,
                           places=6)
    self.assertEqual(summary["vanilla"]["attribute_accuracy"]["n"], 0)
    table = ablation.render_table(summary, 2)
    lines = table.splitlines()
    self.assertEqual(
        lines[2], "| Vanilla (ResNet-34) | no | - | no | no | 0.750 ± 0.071 "
        "| - | - | - | - | - | 2/2 |")
    self.assertEqual(
        lines[3], "| DAE-GCN | yes | L_gcn | yes | yes | 0.950 ± 0.071 | "
        "0.700 ± 0.141 | 0.700 ± 0.141 | 0.700 ± 0.141 | 0.850 ± 0.071 | "
        "0.600 ± 0.141 | 2/2 |")


if __name__ == "__main__":
  absltest.main()
