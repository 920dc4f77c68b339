"""DiagNet on the shared trainer: data, one training step, end to end."""

import json
import os

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from configs import diagnet as diagnet_configs
from mammojax.methods import diagnet
from mammojax.objectives import signed_graph as sg
from mammojax.training import loop
from mammojax.training import steps as steps_lib

VOCAB = {"pathology": ["benign", "malignant"],
         "mass_shape": ["round", "oval", "lobulated", "irregular"],
         "mass_margin": ["circumscribed", "obscured", "microlobulated",
                         "ill_defined", "spiculated"]}


def mass_examples(num_patients=16, size=32, seed=0):
  """Mass-ROI examples (the synthetic_masses contract), CC + MLO each.

  Benign masses are small round discs, malignant ones large and elongated.
  """
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[:size, :size] / size - 0.5
  examples = []
  for p in range(num_patients):
    malignant = p % 2
    for view in ("CC", "MLO"):
      cy, cx = rng.uniform(-0.08, 0.08, 2)
      ry, rx = (0.14, 0.14) if not malignant else (0.3, 0.16)
      r = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
      img = 0.3 + 0.5 * (r < 1) + rng.normal(0, 0.05, (size, size))
      crop = np.clip(img * 255, 0, 255).astype(np.uint8)
      examples.append({
          "crop": crop, "crop_mask": ((r < 1) * 255).astype(np.uint8),
          "pathology": malignant, "malignant": malignant,
          "mass_shape": 3 if malignant else 0, "mass_margin": -1,
          "patient_id": f"P{p:03d}", "example_id": f"P{p:03d}_{view}",
          "image_id": f"P{p:03d}_{view}", "view": view, "laterality": "L",
          "source_split": "full",
      })
  return examples, {"vocabularies": VOCAB, "build_report": {"skipped": {}}}


def _config():
  config = diagnet_configs.get_config("test")
  config.num_devices = 1
  config.dataset.val_fraction = 0.2
  return config


class DiagNetTest(absltest.TestCase):

  def test_configs(self):
    paper = diagnet_configs.get_config("paper")
    self.assertEqual(paper.diagnet.image_size, 224)
    self.assertEqual(tuple(paper.diagnet.model.entry_features),
                     (128, 256, 728))
    self.assertEqual(paper.diagnet.model.num_middle_blocks, 7)
    self.assertEqual(paper.diagnet.model.fc_features, 1024)
    self.assertEqual(paper.diagnet.augment.num_candidates, 200)
    default = diagnet_configs.get_config()
    self.assertEqual((default.diagnet.graph.n_pos, default.diagnet.graph.n_neg,
                      default.diagnet.graph.weight), (1, 4, 1.0))
    self.assertEqual(default.dataset.name, "synthetic_masses")
    with self.assertRaisesRegex(ValueError, "unknown variant"):
      diagnet_configs.get_config("huge")

  def test_data_splits_flips_and_augmentation(self):
    config = _config()
    examples, info = mass_examples()
    data = diagnet.create_diagnet_data(config, examples_and_info=(examples,
                                                                  info))
    patients = {
        k: {examples[i]["patient_id"] for i in v}
        for k, v in data.example_splits.items()
    }
    self.assertEmpty(patients["train"] & patients["test"])
    self.assertEmpty(patients["train"] & patients["val"])
    n = data.num_original_train
    self.assertEqual(n, len(data.example_splits["train"]))
    # Flips (lr): 2 n originals; +20 % / +20 % of them per class.
    self.assertEqual(data.composition["original"], 2 * n)
    groups = data.labels["group"][data.splits["train"]]
    kinds = data.labels["kind"][data.splits["train"]]
    for c in (0, 1):
      flipped = int(np.sum((groups == c) & (kinds == sg.ORIGINAL)))
      for kind in (sg.POSITIVE, sg.NEGATIVE):
        self.assertEqual(int(np.sum((groups == c) & (kinds == kind))),
                         round(0.2 * flipped))
    # Negative neighbours carry no J_l label by default.
    labels = data.labels["label"][data.splits["train"]]
    self.assertTrue(np.all(labels[kinds == sg.NEGATIVE] == -1))
    np.testing.assert_array_equal(labels[kinds != sg.NEGATIVE],
                                  groups[kinds != sg.NEGATIVE])
    # Flipped copy of item 0 is the left-right mirror.
    np.testing.assert_allclose(data.images[n], data.images[0][:, ::-1])
    # Val / test: originals only, one per example.
    for split in ("val", "test"):
      idx = data.splits[split]
      self.assertLen(idx, len(data.example_splits[split]))
      self.assertTrue(np.all(data.labels["kind"][idx] == sg.ORIGINAL))
    batch = next(iter(data.eval_batches("test")))
    self.assertEqual(batch["image"].shape, (config.batch_size, 32, 32))
    self.assertEqual(batch["feature"].shape, (config.batch_size, 64))

  def test_one_training_step_logs_signed_graph_term(self):
    config = _config()
    examples, info = mass_examples()
    data = diagnet.create_data(config, num_devices=1,
                               examples_and_info=(examples, info))
    model = diagnet.create_model(config, data.vocabularies)
    task = diagnet.create_task(config, model, data)
    self.assertEqual(steps_lib.term_names(task),
                     ("pathology", "signed_graph"))
    batch = next(iter(data.train_batches(0)))
    state = loop.create_train_state(config, model, task, batch,
                                    jax.random.key(0), None,
                                    {"pathology": 2})
    train_step, _ = steps_lib.compile_steps(
        task, gradnorm_alpha=0.0, gradnorm_tx=None, num_devices=1
    )
    # J_g of the step is eq. 4 over the batch graph / anchors, recomputed.
    sums, _ = task.loss_sums(state.params, state.model_state, batch, None,
                             train=False)
    _, h = model.apply({"params": state.params, **state.model_state},
                       batch["image"], train=False)
    phi = sg.signed_graph(
        sg.angular_distance_matrix(batch["feature"], batch["feature"]),
        jnp.asarray(batch["group"]), jnp.asarray(batch["kind"]),
        jnp.asarray(batch["mask"]), n_pos=1, n_neg=4,
    )
    self.assertAlmostEqual(float(sums[1]), float(sg.regulariser(h, phi)),
                           places=3)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    new_state, metrics = train_step(state, batch, jax.random.key(1))
    self.assertEqual(int(new_state.step), 1)
    for key in ("loss", "loss_pathology", "loss_signed_graph"):
      self.assertTrue(np.isfinite(float(metrics[key])), key)
    self.assertGreater(float(metrics["loss_signed_graph"]), 0.0)
    # loss = J_l + lambda J_g.
    self.assertAlmostEqual(
        float(metrics["loss"]),
        float(metrics["loss_pathology"]) + float(metrics["loss_signed_graph"]),
        places=4,
    )
    moved = jax.tree_util.tree_map(
        lambda a, b: float(np.abs(np.asarray(a) - b).max()),
        new_state.params, before,
    )
    self.assertGreater(max(jax.tree_util.tree_leaves(moved)), 0.0)

  def test_end_to_end_writes_results_and_report(self):
    # The one-step test's config: its compiled train step is reused.
    config = _config()
    examples, info = mass_examples()
    workdir = self.create_tempdir().full_path
    results = loop.train_and_evaluate(config, workdir,
                                      examples_and_info=(examples, info))
    self.assertNotIn("report_error", results)
    with open(os.path.join(workdir, "results.json")) as f:
      saved = json.load(f)
    test = saved["test"]["pathology"]
    self.assertEqual(test["class_names"], ["benign", "malignant"])
    self.assertTrue(np.isfinite(test["accuracy"]))
    self.assertIn("loss_signed_graph", saved["test"])
    self.assertIn("augment_seconds", saved["diagnet"]["stage_seconds"])
    for name in ("report.md", "figures/augmentation.png",
                 "figures/roc_pathology.png", "predictions_test.npz"):
      self.assertTrue(os.path.exists(os.path.join(workdir, name)), name)

  def test_dihedral_orientations_and_cosine_schedule(self):
    x = np.arange(2 * 16, dtype=np.float32).reshape(2, 4, 4)
    x = np.repeat(x, 4, axis=0)
    k = np.arange(8)
    out = np.asarray(diagnet.dihedral(jnp.asarray(x), jnp.asarray(k)))
    for i in range(8):
      ref = x[i][:, ::-1] if k[i] >= 4 else x[i]
      np.testing.assert_array_equal(out[i], np.rot90(ref, k[i] % 4))
    # The 8 orientations of one asymmetric ROI are distinct.
    one = np.asarray(diagnet.dihedral(jnp.asarray(np.repeat(x[:1], 8, 0)),
                                      jnp.asarray(k)))
    self.assertLen({o.tobytes() for o in one}, 8)
    with self.assertRaisesRegex(ValueError, "square"):
      diagnet.dihedral(jnp.zeros((2, 4, 5)), jnp.zeros(2, jnp.int32))
    config = _config()
    config.num_epochs = 3
    config.diagnet.steps_per_epoch = 10
    lr = diagnet.learning_rate(config)
    self.assertAlmostEqual(float(lr(0)), config.learning_rate, places=7)
    self.assertAlmostEqual(float(lr(15)), config.learning_rate / 2, places=6)
    self.assertAlmostEqual(float(lr(30)), 0.0, places=7)
    config.diagnet.lr_schedule = "constant"
    self.assertEqual(diagnet.learning_rate(config), config.learning_rate)
    config.diagnet.lr_schedule = "step"
    with self.assertRaisesRegex(ValueError, r"config\.diagnet\.lr_schedule"):
      diagnet.validate_config(config)

  def test_bad_input(self):
    examples, info = mass_examples(num_patients=6)
    one_class = [dict(ex, pathology=1) for ex in examples]
    with self.assertRaisesRegex(ValueError, r"config\.dataset\.name.*1 class"):
      diagnet.create_diagnet_data(_config(), examples_and_info=(one_class,
                                                                info))
    config = _config()
    config.diagnet.image_size = 64
    with self.assertRaisesRegex(ValueError,
                                r"config\.diagnet\.image_size=64 is larger"):
      diagnet.create_diagnet_data(config, examples_and_info=(examples, info))
    config = _config()
    config.diagnet.flips = ("lr", "rot90")
    with self.assertRaisesRegex(ValueError, r"config\.diagnet\.flips"):
      diagnet.validate_config(config)
    # Unknown pathologies are left out and counted.
    partly = [dict(ex) for ex in mass_examples()[0]]
    partly[0]["pathology"] = -1
    data = diagnet.create_diagnet_data(_config(), examples_and_info=(partly,
                                                                     info))
    self.assertEqual(data.skipped["unknown pathology"], 1)


if __name__ == "__main__":
  absltest.main()
