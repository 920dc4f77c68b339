"""Tests of the input pipeline: splits, sampling, batching, TFDS builders."""

import collections
import pathlib
import pickle

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow_datasets as tfds

from configs import mtgcn
from mammojax.data import pipeline
from mammojax.data import synthetic
from tests.training import fake_data


def _patients(n_patients=40, images_per_patient=2, seed=0):
  rng = np.random.default_rng(seed)
  pids, labels = [], []
  for p in range(n_patients):
    label = int(rng.integers(0, 4))
    for _ in range(images_per_patient):
      pids.append(f"P{p:03d}")
      labels.append(label)
  return pids, labels


class SplitTest(parameterized.TestCase):

  def test_patient_splits_are_disjoint_and_complete(self):
    pids, labels = _patients()
    splits = pipeline.patient_splits(
        pids, labels, val_fraction=0.1, test_fraction=0.2, seed=3
    )
    pids = np.asarray(pids)
    sets = {k: set(pids[v]) for k, v in splits.items()}
    self.assertEmpty(sets["train"] & sets["val"])
    self.assertEmpty(sets["train"] & sets["test"])
    self.assertEmpty(sets["val"] & sets["test"])
    everything = np.sort(np.concatenate(list(splits.values())))
    np.testing.assert_array_equal(everything, np.arange(len(pids)))
    # 20 % of 40 patients are held out for testing (stratified round robin).
    self.assertEqual(len(sets["test"]), 8)

  def test_splits_are_deterministic_per_seed(self):
    pids, labels = _patients()
    a = pipeline.patient_splits(pids, labels, val_fraction=0.1,
                                test_fraction=0.2, seed=1)
    b = pipeline.patient_splits(pids, labels, val_fraction=0.1,
                                test_fraction=0.2, seed=1)
    c = pipeline.patient_splits(pids, labels, val_fraction=0.1,
                                test_fraction=0.2, seed=2)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])
    self.assertFalse(np.array_equal(a["test"], c["test"]))

  def test_kfold_validation_folds_partition_the_non_test_patients(self):
    pids, labels = _patients(n_patients=50)
    folds = [
        pipeline.patient_splits(
            pids, labels, val_fraction=0.0, test_fraction=0.2,
            num_folds=5, fold=f, seed=0,
        )
        for f in range(5)
    ]
    for f in folds:  # The held-out test set is the same for every fold.
      np.testing.assert_array_equal(f["test"], folds[0]["test"])
    vals = np.concatenate([f["val"] for f in folds])
    self.assertLen(set(vals.tolist()), len(vals))
    rest = np.setdiff1d(np.arange(len(pids)), folds[0]["test"])
    np.testing.assert_array_equal(np.sort(vals), rest)

  def test_stratification_spreads_each_label_over_folds(self):
    pids, labels = _patients(n_patients=60, images_per_patient=1)
    folds = pipeline.stratified_group_folds(pids, labels, 3, seed=0)
    for label in set(labels):
      counts = np.bincount(folds[np.asarray(labels) == label], minlength=3)
      self.assertLessEqual(counts.max() - counts.min(), 1)

  def test_official_test_split_drops_leaking_training_patients(self):
    pids = ["A", "A", "B", "C", "D", "E"]
    labels = [0, 0, 1, 0, 1, 0]
    fixed = np.asarray([True, False, False, False, False, False])
    splits = pipeline.patient_splits(
        pids, labels, val_fraction=0.0, test_fraction=0.0, fixed_test=fixed
    )
    np.testing.assert_array_equal(splits["test"], [0])
    self.assertNotIn(1, splits["train"])

  @parameterized.parameters(
      ("val_fraction", 1.5), ("test_fraction", -0.1)
  )
  def test_bad_fractions_name_the_config_key(self, key, value):
    kwargs = {"val_fraction": 0.1, "test_fraction": 0.2, key: value}
    with self.assertRaisesRegex(ValueError, f"config.dataset.{key}"):
      pipeline.patient_splits(["a", "b"], [0, 1], **kwargs)


class BatchingTest(absltest.TestCase):

  def _data(self, num_devices=1, **overrides):
    config = mtgcn.get_config("test")
    for k, v in overrides.items():
      config.dataset[k] = v
    return pipeline.create_graph_data(
        config,
        num_devices=num_devices,
        examples_and_info=fake_data.make_examples(40),
    )

  def test_eval_batches_hold_every_sample_once(self):
    data = self._data()
    seen = []
    for batch in data.eval_batches("train"):
      g = batch["knn"]
      seen.extend(np.asarray(g.n_node)[np.asarray(g.globals["mask"])])
      self.assertEqual(g.n_node.shape, (data.budget.n_graph,))
    expected = [len(data.examples[i]["morphology"])
                for i in data.splits["train"]]
    self.assertEqual(seen, expected)

  def test_epoch_order_is_deterministic_and_class_balanced(self):
    data = self._data()
    np.testing.assert_array_equal(data.epoch_order(3), data.epoch_order(3))
    self.assertFalse(np.array_equal(data.epoch_order(3), data.epoch_order(4)))
    counts = collections.Counter()
    for epoch in range(200):
      for i in data.epoch_order(epoch):
        counts[int(data.examples[i]["distribution"])] += 1
    freq = np.asarray([counts[c] for c in range(5)], np.float64)
    freq /= freq.sum()
    np.testing.assert_allclose(freq, 0.2, atol=0.02)

  def test_unbalanced_epoch_is_a_permutation(self):
    data = self._data(class_balanced=False)
    order = data.epoch_order(0)
    np.testing.assert_array_equal(np.sort(order), data.splits["train"])

  def test_device_batches_are_stacked_and_padded_with_masked_batches(self):
    data = self._data(num_devices=4)
    batches = list(data.eval_batches("test", num_devices=4))
    self.assertNotEmpty(batches)
    real = 0
    for batch in batches:
      g = batch["radius"]
      self.assertEqual(g.nodes["patches"].shape[0], 4)
      self.assertEqual(g.globals["mask"].shape, (4, data.budget.n_graph))
      real += int(g.globals["mask"].sum())
    self.assertEqual(real, len(data.splits["test"]))


class BuilderTest(absltest.TestCase):

  def test_synthetic_and_dicom_folder_builders_agree(self):
    data_dir = self.create_tempdir("tfds").full_path
    config = mtgcn.get_config("test")
    config.dataset.data_dir = data_dir
    config.dataset.builder_config = "tiny"
    from_generator, info = pipeline.load_examples(config.dataset)
    self.assertLen(from_generator, 24)
    report = info["build_report"]
    self.assertEqual(report["examples"], 24)
    self.assertEqual(
        sum(report["morphology"].values()), report["nodes"]
    )
    ex = from_generator[0]
    self.assertEqual(ex["patches"].shape[1:], (14, 14))
    self.assertEqual(ex["coords"].shape, (len(ex["morphology"]), 2))
    self.assertTrue(np.all((ex["coords"] >= 0) & (ex["coords"] <= 1)))
    self.assertEqual(ex["view_image"].shape, (256, 160))
    self.assertEqual(ex["crop"].dtype, np.uint8)

    # The same images written as DICOM + annotations.json and read back
    # through the DICOM-folder builder give the same examples.
    folder = self.create_tempdir("dicom").full_path
    gen_config = synthetic.SyntheticConfig(breast_scale=0.5)
    synthetic.write_dataset(
        folder, gen_config, 4, seed=0, workers=1, progress=False
    )
    config.dataset.name = "dicom_folder_calcifications"
    config.dataset.builder_config = "default"
    config.dataset.manual_dir = folder
    from_files, info2 = pipeline.load_examples(config.dataset)
    for field in ("morphology", "distribution"):
      self.assertEqual(
          info2["vocabularies"][field], info["vocabularies"][field]
      )
    by_id = {e["example_id"]: e for e in from_generator}
    self.assertNotEmpty(from_files)
    for ex in from_files:
      ref = by_id[ex["example_id"]]
      np.testing.assert_array_equal(ex["morphology"], ref["morphology"])
      self.assertEqual(ex["distribution"], ref["distribution"])
      np.testing.assert_allclose(ex["patches"], ref["patches"], atol=1e-6)
      np.testing.assert_allclose(ex["coords"], ref["coords"], atol=1e-6)

  def test_interrupted_build_resumes_from_the_image_cache(self):
    import shutil  # pylint: disable=g-import-not-at-top

    data_dir = self.create_tempdir("tfds").full_path
    config = mtgcn.get_config("test")
    config.dataset.data_dir = data_dir
    first, _ = pipeline.load_examples(config.dataset)
    cache = list((pathlib.Path(data_dir) / "_mammojax_cache").rglob("*.pkl"))
    self.assertLen(cache, 24)
    # Losing the dataset (e.g. an interrupted write) rebuilds from the cache:
    # poison the cache to prove it is what the rebuild reads.
    shutil.rmtree(pathlib.Path(data_dir) / "synthetic_calcifications")
    with open(sorted(cache)[0], "rb") as f:
      cached = pickle.load(f)
    key, example = cached[0][0]
    example["distribution"] = (example["distribution"] + 1) % 5
    with open(sorted(cache)[0], "wb") as f:
      pickle.dump(cached, f)
    second, _ = pipeline.load_examples(config.dataset)
    changed = [
        a["example_id"] for a, b in zip(first, second)
        if a["distribution"] != b["distribution"]
    ]
    self.assertEqual(changed, [key])
    for a, b in zip(first, second):
      np.testing.assert_array_equal(a["patches"], b["patches"])

  def test_missing_manual_dir_is_a_clear_error(self):
    config = mtgcn.get_config("test")
    config.dataset.data_dir = self.create_tempdir().full_path
    config.dataset.name = "dicom_folder_calcifications"
    config.dataset.builder_config = "default"
    with self.assertRaisesRegex(
        ValueError, r"config.dataset.manual_dir: dataset "
        r"'dicom_folder_calcifications' is built from files you provide"
    ):
      pipeline.load_examples(config.dataset)
    config.dataset.manual_dir = self.create_tempdir().full_path
    with self.assertRaisesRegex(
        ValueError, r"config.dataset.manual_dir=.*: not a folder or empty; "
        r"dataset 'dicom_folder_calcifications' expects: Point manual_dir"
    ):
      pipeline.load_examples(config.dataset)
    folder = self.create_tempdir()
    folder.create_file("notes.txt", "no annotations here")
    config.dataset.manual_dir = folder.full_path
    with self.assertRaisesRegex(
        FileNotFoundError, r"annotations.json not found; expected manual_dir"
    ):
      pipeline.load_examples(config.dataset)

  def test_unknown_dataset_names_the_config_key(self):
    config = mtgcn.get_config("test")
    config.dataset.name = "nope"
    with self.assertRaisesRegex(ValueError, r"config.dataset.name='nope'"):
      pipeline.load_examples(config.dataset)


del tfds

if __name__ == "__main__":
  absltest.main()
