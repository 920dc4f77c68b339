"""Tests for mammojax.experiments: the protocol table and its dispatch."""

import importlib
import json
import os

from absl.testing import absltest
import ml_collections

from configs import ablation as ablation_config
from configs import luminal as luminal_config
from mammojax import experiments


class ExperimentsTest(absltest.TestCase):

  def test_every_protocol_module_has_run_protocol(self):
    self.assertEqual(
        sorted(experiments.PROTOCOLS), ["ablation", "diagnet_repeats",
                                        "gradnorm_toy", "luminal_cv",
                                        "rmcg_cv"]
    )
    for name, module in experiments.PROTOCOLS.items():
      self.assertTrue(
          callable(importlib.import_module(module).run_protocol), name
      )

  def test_configs_name_their_protocol(self):
    for variant in ("protocol", "paper", "test"):
      config = luminal_config.get_config(variant)
      self.assertEqual(config.protocol.name, "luminal_cv", variant)
      self.assertEqual(experiments.get_protocol(config).__name__,
                       "mammojax.experiments.luminal")
    self.assertEqual(
        experiments.get_protocol(ablation_config.get_config("test")).__name__,
        "mammojax.experiments.ablation",
    )

  def test_run_dispatches_on_the_protocol_name(self):
    workdir = self.create_tempdir().full_path
    config = ablation_config.get_config("test")
    config.protocol.update(rows=("proposed",), num_folds=2, report_only=True)
    os.makedirs(os.path.join(workdir, "proposed", "fold1"))
    with open(os.path.join(workdir, "proposed", "fold1", "results.json"),
              "w") as f:
      json.dump({"test": {"graph": {"auc_ovo": 0.75}}}, f)
    table = experiments.run(config, workdir)
    self.assertEqual(table["proposed"]["missing_folds"], [0])
    self.assertEqual(table["proposed"]["summary"]["graph_auc_ovo"]["mean"],
                     0.75)
    self.assertTrue(os.path.exists(os.path.join(workdir, "ablation.md")))

  def test_unknown_or_missing_name_is_a_value_error(self):
    config = ml_collections.ConfigDict({"protocol": {"name": "luminal"}})
    with self.assertRaisesRegex(
        ValueError,
        r"config.protocol.name='luminal': expected one of \['ablation', "
        r"'diagnet_repeats', 'gradnorm_toy', 'luminal_cv', 'rmcg_cv'\]",
    ):
      experiments.run(config, self.create_tempdir().full_path)
    config = ml_collections.ConfigDict({"protocol": {"num_folds": 2}})
    with self.assertRaisesRegex(ValueError, "config.protocol.name=None"):
      experiments.get_protocol(config)


if __name__ == "__main__":
  absltest.main()
