"""Tests of scripts/daegcn_ablation.py: rows, overrides, the table."""

import importlib.util
import json
import os
import pathlib
from unittest import mock

from absl.testing import absltest

_PATH = pathlib.Path(__file__).resolve().parent.parent / "scripts" / (
    "daegcn_ablation.py")
_SPEC = importlib.util.spec_from_file_location("daegcn_ablation", _PATH)
ablation = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ablation)


def _results(auc, acc, probe):
  return {
      "test": {"malignant": {"auc_ovr": auc}},
      "val": {"malignant": {"auc_ovr": auc - 0.1}},
      "meta": {"best_epoch": 7},
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

  def test_cell_over_fewer_splits_says_its_n(self):
    summary = ablation.summarize({"default": [
        ablation.run_metrics(_results(0.6, 0.5, {"h_ma + h_mi": 0.7,
                                                 "h_i": None})),
        ablation.run_metrics(_results(0.8, 0.5, {"h_ma + h_mi": 0.9,
                                                 "h_i": 0.55})),
    ]})
    row = ablation.render_table(summary, 3).splitlines()[2].split(" | ")
    self.assertEqual(row[-3:], ["0.800 ± 0.141", "0.550 (n=1)", "2/3 |"])

  def test_protocol_is_split_major_resumable_and_keeps_per_split_values(self):
    workdir = self.create_tempdir().full_path
    calls = []

    def fake_train(config, run_dir, examples_and_info=None):
      del examples_and_info
      row = os.path.basename(os.path.dirname(run_dir))
      calls.append((row, config.dataset.split_seed))
      auc = {"vanilla": 0.6, "default": 0.8}[row] + 0.1 * (
          config.dataset.split_seed)
      results = _results(auc, 0.5 if row == "default" else None,
                         {"h_ma + h_mi": auc, "h_i": 0.5}
                         if row == "default" else {})
      os.makedirs(run_dir, exist_ok=True)
      with open(os.path.join(run_dir, "results.json"), "w") as f:
        json.dump(results, f)
      return results

    # A run stopped before its end-of-run analysis: results.json without
    # the 'daegcn' section is resumed, not tabulated.
    stale = os.path.join(workdir, "default", "split0")
    os.makedirs(stale)
    with open(os.path.join(stale, "results.json"), "w") as f:
      json.dump({"test": {"malignant": {"auc_ovr": 0.1}}}, f)
    with mock.patch("mammojax.training.loop.train_and_evaluate",
                    side_effect=fake_train):
      out = ablation.run_protocol(workdir, ["vanilla", "default"], 2)
      self.assertEqual(calls, [("vanilla", 0), ("default", 0),
                               ("vanilla", 1), ("default", 1)])
      again = ablation.run_protocol(workdir, ["vanilla", "default"], 2)
    self.assertLen(calls, 4)  # Every run complete: nothing retrained.
    self.assertEqual(again["summary"], out["summary"])
    per_run = out["per_run"]["default"]
    self.assertEqual([r["split"] for r in per_run], [0, 1])
    self.assertEqual([round(r["auc"], 6) for r in per_run], [0.8, 0.9])
    self.assertEqual(per_run[0]["best_epoch"], 7)
    self.assertGreaterEqual(per_run[0]["wall_seconds"], 0.0)
    self.assertAlmostEqual(out["summary"]["default"]["auc"]["mean"], 0.85)
    self.assertAlmostEqual(out["summary"]["default"]["val_auc"]["mean"], 0.75)
    with open(os.path.join(workdir, "ablation.md")) as f:
      text = f.read()
    self.assertIn("| DAE-GCN | 0.800 (0.800 / 0.500) | 0.900 (0.900 / "
                  "0.500) |", text)
    self.assertIn("| Vanilla (ResNet-34) | 0.600 | 0.700 |", text)
    with open(os.path.join(workdir, "ablation.json")) as f:
      self.assertEqual(json.load(f)["per_run"]["vanilla"][1]["split"], 1)


if __name__ == "__main__":
  absltest.main()
