"""Tests of the in-memory image data (mammojax.data.images)."""

from absl.testing import absltest
import ml_collections
import numpy as np

from mammojax.data import images
from mammojax.data import resample


def _data(dtype=np.uint8, class_balanced=False, batch_size=4):
  rng = np.random.default_rng(0)
  pixels = rng.integers(1, 256, (10, 6, 4)).astype(dtype)
  config = ml_collections.ConfigDict({
      "seed": 0, "batch_size": batch_size,
      "dataset": {"class_balanced": class_balanced},
  })
  labels = {"a": np.array([0, 1, 1, 1, 1, 1, 0, 1, -1, 1]),
            "b": np.arange(10) % 3}
  splits = {"train": np.arange(7), "val": np.array([7, 8]),
            "test": np.array([9])}
  return images.ImageArrays(
      config, [{}] * 10, {"vocabularies": {}}, splits, pixels, labels,
      num_classes={"a": 2, "b": 3}, balance_field="a",
      per_device_batch_size=batch_size,
  )


class ImageArraysTest(absltest.TestCase):

  def test_eval_batches_pad_with_masked_items(self):
    data = _data()
    (batch,) = list(data.eval_batches("val"))
    np.testing.assert_array_equal(batch["mask"], [True, True, False, False])
    np.testing.assert_array_equal(batch["index"], [7, 8, -1, -1])
    np.testing.assert_array_equal(batch["a"], [1, -1, -1, -1])
    self.assertEqual(batch["image"].dtype, np.uint8)
    self.assertEqual(int(batch["image"][2:].max()), 0)
    np.testing.assert_array_equal(batch["image"][0], data.images[7])

  def test_train_epochs_fill_whole_batches_deterministically(self):
    data = _data(class_balanced=True)
    order = data.epoch_order(2)
    self.assertLen(order, 8)  # 7 training items filled up to 2 batches.
    np.testing.assert_array_equal(order, data.epoch_order(2))
    self.assertTrue(set(order.tolist()) <= set(range(7)))
    first, second = list(data.train_batches(2))
    self.assertTrue(first["mask"].all() and second["mask"].all())
    np.testing.assert_array_equal(
        np.concatenate([first["index"], second["index"]]), order
    )
    (stacked,) = list(data.train_batches(2, num_devices=2))
    self.assertEqual(stacked["image"].shape, (2, 4, 6, 4))

  def test_each_process_takes_its_rows_of_every_global_batch(self):
    data = _data(batch_size=2)  # 2 per device; 2 processes x 1 device.
    for name, whole, parts in (
        ("train", list(data.train_batches(1, num_devices=2)),
         [list(data.train_batches(1, process_index=p, process_count=2))
          for p in range(2)]),
        ("val", list(data.eval_batches("val", num_devices=2)),
         [list(data.eval_batches("val", process_index=p, process_count=2))
          for p in range(2)]),
    ):
      for p in range(2):
        self.assertLen(parts[p], len(whole), name)
        for step, batch in enumerate(whole):
          for key, value in batch.items():
            self.assertEqual(
                parts[p][step][key].shape, (1, 2) + value.shape[2:]
            )
            np.testing.assert_array_equal(
                parts[p][step][key][0], value[p], err_msg=f"{name} {key}"
            )
    # The val split (2 items): process 1's rows are all padding.
    (last,) = data.eval_batches("val", process_index=1, process_count=2)
    self.assertFalse(last["mask"].any())

  def test_class_counts_ignore_unknown_labels(self):
    data = _data()
    np.testing.assert_array_equal(data.class_counts("train", "a"), [2, 5])
    np.testing.assert_array_equal(data.class_counts("val", "a"), [0, 1])
    np.testing.assert_array_equal(data.class_counts("train", "b"), [3, 2, 2])
    with self.assertRaisesRegex(ValueError, r"label field 'c'"):
      data.class_counts("train", "c")

  def test_resize_keeps_dtype_and_matches_resample(self):
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, (3, 20, 12), dtype=np.uint8)
    out = images.resize_images(u8, (10, 6))
    self.assertEqual(out.dtype, np.uint8)
    want = resample.resize_image(u8[1].astype(np.float32), (10, 6))
    np.testing.assert_array_equal(out[1], np.clip(np.round(want), 0, 255))
    floats = rng.random((2, 7, 7)).astype(np.float32)
    big = images.resize_images(floats, (14, 14))
    self.assertEqual(big.dtype, np.float32)
    np.testing.assert_allclose(
        big[0], resample.resize_image(floats[0], (14, 14)), rtol=1e-6
    )
    self.assertIs(images.resize_images(u8, ()), u8)

  def test_batch_size_must_split_over_devices(self):
    config = ml_collections.ConfigDict({"batch_size": 6})
    self.assertEqual(images.check_batch_size(config, 3), 2)
    with self.assertRaisesRegex(ValueError, r"config\.batch_size=6 is not "
                                "divisible by the 4 devices"):
      images.check_batch_size(config, 4)


if __name__ == "__main__":
  absltest.main()
