"""Tests for mammojax.experiments.gradnorm_toy (the GradNorm paper's toy)."""

import json
import os

from absl.testing import absltest
import ml_collections
import numpy as np

from mammojax.experiments import gradnorm_toy


class ToyTest(absltest.TestCase):
  """The paper's two-task toy (T = 2, sigma = (1, 100), alpha = 0.12)."""

  def test_toy_two_tasks(self):
    config = gradnorm_toy.ToyConfig(num_steps=2000)
    result = gradnorm_toy.run(config)
    weights = result["weights"]
    np.testing.assert_allclose(weights.sum(1), 2.0, rtol=1e-5)
    self.assertGreater(weights[-1, 0], 1.9)
    self.assertLess(weights[-1, 1], 0.1)
    self.assertLess(result["G_ratio"][-1], 2.0)

    equal = gradnorm_toy.run(
        gradnorm_toy.ToyConfig(num_steps=2000, use_gradnorm=False)
    )
    np.testing.assert_array_equal(equal["weights"], 1.0)
    self.assertGreater(equal["G_ratio"][-1], 10.0)

  def test_protocol_writes_both_summaries(self):
    workdir = self.create_tempdir().full_path
    config = ml_collections.ConfigDict()
    config.protocol = ml_collections.ConfigDict(dict(
        name="gradnorm_toy", num_steps=100, num_train=1000, num_test=200,
        sigmas=(1.0, 100.0), every=50,
    ))
    out = gradnorm_toy.run_protocol(config, workdir)
    with open(os.path.join(workdir, "results.json")) as f:
      written = json.load(f)
    self.assertEqual(written, json.loads(json.dumps(out)))
    self.assertEqual(written["config"]["num_steps"], 100)
    self.assertEqual(written["config"]["sigmas"], [1.0, 100.0])
    gn, equal = written["gradnorm"], written["equal_weights"]
    self.assertEqual(gn["trajectory"]["step"], [50, 100])
    self.assertLess(gn["max_abs_weight_sum_error"], 1e-5)
    self.assertGreater(gn["final_weights"][0], 1.0)  # The small task rises.
    self.assertEqual(equal["final_weights"], [1.0, 1.0])
    self.assertLess(gn["final_G_ratio"], equal["final_G_ratio"])

  def test_protocol_rejects_unknown_keys(self):
    config = ml_collections.ConfigDict()
    config.protocol = ml_collections.ConfigDict(
        dict(name="gradnorm_toy", steps=10)
    )
    with self.assertRaisesRegex(ValueError, r"config.protocol.*\['steps'\]"):
      gradnorm_toy.run_protocol(config, self.create_tempdir().full_path)


if __name__ == "__main__":
  absltest.main()
