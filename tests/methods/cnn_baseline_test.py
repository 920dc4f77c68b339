"""Tests of the CNN baselines (image and patch level) on the shared trainer."""

import json
import os
import tempfile

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from configs import cnn_baseline as cnn_configs
from mammojax.data import splits
from mammojax.methods import cnn_baseline
from mammojax.models.cnn import classifier
from mammojax.training import loop
from tests.training import fake_data


def _examples():
  examples, info = fake_data.make_examples(40, seed=3)
  # A few unknown morphologies: left out of the patch level.
  examples[0]["morphology"] = examples[0]["morphology"].copy()
  examples[0]["morphology"][0] = -1
  examples[5]["morphology"] = np.full_like(examples[5]["morphology"], -1)
  return examples, info


def _config(level):
  config = cnn_configs.get_config("test")
  config.num_devices = 1
  config.baseline.level = level
  return config


class CNNBaselineTest(absltest.TestCase):

  def test_configs(self):
    for model in cnn_configs.MODELS:
      for level, task in (("image", "graph"), ("patch", "node")):
        config = cnn_configs.get_config(f"{model}_{level}")
        self.assertEqual(config.method, "cnn_baseline")
        self.assertEqual(config.baseline.model, model)
        self.assertEqual(cnn_baseline.task_of(config), task)
    with self.assertRaisesRegex(ValueError, "resnet18_patch"):
      cnn_configs.get_config("resnet18_cluster")

  def test_bad_level_names_the_key(self):
    config = _config("cluster")
    with self.assertRaisesRegex(ValueError, r"config\.baseline\.level"):
      loop.train_and_evaluate(
          config, self.create_tempdir().full_path,
          examples_and_info=_examples(),
      )
    config = _config("patch")
    config.tasks = ("graph",)
    with self.assertRaisesRegex(ValueError, r"config\.tasks"):
      cnn_baseline.create_baseline_data(
          config, examples_and_info=_examples()
      )

  def test_patch_items_follow_cluster_splits(self):
    config = _config("patch")
    examples, info = _examples()
    data = cnn_baseline.create_baseline_data(
        config, examples_and_info=(examples, info)
    )
    clusters = splits.cluster_splits(config, examples)
    patients = {}
    for split, idx in data.splits.items():
      owners = data.example_index[idx]
      self.assertTrue(np.all(np.isin(owners, clusters[split])))
      expected = sum(
          int(np.sum(np.asarray(examples[i]["morphology"]) >= 0))
          for i in clusters[split]
      )
      self.assertLen(idx, expected)
      patients[split] = {examples[i]["patient_id"] for i in owners}
      # Eval: every labelled patch exactly once, fixed shapes, padding masked.
      seen = []
      for batch in data.eval_batches(split):
        self.assertEqual(batch["image"].shape, (config.batch_size, 32, 32))
        seen.extend(batch["index"][batch["mask"]].tolist())
        self.assertTrue(np.all(batch["label"][~batch["mask"]] == -1))
      self.assertEqual(sorted(seen), idx.tolist())
    self.assertEmpty(patients["train"] & patients["test"])
    self.assertEmpty(patients["val"] & patients["test"])
    # Training batches are whole (no padding) and labels match the patches.
    batches = list(data.train_batches(0))
    for batch in batches:
      self.assertTrue(np.all(batch["mask"]))
      self.assertTrue(np.all(np.isin(batch["index"], data.splits["train"])))
    i = int(batches[0]["index"][0])
    ex = examples[data.example_index[i]]
    self.assertEqual(
        batches[0]["label"][0], ex["morphology"][data.node_index[i]]
    )

  def test_image_level_trains_end_to_end(self):
    config = _config("image")
    examples, info = _examples()
    workdir = self.create_tempdir().full_path
    results = loop.train_and_evaluate(
        config, workdir, examples_and_info=(examples, info)
    )
    with open(os.path.join(workdir, "results.json")) as f:
      saved = json.load(f)
    test = saved["test"]
    self.assertEqual(set(test) & {"graph", "node"}, {"graph"})
    self.assertTrue(np.isfinite(test["graph"]["auc_ovo"]))
    self.assertEqual(
        test["graph"]["class_names"], info["vocabularies"]["distribution"]
    )
    clusters = splits.cluster_splits(config, examples)
    self.assertEqual(test["graph"]["num_samples"], len(clusters["test"]))
    self.assertEqual(results["splits"]["test"], len(clusters["test"]))
    self.assertTrue(os.path.exists(os.path.join(workdir, "report.md")))
    self.assertNotIn("report_error", results)

  def test_patch_level_trains_end_to_end(self):
    config = _config("patch")
    examples, info = _examples()
    workdir = self.create_tempdir().full_path
    results = loop.train_and_evaluate(
        config, workdir, examples_and_info=(examples, info)
    )
    test = results["test"]
    self.assertEqual(set(test) & {"graph", "node"}, {"node"})
    self.assertTrue(np.isfinite(test["node"]["auc_ovo"]))
    self.assertEqual(
        test["node"]["class_names"], info["vocabularies"]["morphology"]
    )
    clusters = splits.cluster_splits(config, examples)
    for split in ("val", "test"):
      labelled = sum(
          int(np.sum(np.asarray(examples[i]["morphology"]) >= 0))
          for i in clusters[split]
      )
      self.assertEqual(results[split]["node"]["num_samples"], labelled)
    with open(os.path.join(workdir, "report.md")) as f:
      self.assertIn("patch level", f.read())

  def test_every_backbone_builds_on_one_channel_patches(self):
    for name in cnn_configs.MODELS:
      model = classifier.ImageClassifier(backbone=name, num_outputs=5)
      x = jnp.zeros((2, 32, 32), jnp.float32)
      shapes = jax.eval_shape(
          lambda m=model: m.init(jax.random.key(0), x, train=False)
      )
      logits = jax.eval_shape(
          lambda v, m=model: m.apply(v, x, train=False), shapes
      )
      self.assertEqual(logits.shape, (2, 5), name)


if __name__ == "__main__":
  absltest.main()
