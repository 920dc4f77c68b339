"""Tests of the luminal method: synthetic_cmmd builder, splits, losses and
transfer initialisation on the tiny config (the protocol's tests are in
tests/experiments/luminal_test.py)."""

import os
import shutil
import tempfile

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from configs import luminal as luminal_configs
from mammojax.data import pipeline
from mammojax.experiments import luminal as experiment
from mammojax.methods import luminal as luminal_method
from mammojax.training import checkpoints
from mammojax.training import loop

_FEATURES = {
    "example_id": str, "patient_id": str, "image_id": str,
    "laterality": str, "view": str,
}
_LABELS = ("calcification", "mass", "malignant", "subtype", "luminal")


def _test_config(data_dir):
  config = luminal_configs.get_config("test")
  for stage in experiment.STAGES:
    config[stage].dataset.data_dir = data_dir
    # A larger test split so per-fold test metrics differ (t-test).
    config[stage].dataset.test_fraction = 0.25
  return config


class LuminalTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tempfile.mkdtemp(prefix="luminal_test_")
    cls.config = _test_config(os.path.join(cls.root, "data"))
    cls.examples, cls.info = pipeline.load_examples(
        cls.config.pretrain.dataset
    )
    cls.workdir = os.path.join(cls.root, "protocol")
    # The transfer test starts from fold 0's pretraining.
    loop.train_and_evaluate(
        experiment.stage_config(cls.config, "pretrain", 0, cls.workdir),
        os.path.join(cls.workdir, "fold_0", "pretrain"),
        examples_and_info=(cls.examples, cls.info),
    )

  @classmethod
  def tearDownClass(cls):
    shutil.rmtree(cls.root, ignore_errors=True)
    super().tearDownClass()

  def _stage(self, stage, fold=0):
    return experiment.stage_config(self.config, stage, fold, self.workdir)

  # --------------------------------------------------------------- builder

  def test_builder_features_and_label_semantics(self):
    self.assertLen(self.examples, 40)
    vocab = self.info["vocabularies"]
    self.assertEqual(vocab["luminal"], ["non_luminal", "luminal"])
    subtypes = vocab["subtype"]
    for ex in self.examples:
      for key, kind in _FEATURES.items():
        self.assertIsInstance(ex[key], kind, key)
      self.assertEqual(ex["image"].dtype, np.uint8)
      self.assertEqual(ex["image"].shape, (64, 40))
      self.assertIn(ex["view"], ("CC", "MLO"))
      self.assertIn(ex["laterality"], ("L", "R"))
      for key in ("calcification", "mass", "malignant"):
        self.assertIn(int(ex[key]), (0, 1), key)
      self.assertTrue(ex["calcification"] or ex["mass"])  # CMMD: abnormal.
      # Subtype only on malignant images; luminal = luminal A or B.
      self.assertEqual(ex["subtype"] >= 0, bool(ex["malignant"]))
      if ex["subtype"] < 0:
        self.assertEqual(ex["luminal"], -1)
      else:
        name = subtypes[ex["subtype"]]
        self.assertEqual(
            ex["luminal"], int(name in ("luminal_a", "luminal_b")), name
        )
      # Laterality-normalised: chest wall (bright tissue) at the left.
      cols = ex["image"].astype(float).mean(0)
      self.assertGreater(cols[:5].mean(), cols[-5:].mean())
    report = self.info["build_report"]
    self.assertEqual(report["examples"], len(self.examples))
    self.assertIn("correlates", report)
    # Views of one patient share every label (one breast per patient).
    by_patient = {}
    for ex in self.examples:
      labels = tuple(int(ex[k]) for k in _LABELS)
      by_patient.setdefault(ex["patient_id"], set()).add(labels)
    self.assertTrue(all(len(v) == 1 for v in by_patient.values()))
    self.assertGreater(max(map(len, [
        [e for e in self.examples if e["patient_id"] == p]
        for p in by_patient])), 1)

  # ----------------------------------------------------------------- splits

  def test_patient_wise_splits_never_leak(self):
    tests = set()
    val_patients = []
    for fold in range(self.config.protocol.num_folds):
      for stage in ("pretrain", "transfer"):
        data = luminal_method.create_image_data(
            self._stage(stage, fold),
            examples_and_info=(self.examples, self.info),
        )
        pats = {
            k: {self.examples[i]["patient_id"] for i in v}
            for k, v in data.splits.items()
        }
        self.assertEmpty(pats["train"] & pats["val"])
        self.assertEmpty(pats["train"] & pats["test"])
        self.assertEmpty(pats["val"] & pats["test"])
        tests.add(frozenset(pats["test"]) if stage == "pretrain" else None)
        if stage == "transfer":
          # Only images with a subtype, from the pretraining's patients.
          for split, idx in data.splits.items():
            self.assertTrue(all(data.labels["luminal"][idx] >= 0))
            self.assertTrue(pats[split] <= pretrain_pats[split])
        else:
          pretrain_pats = pats
          val_patients.append(pats["val"])
    tests.discard(None)
    self.assertLen(tests, 1)  # One independent test set for every fold.
    self.assertEmpty(val_patients[0] & val_patients[1])

  def test_batches_fixed_shape_padding_and_device_axis(self):
    data = luminal_method.create_image_data(
        self._stage("transfer"), examples_and_info=(self.examples, self.info)
    )
    b = data.per_device_batch_size
    evals = list(data.eval_batches("val"))
    self.assertTrue(all(x["image"].shape == (b, 64, 40) for x in evals))
    self.assertEqual(sum(int(x["mask"].sum()) for x in evals),
                     len(data.splits["val"]))
    last = evals[-1]
    self.assertTrue(np.all(last["luminal"][~last["mask"]] == -1))
    self.assertTrue(np.all(last["index"][~last["mask"]] == -1))
    train = list(data.train_batches(0))
    self.assertTrue(all(x["mask"].all() for x in train))  # No padding.
    stacked = next(data.batches(data.splits["val"], num_devices=2))
    self.assertEqual(stacked["image"].shape, (2, b, 64, 40))
    self.assertEqual(stacked["mask"].shape, (2, b))

  # ----------------------------------------------------------------- losses

  def test_mlmc_bce_masks_unknown_labels_and_padding(self):
    config = self._stage("pretrain")
    method = luminal_method
    model = method.create_model(config, self.info["vocabularies"])
    task = luminal_method.create_task(config, model, None)
    rng = np.random.default_rng(0)
    batch = {
        "image": rng.integers(0, 256, (4, 64, 40), dtype=np.uint8),
        "mask": np.array([True, True, True, False]),
        "index": np.array([0, 1, 2, -1], np.int32),
        "calcification": np.array([1, -1, 0, 1], np.int32),
        "mass": np.array([0, 1, -1, 1], np.int32),
        "malignant": np.array([-1, -1, 1, 0], np.int32),
        "luminal": np.full(4, -1, np.int32),
    }
    variables = jax.jit(lambda r, b: model.init(r, b, train=False))(
        jax.random.key(0), batch
    )
    params = variables["params"]
    state = {"batch_stats": variables["batch_stats"]}
    logits = np.asarray(
        jax.jit(lambda v, b: model.apply(v, b, train=False))(variables, batch),
        np.float64,
    )
    loss_sums = jax.jit(
        lambda p, s, b: task.loss_sums(p, s, b, None, train=False)
    )
    sums, (_, out) = loss_sums(params, state, batch)
    norms = task.normalisers(batch)
    for k, name in enumerate(config.tasks):
      valid = batch["mask"] & (batch[name] >= 0)
      y = batch[name][valid].astype(np.float64)
      z = logits[valid, k]
      bce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
      np.testing.assert_allclose(float(sums[k]), bce.sum(), rtol=1e-4,
                                 atol=1e-5)
      self.assertEqual(float(norms[k]), valid.sum())
    outputs = task.eval_outputs(out, batch)
    for k, name in enumerate(config.tasks):
      probs = np.asarray(outputs[f"{name}_probs"])
      self.assertEqual(probs.shape, (4, 2))
      np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
      np.testing.assert_allclose(
          probs[:, 1], 1 / (1 + np.exp(-logits[:, k])), rtol=1e-4
      )
    # The padded item's labels and pixels do not change the loss.
    padded = dict(
        batch,
        calcification=np.array([1, -1, 0, 0], np.int32),
        mass=np.array([0, 1, -1, 0], np.int32),
        malignant=np.array([-1, -1, 1, 1], np.int32),
    )
    padded["image"] = batch["image"].copy()
    padded["image"][3] = 0
    sums2, _ = loss_sums(params, state, padded)
    np.testing.assert_allclose(np.asarray(sums2), np.asarray(sums),
                               rtol=1e-6)

  def test_train_step_augments_with_step_key(self):
    config = self._stage("baseline")
    method = luminal_method
    model = method.create_model(config, self.info["vocabularies"])
    task = method.create_task(config, model, None)
    images = jnp.asarray(
        np.random.default_rng(1).random((3, 64, 40)), jnp.float32
    )
    batch = {"image": (images * 255).astype(jnp.uint8)}
    a = task.images(batch, jax.random.key(0), train=True)
    b = task.images(batch, jax.random.key(0), train=True)
    c = task.images(batch, jax.random.key(5), train=True)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    self.assertFalse(np.array_equal(np.asarray(a), np.asarray(c)))
    np.testing.assert_allclose(
        np.asarray(task.images(batch, None, train=False)),
        np.asarray(batch["image"]) / 255.0, rtol=1e-6,
    )

  # --------------------------------------------------------------- transfer

  def test_transfer_loads_pretrained_weights_except_head(self):
    config = self._stage("transfer")
    method = luminal_method
    data = method.create_data(config, num_devices=1,
                              examples_and_info=(self.examples, self.info))
    model = method.create_model(config, data.vocabularies)
    task = method.create_task(config, model, data)
    import optax  # pylint: disable=g-import-not-at-top

    state = loop.create_train_state(
        config, model, task, next(iter(data.eval_batches("train"))),
        jax.random.key(3), optax.adam(1e-3), {"luminal": 2},
    )
    fresh_head = np.asarray(state.params["backbone"]["fc"]["kernel"])
    adapted = method.adapt_initial_state(config, state)
    pre = checkpoints.restore_best_variables(
        config.init_from, config_key="config.init_from"
    )
    np.testing.assert_array_equal(
        np.asarray(adapted.params["backbone"]["conv1"]["kernel"]),
        np.asarray(pre["params"]["backbone"]["conv1"]["kernel"]),
    )
    np.testing.assert_array_equal(
        np.asarray(adapted.params["backbone"]["layer4_0"]["conv2"]["kernel"]),
        np.asarray(pre["params"]["backbone"]["layer4_0"]["conv2"]["kernel"]),
    )
    np.testing.assert_array_equal(
        np.asarray(adapted.model_state["batch_stats"]["backbone"]["bn1"][
            "mean"]),
        np.asarray(pre["batch_stats"]["backbone"]["bn1"]["mean"]),
    )
    self.assertEqual(pre["params"]["backbone"]["fc"]["kernel"].shape[1], 3)
    head = np.asarray(adapted.params["backbone"]["fc"]["kernel"])
    self.assertEqual(head.shape[1], 2)
    np.testing.assert_array_equal(head, fresh_head)  # New, not copied.
    with self.assertRaisesRegex(FileNotFoundError, "init_from"):
      config.init_from = os.path.join(self.root, "missing")
      method.adapt_initial_state(config, state)


if __name__ == "__main__":
  absltest.main()
