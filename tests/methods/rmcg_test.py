"""Tests of the RMCG method: graph, attention, loss, augmentation, one step."""

import json
import os

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from configs import rmcg as rmcg_configs
from mammojax.data import synthetic_histology as sh
from mammojax.experiments import rmcg as rmcg_protocol
from mammojax.methods import rmcg
from mammojax.models import rmcg as rmcg_model
from mammojax.reporting import rmcg as rmcg_report
from mammojax.training import loop
from mammojax.training import validation


def tiles(size=64, patients_per_grade=2, tiles_per_patient=2):
  """In-memory Databiox-like examples from the synthetic generator."""
  examples = []
  for p in sh.make_patients(patients_per_grade, seed=0):
    for k in range(1, tiles_per_patient + 1):
      rgb, _ = sh.render_tile(p, "40x", k, size=(size, size), seed=0)
      examples.append({"example_id": f"{p.patient_id}_{k}",
                       "patient_id": p.patient_id, "image": rgb,
                       "grade": p.grade - 1, "magnification": "40x"})
  info = {"vocabularies": {"grade": ["grade_1", "grade_2", "grade_3"]},
          "build_report": {}}
  return examples, info


class GraphAndAttentionTest(absltest.TestCase):

  def test_mutual_information_graph(self):
    rng = np.random.default_rng(0)
    base = rng.normal(size=(64,))
    feats = np.stack([base, base * 2 + 1, rng.normal(size=64),
                      -base, rng.normal(size=64)]).astype(np.float32)
    mi = np.asarray(rmcg_model.mutual_information(jnp.asarray(feats), 4))
    # Monotone copies share all information: MI = log 4 (uniform bins).
    np.testing.assert_allclose(mi[0, 1], np.log(4), rtol=1e-5)
    np.testing.assert_allclose(mi[0, 3], np.log(4), rtol=1e-5)
    self.assertLess(mi[0, 2], 0.5 * np.log(4))
    np.testing.assert_allclose(mi, mi.T, atol=1e-6)
    s, r, top = rmcg_model.mi_topk_graph(jnp.asarray(feats), 2, 4)
    s, r = np.asarray(s), np.asarray(r)
    self.assertEqual(s.shape, (10,))
    self.assertFalse(np.any(s == r))
    self.assertEqual(set(s[r == 0]), {1, 3})
    self.assertEqual(np.bincount(r).tolist(), [2] * 5)
    with self.assertRaisesRegex(ValueError, "config.model.top_k=5"):
      rmcg_model.mi_topk_graph(jnp.asarray(feats), 5, 4)

  def test_every_kind_builds(self):
    x = jnp.zeros((2, 64, 64, 3))
    for kind in rmcg_model.KINDS:
      model = rmcg_model.GradeClassifier(
          kind=kind, stage_sizes=(1, 1, 1, 1), hidden=8, heads=2, top_k=2,
          alexnet_hidden=16)
      variables = jax.eval_shape(
          lambda m=model: m.init(jax.random.key(0), x, train=False))
      out = jax.eval_shape(
          lambda v, m=model: m.apply(v, x, train=False), variables)
      self.assertEqual(out.shape, (2, 3), kind)
      kernel = rmcg_model.head_kernel(variables["params"], kind)
      self.assertEqual(kernel.shape[-1], 3, kind)
      params = variables["params"]
      self.assertEqual("channel_attention" in params, kind == "rmcg", kind)
      self.assertEqual("pool" in params, kind == "rmcg", kind)

  def test_channel_attention_mixes_channels(self):
    mod = rmcg_model.MultiChannelAttention()
    x = jax.random.normal(jax.random.key(0), (1, 2, 2, 6))
    v = jax.jit(mod.init)(jax.random.key(1), x)
    apply = jax.jit(mod.apply)
    y = apply(v, x)
    self.assertEqual(y.shape, x.shape)
    # Changing channel 0 changes the other channels' outputs (cross-channel).
    x2 = x.at[..., 0].add(3.0)
    delta = jnp.abs(apply(v, x2) - y)[..., 1:]
    self.assertGreater(float(delta.max()), 1e-3)

  def test_augment_rotates_and_shifts(self):
    img = jnp.arange(8 * 8 * 3, dtype=jnp.float32).reshape(1, 8, 8, 3)
    images = jnp.repeat(img, 32, 0)
    rotated = jax.jit(rmcg.histology_augment(0.0))(images, jax.random.key(0))
    found = set()
    for out in np.asarray(rotated):
      for k in range(4):
        if np.array_equal(out, np.rot90(np.asarray(img[0]), k)):
          found.add(k)
    self.assertEqual(found, {0, 1, 2, 3})
    shifted = jax.jit(rmcg.histology_augment(0.25))(images,
                                                    jax.random.key(1))
    self.assertEqual(shifted.shape, images.shape)
    self.assertGreater(len({np.asarray(s).tobytes() for s in shifted}), 8)


class MetricsTest(absltest.TestCase):

  def test_eq_8_to_11(self):
    cm = [[5, 1, 0], [2, 3, 1], [0, 0, 0]]
    m = rmcg_report.grade_metrics({"confusion_matrix": cm})
    self.assertAlmostEqual(m["accuracy"], 8 / 12)
    self.assertAlmostEqual(m["precision"], (5 / 7 + 3 / 4 + 0) / 3)
    self.assertAlmostEqual(m["recall"], (5 / 6 + 3 / 6 + 0) / 3)
    self.assertAlmostEqual(m["f1"], (10 / 13 + 6 / 10 + 0) / 3)


class TrainingTest(absltest.TestCase):

  def test_configs(self):
    for variant in ("default", "table1", "paper", "test",
                    *rmcg_configs.MODELS):
      config = rmcg_configs.get_config(variant)
      self.assertEqual(config.method, "rmcg")
      for model in config.protocol.models:
        run = rmcg_protocol.run_config(config, model, 0)
        self.assertIsNone(validation.validate_config(run, rmcg))
        run.model.hidden = 6  # Not a multiple of the 4 heads.
        run.model.heads = 4
        if model in ("resnet18_gat", "rmcg"):
          with self.assertRaisesRegex(ValueError, r"config\.model\.hidden"):
            validation.validate_config(run, rmcg)
    self.assertEqual(tuple(rmcg_configs.get_config("table1").protocol.models),
                     rmcg_model.KINDS)
    with self.assertRaisesRegex(ValueError, "unknown variant 'vgg'"):
      rmcg_configs.get_config("vgg")

  def test_splits_are_patient_wise_folds(self):
    examples, info = tiles(size=32, patients_per_grade=3, tiles_per_patient=1)
    config = rmcg_configs.get_config("test")
    config.augment.enabled = False
    tested = []
    for fold in range(2):
      config.dataset.fold = fold
      data = rmcg.create_grade_data(config, examples_and_info=(examples,
                                                                info))
      pids = {k: set(data.patient_ids[v]) for k, v in data.splits.items()}
      self.assertFalse(pids["train"] & pids["test"])
      self.assertFalse(pids["val"] & pids["test"])
      self.assertFalse(pids["train"] & pids["val"])
      tested += sorted(pids["test"])
    self.assertCountEqual(tested, {e["patient_id"] for e in examples})

  def test_one_step_and_eq7_loss(self):
    examples, info = tiles()
    config = rmcg_configs.get_config("test")
    del config["protocol"]
    config.num_epochs = 1
    config.batch_size = 8  # 1 step on the 8 training tiles.
    config.l2_head = 0.5
    workdir = self.create_tempdir().full_path
    results = loop.train_and_evaluate(config, workdir,
                                      examples_and_info=(examples, info))
    test = results["test"]["grade"]
    self.assertEqual(test["num_samples"], 6)  # 3 test patients x 2 tiles.
    with open(os.path.join(workdir, "results.json")) as f:
      self.assertIn("test", json.load(f))
    self.assertTrue(os.path.exists(os.path.join(workdir, "report.md")))
    # Eq. 7: the auxiliary term is (lambda / 2) ||w_head||^2 of the state.
    data = rmcg.create_grade_data(config, examples_and_info=(examples, info))
    model = rmcg.create_model(config, data.vocabularies)
    task = rmcg.create_task(config, model, data)
    batch = next(iter(data.eval_batches("test")))
    variables = model.init(jax.random.key(0), batch["image"][:2],
                           train=False)
    params = variables.pop("params")
    sums, _ = task.loss_sums(params, dict(variables), batch, None,
                             train=False)
    w = params["head"]["kernel"]
    self.assertAlmostEqual(float(sums[1]),
                           0.25 * float(jnp.sum(w * w)), places=5)
    self.assertEqual(task.normalisers(batch).shape, (2,))
    self.assertEqual(float(task.normalisers(batch)[1]), 1.0)
    losses = results["test"]
    self.assertIn("l2_head", json.dumps(losses))


if __name__ == "__main__":
  absltest.main()
