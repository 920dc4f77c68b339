"""Tests of the input pipeline: TFDS builders read back as examples."""

import pathlib
import pickle

from absl.testing import absltest
import numpy as np
import tensorflow_datasets as tfds

from configs import mtgcn
from mammojax.data import pipeline
from mammojax.data import synthetic


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
