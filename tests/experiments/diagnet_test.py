"""DiagNet's repeats protocol and the Fig. 3 script (no training)."""

import json
import os
import pathlib
import subprocess
import sys

from absl.testing import absltest
import numpy as np

from configs import diagnet as diagnet_configs
from mammojax.experiments import diagnet as protocol

_ROOT = pathlib.Path(__file__).resolve().parent.parent.parent


def write_repeat(run_dir, accuracy, auc, seed=0):
  """A finished repeat: results.json and test predictions."""
  os.makedirs(run_dir, exist_ok=True)
  results = {
      "test": {"pathology": {"accuracy": accuracy, "auc_ovo": auc}},
      "splits": {"train": 10, "val": 2, "test": 6},
      "diagnet": {"stage_seconds": {"augment_seconds": 2.0,
                                    "train_seconds": 3.0},
                  "discriminator_agreement": {
                      "benign": {"positive": 0.9, "negative": 0.1}}},
  }
  with open(os.path.join(run_dir, "results.json"), "w") as f:
    json.dump(results, f)
  rng = np.random.default_rng(seed)
  labels = np.array([0, 1, 0, 1, 0, 1])
  p = np.clip(labels * 0.6 + rng.uniform(0, 0.4, 6), 0, 1)
  np.savez(os.path.join(run_dir, "predictions_test.npz"),
           pathology_labels=labels, pathology_mask=np.ones(6, bool),
           pathology_probs=np.stack([1 - p, p], 1))


class DiagNetProtocolTest(absltest.TestCase):

  def test_repeat_configs(self):
    config = diagnet_configs.get_config("test")
    c = protocol.repeat_config(config, 3)
    self.assertNotIn("protocol", c)
    self.assertEqual((c.dataset.split_seed, c.seed), (3, 3))
    self.assertEqual(config.dataset.split_seed, 0)

  def test_protocol_aggregates_finished_repeats(self):
    workdir = self.create_tempdir().full_path
    config = diagnet_configs.get_config("test")
    write_repeat(os.path.join(workdir, "repeat_0"), 0.8, 0.9, seed=0)
    write_repeat(os.path.join(workdir, "repeat_1"), 0.6, 0.7, seed=1)
    summary = protocol.run_protocol(config, workdir)  # Nothing to train.
    self.assertAlmostEqual(summary["test"]["accuracy"]["mean"], 0.7)
    self.assertAlmostEqual(summary["test"]["auc"]["std"],
                           float(np.std([0.9, 0.7], ddof=1)))
    self.assertEqual(summary["stage_seconds"]["augment_seconds"], 4.0)
    with open(os.path.join(workdir, "results.json")) as f:
      self.assertEqual(json.load(f)["test"]["auc"]["values"], [0.9, 0.7])
    report = open(os.path.join(workdir, "report.md")).read()
    self.assertIn("| test accuracy | 0.7", report)
    self.assertTrue(os.path.exists(
        os.path.join(workdir, "figures", "roc_repeats.png")))

  def test_fig3_script_report_only(self):
    workdir = pathlib.Path(self.create_tempdir().full_path)
    write_repeat(workdir / "baseline" / "repeat_0", 0.5, 0.55)
    write_repeat(workdir / "npos1_nneg4_lambda1" / "repeat_0", 0.8, 0.85)
    write_repeat(workdir / "npos2_nneg2_lambda1" / "repeat_0", 0.7, 0.75)
    write_repeat(workdir / "npos1_nneg4_lambda0.5" / "repeat_0", 0.6, 0.65)
    # The best AUC of all, but without a signed graph (n+ = n- = 0): not a
    # cell to sweep lambda at.
    write_repeat(workdir / "npos0_nneg0_lambda1" / "repeat_0", 0.9, 0.95)
    run = subprocess.run(
        [sys.executable, str(_ROOT / "scripts" / "diagnet_fig3.py"),
         f"--workdir={workdir}", "--repeats=1", "--report_only",
         "--config=configs/diagnet.py:test"],
        capture_output=True, text=True, cwd=_ROOT, timeout=600, check=False,
    )
    self.assertEqual(run.returncode, 0, run.stderr[-3000:])
    table = json.loads((workdir / "fig3.json").read_text())
    # Best mean AUC of panel (a) among the cells with a signed graph.
    self.assertEqual(table["best"], [1, 4])
    cells = {r["cell"]: r for r in table["rows"]}
    # 1 baseline + 9 grid cells + 4 lambdas (lambda = 1 twice).
    self.assertLen(table["rows"], 14)
    self.assertAlmostEqual(cells["baseline"]["auc"]["mean"], 0.55)
    self.assertAlmostEqual(cells["npos0_nneg0_lambda1"]["auc"]["mean"], 0.95)
    self.assertIsNone(cells["npos0_nneg2_lambda1"]["auc"]["mean"])
    md = (workdir / "fig3.md").read_text()
    self.assertIn("| a | npos1_nneg4_lambda1 | 1 | 4 | 1 | yes | 0.800 ± "
                  "n/a | 0.850 ± n/a |", md)
    self.assertIn("| b | npos1_nneg4_lambda0.5 | 1 | 4 | 0.5 | yes |", md)
    self.assertTrue((workdir / "fig3.png").exists())


if __name__ == "__main__":
  absltest.main()
