"""Tests of the luminal paper's protocol (mammojax.experiments.luminal)."""

import json
import os
import shutil
import tempfile

from absl.testing import absltest
from scipy import stats

from mammojax.data import pipeline
from mammojax.experiments import luminal as experiment
from tests.methods.luminal_test import _test_config

_SYNTHETIC_NOTE = "Synthetic CMMD-like data"


class LuminalProtocolTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="luminal_protocol_test_")
    cls.config = _test_config(os.path.join(cls.root, "data"))
    cls.examples, cls.info = pipeline.load_examples(
        cls.config.pretrain.dataset
    )
    cls.workdir = os.path.join(cls.root, "protocol")
    cls.summary = experiment.run_protocol(
        cls.config, cls.workdir, examples_and_info=(cls.examples, cls.info)
    )

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def test_paired_ttest_matches_scipy(self):
    a, b = [0.6, 0.7, 0.65, 0.62], [0.5, 0.55, 0.6, 0.52]
    out = experiment.paired_ttest(a, b)
    ref = stats.ttest_rel(a, b)
    self.assertAlmostEqual(out["p_value"], ref.pvalue)
    self.assertAlmostEqual(out["t"], ref.statistic)
    self.assertIsNone(experiment.paired_ttest([1, 2], [0, 1])["p_value"])

  def test_protocol_writes_results_report_and_gradcams(self):
    with open(os.path.join(self.workdir, "results.json")) as f:
      results = json.load(f)
    folds = self.config.protocol.num_folds
    self.assertEqual(results["folds"], list(range(folds)))
    for stage in experiment.COMPARED:
      for metric in ("f1_luminal", "f1_non_luminal", "macro_f1", "auc"):
        cell = results["luminal"][stage][metric]
        self.assertLen(cell["values"], folds)
        self.assertIn("mean", cell)
        self.assertIn("std", cell)
      self.assertIsNotNone(results["luminal"][stage]["macro_f1"]["mean"])
    for metric in ("macro_f1", "auc"):
      t = results["ttest"][metric]
      self.assertEqual(t["n"], folds)
      if t["p_value"] is None:
        self.assertIn("note", t)
      else:
        self.assertBetween(t["p_value"], 0.0, 1.0)
    self.assertIn("f1_malignant", results["mlmc"])
    report = open(os.path.join(self.workdir, "report.md")).read()
    self.assertIn("| macro_f1 |", report)
    self.assertIn("p-value", report)
    self.assertIn("±", report)
    for name in ("roc_transfer_vs_baseline.png",):
      self.assertTrue(
          os.path.exists(os.path.join(self.workdir, "figures", name))
      )
    cams = os.listdir(os.path.join(self.workdir, "figures", "gradcam"))
    self.assertTrue(any(c.startswith("transfer_gradcam_") for c in cams))
    self.assertTrue(any(c.startswith("pretrain_gradcam_") for c in cams))
    for fold in range(folds):
      for stage in experiment.STAGES:
        run = os.path.join(self.workdir, f"fold_{fold}", stage)
        self.assertTrue(os.path.exists(os.path.join(run, "results.json")))
        self.assertTrue(os.path.exists(os.path.join(run, "report.md")))
    # Finished stages are not trained again (resumable protocol).
    again = experiment.run_protocol(
        self.config, self.workdir,
        examples_and_info=(self.examples, self.info),
    )
    self.assertEqual(again["run"]["stages_trained_now"],
                     {s: 0 for s in experiment.STAGES})
    self.assertEqual(again["luminal"], json.loads(json.dumps(
        results["luminal"])))

  def test_synthetic_caveat_only_for_synthetic_data(self):
    # The protocol ran on synthetic_cmmd: its report says so.
    self.assertEqual(self.config.pretrain.dataset.name, "synthetic_cmmd")
    self.assertTrue(self.summary["notes"][0].startswith(_SYNTHETIC_NOTE))
    report = open(os.path.join(self.workdir, "report.md")).read()
    self.assertIn(_SYNTHETIC_NOTE, report)
    mlmc = {"auc_malignant": {"mean": 0.9}}
    notes = experiment.protocol_notes(self.config, [0, 1], mlmc)
    self.assertLen(notes, 1)
    self.assertTrue(notes[0].startswith(_SYNTHETIC_NOTE))
    # Real CMMD: no synthetic-data caveat (and nothing else to say here).
    real = _test_config("/data")
    for stage in experiment.STAGES:
      real[stage].dataset.name = "cmmd"
    self.assertEqual(experiment.protocol_notes(real, [0, 1], mlmc), [])
    notes = experiment.protocol_notes(
        real, [0], {"auc_malignant": {"mean": 0.55}}
    )
    self.assertLen(notes, 2)
    self.assertFalse(any(_SYNTHETIC_NOTE in n for n in notes))
    self.assertIn("one fold only", notes[0])
    self.assertIn("near chance (best mean test AUC 0.550)", notes[1])


if __name__ == "__main__":
  absltest.main()
