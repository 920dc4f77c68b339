"""End-to-end tests of the MT-GCN training loop on small data."""

import json
import os
import pathlib

from absl.testing import absltest
import jax
import numpy as np

from configs import mtgcn
from mammojax.data import graph_data
from mammojax.methods import mtgcn as mtgcn_method
from mammojax.training import checkpoints as ckpt_lib
from mammojax.training import loop
from mammojax.training import steps as steps_lib
from tests.training import checkpoints_test
from tests.training import fake_data


def _config(**overrides):
  config = mtgcn.get_config("test")
  config.num_devices = 1
  config.model.patch_norm = "layer"
  config.model.dropout = 0.0
  config.num_epochs = 2
  config.early_stopping_patience = 0
  for key, value in overrides.items():
    target = config
    *path, last = key.split(".")
    for p in path:
      target = target[p]
    target[last] = value
  return config


def _jsonl(path):
  with open(path) as f:
    return [json.loads(line) for line in f]


class LoopTest(absltest.TestCase):

  def test_one_compile_per_budget_and_finite_step(self):
    config = _config()
    data = graph_data.create_graph_data(
        config, examples_and_info=fake_data.make_examples(24)
    )
    model = loop.create_model(config, data.vocabularies)
    task = mtgcn_method.MTGCNTask(
        model, tasks=config.tasks, graph_types=config.graph.types
    )
    import optax  # pylint: disable=g-import-not-at-top

    gn_tx = optax.adam(1e-3)
    batches = list(data.train_batches(0))
    self.assertGreater(len(batches), 1)
    state = loop.create_train_state(
        config, model, task, batches[0], jax.random.key(0), gn_tx,
        {"node": 5, "graph": 5},
    )
    train_fn, eval_fn = steps_lib.compile_steps(
        task, gradnorm_alpha=1.5, gradnorm_tx=gn_tx, num_devices=1
    )
    rng = jax.random.key(1)
    for batch in batches:
      state, metrics = train_fn(state, batch, rng)
      self.assertTrue(np.isfinite(float(metrics["loss"])))
    self.assertEqual(train_fn._cache_size(), 1)  # pylint: disable=protected-access
    self.assertEqual(int(state.step), len(batches))
    weights = np.asarray(state.gradnorm.weights)
    np.testing.assert_allclose(weights.sum(), 2.0, rtol=1e-5)
    out = eval_fn(state, batches[0])
    probs = np.asarray(out["node_probs"])[np.asarray(out["node_mask"])]
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-5)

  def test_four_devices_match_one_device(self):
    self.assertGreaterEqual(jax.local_device_count(), 4)
    examples = fake_data.make_examples(24)
    results = {}
    for n in (1, 4):
      workdir = self.create_tempdir().full_path
      config = _config(num_devices=n, num_epochs=1, batch_size=8)
      loop.train_and_evaluate(config, workdir, examples_and_info=examples)
      results[n] = _jsonl(os.path.join(workdir, "metrics.jsonl"))
    train1 = [r for r in results[1] if "train/loss" in r]
    train4 = [r for r in results[4] if "train/loss" in r]
    self.assertEqual(len(train1), len(train4))
    self.assertGreater(len(train1), 1)
    for a, b in zip(train1, train4):
      self.assertEqual(a["step"], b["step"])
      for key in ("train/loss", "train/loss_node", "train/loss_graph",
                  "train/weight_node"):
        np.testing.assert_allclose(a[key], b[key], rtol=2e-4, err_msg=key)
    val1 = [r for r in results[1] if "val/loss" in r][-1]
    val4 = [r for r in results[4] if "val/loss" in r][-1]
    np.testing.assert_allclose(val1["val/loss"], val4["val/loss"], rtol=2e-4)

  def test_resume_reproduces_uninterrupted_run(self):
    examples = fake_data.make_examples(24)
    straight = self.create_tempdir().full_path
    loop.train_and_evaluate(
        _config(num_epochs=3), straight, examples_and_info=examples
    )
    resumed = self.create_tempdir().full_path
    loop.train_and_evaluate(
        _config(num_epochs=1), resumed, examples_and_info=examples
    )
    loop.train_and_evaluate(
        _config(num_epochs=3), resumed, examples_and_info=examples
    )
    a = [r for r in _jsonl(os.path.join(straight, "metrics.jsonl"))
         if "val/loss" in r]
    b = [r for r in _jsonl(os.path.join(resumed, "metrics.jsonl"))
         if "val/loss" in r]
    self.assertEqual([r["epoch"] for r in a], [0, 1, 2])
    self.assertEqual([r["epoch"] for r in b], [0, 1, 2])
    for ra, rb in zip(a, b):
      self.assertEqual(ra["step"], rb["step"])
      np.testing.assert_allclose(ra["val/loss"], rb["val/loss"], rtol=1e-6)
      np.testing.assert_allclose(
          ra["train/epoch_loss"], rb["train/epoch_loss"], rtol=1e-6
      )

  def test_resume_after_damaged_newest_checkpoint(self):
    examples = fake_data.make_examples(24)
    straight = self.create_tempdir().full_path
    expected = loop.train_and_evaluate(
        _config(), straight, examples_and_info=examples
    )
    workdir = self.create_tempdir().full_path
    loop.train_and_evaluate(_config(), workdir, examples_and_info=examples)
    latest = os.path.join(workdir, "checkpoints", "latest")
    steps = sorted(int(s) for s in os.listdir(latest) if s.isdigit())
    self.assertLen(steps, 2)  # Epochs 0 and 1.
    self.assertGreater(
        checkpoints_test.damage_step(os.path.join(latest, str(steps[1]))), 0
    )
    with self.assertLogs(level="INFO") as logs:
      results = loop.train_and_evaluate(
          _config(), workdir, examples_and_info=examples
      )
    log = "\n".join(logs.output)
    self.assertRegex(
        log, rf"checkpoint .*latest/{steps[1]} cannot be restored"
    )
    self.assertIn(f"resumed from epoch 0 (step {steps[0]})", log)
    self.assertTrue(os.path.isdir(os.path.join(
        workdir, "checkpoints", "damaged", f"latest-{steps[1]}")))
    self.assertEqual(results["meta"], expected["meta"])
    for split in ("val", "test"):
      np.testing.assert_allclose(
          results[split]["loss"], expected[split]["loss"], rtol=1e-6
      )
      self.assertEqual(results[split]["graph"], expected[split]["graph"])

  def test_non_finite_loss_raises_and_keeps_last_good_checkpoint(self):
    examples, info = fake_data.make_examples(24)
    workdir = self.create_tempdir().full_path
    loop.train_and_evaluate(
        _config(num_epochs=1), workdir, examples_and_info=(examples, info)
    )
    good_step = ckpt_lib.Checkpointer(workdir)._latest.latest_step()  # pylint: disable=protected-access
    self.assertIsNotNone(good_step)
    poisoned = [dict(ex) for ex in examples]
    for ex in poisoned:
      ex["patches"] = np.full_like(ex["patches"], np.nan)
    with self.assertRaisesRegex(
        loop.NonFiniteLossError,
        r"epoch 1: training became non-finite at batch 0 \(loss .*, "
        r"gradient norm nan\); the last good checkpoint is kept in "
        r".*checkpoints/latest",
    ):
      loop.train_and_evaluate(
          _config(num_epochs=3), workdir, examples_and_info=(poisoned, info)
      )
    checkpointer = ckpt_lib.Checkpointer(workdir)
    self.assertEqual(checkpointer._latest.latest_step(), good_step)  # pylint: disable=protected-access
    checkpointer.close()

  def test_workdir_outputs_and_distillation(self):
    examples = fake_data.make_examples(30)
    root = pathlib.Path(self.create_tempdir().full_path)
    teachers = []
    for variant in ("teacher_node", "teacher_graph"):
      config = mtgcn.get_config(variant)
      test = _config()
      config.model = test.model
      config.dataset = test.dataset
      config.batch_size = test.batch_size
      config.num_epochs = 1
      config.num_devices = 1
      workdir = str(root / variant)
      results = loop.train_and_evaluate(
          config, workdir, examples_and_info=examples
      )
      self.assertEqual(tuple(results["config"]["tasks"]),
                       tuple(config.tasks))
      teachers.append(workdir)
    student = _config(num_epochs=1)
    student.distill.teachers = tuple(teachers)
    workdir = root / "student"
    results = loop.train_and_evaluate(
        student, str(workdir), examples_and_info=examples
    )
    for name in ("results.json", "report.md", "metrics.jsonl",
                 "figures/roc_node.png", "figures/roc_graph.png",
                 "figures/confusion_node.png", "figures/gradnorm_weights.png"):
      self.assertTrue((workdir / name).exists(), name)
    self.assertTrue(list((workdir / "figures").glob("graph_*.png")))
    self.assertTrue(list((workdir / "tensorboard").iterdir()))
    saved = json.loads((workdir / "results.json").read_text())
    self.assertIn("auc_ovo", saved["test"]["graph"])
    self.assertIn("auc_ovr", saved["test"]["node"])
    report = (workdir / "report.md").read_text()
    self.assertIn("| distribution (graph task), test |", report)
    self.assertIn("figures/gradnorm_weights.png", report)
    self.assertGreaterEqual(results["timing"]["train_items"], 1)


class AuxiliaryTermTest(absltest.TestCase):

  def test_auxiliary_term_is_weighted_logged_evaluated_and_reported(self):
    from unittest import mock  # pylint: disable=g-import-not-at-top
    from mammojax import methods  # pylint: disable=g-import-not-at-top
    from tests.training import toy_method  # pylint: disable=g-import-not-at-top

    workdir = pathlib.Path(self.create_tempdir().full_path)
    config = toy_method.get_config()
    with mock.patch.dict(methods.METHODS,
                         {"toy": "tests.training.toy_method"}):
      results = loop.train_and_evaluate(config, str(workdir))
    records = [r for r in _jsonl(workdir / "metrics.jsonl")
               if "train/loss_rec" in r]
    self.assertLen(records, 12)  # 3 epochs x 4 steps, log_every_steps=1.
    for r in records:
      np.testing.assert_allclose(
          r["train/loss"],
          r["train/loss_label"] + 0.5 * r["train/loss_rec"], rtol=1e-5,
      )
    first, last = records[0]["train/loss_rec"], records[-1]["train/loss_rec"]
    self.assertLess(last, first)  # The decoder learns.
    for split in ("val", "test"):
      rep = results[split]
      self.assertIn("loss_rec", rep)
      np.testing.assert_allclose(
          rep["loss"], rep["loss_label"] + 0.5 * rep["loss_rec"], rtol=1e-6
      )
      self.assertEqual(rep["label"]["num_samples"], 8)
    # Selected by the auxiliary term: the best epoch has the lowest val rec.
    val = [r for r in _jsonl(workdir / "metrics.jsonl") if "val/loss_rec" in r]
    best = int(np.argmin([r["val/loss_rec"] for r in val]))
    self.assertEqual(results["meta"]["best_epoch"], best)
    self.assertEqual(
        np.load(workdir / "reconstruction_test.npy").shape, (8, 6)
    )
    report = (workdir / "report.md").read_text()
    self.assertIn("## Losses", report)
    self.assertIn("loss_rec", report)


if __name__ == "__main__":
  absltest.main()
