"""Tests of the calcification-graph data (mammojax.data.graph_data)."""

import collections

from absl.testing import absltest
import numpy as np

from configs import mtgcn
from mammojax.data import graph_data
from tests.training import fake_data


class GraphDataTest(absltest.TestCase):

  def _data(self, num_devices=1, **overrides):
    config = mtgcn.get_config("test")
    for k, v in overrides.items():
      config.dataset[k] = v
    return graph_data.create_graph_data(
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

  def test_each_process_takes_its_devices_part_of_every_step(self):
    # 2 processes x 2 devices = one process with 4 devices, sliced.
    data = self._data(num_devices=4)
    for split, whole in (
        ("train", list(data.train_batches(5, num_devices=4))),
        ("test", list(data.eval_batches("test", num_devices=4))),
    ):
      parts = [
          list(data.train_batches(5, num_devices=2, process_index=p,
                                  process_count=2)) if split == "train" else
          list(data.eval_batches(split, num_devices=2, process_index=p,
                                 process_count=2))
          for p in range(2)
      ]
      self.assertLen(parts[0], len(whole))
      self.assertLen(parts[1], len(whole))
      for step, batch in enumerate(whole):
        for p in range(2):
          for t in batch:
            np.testing.assert_array_equal(
                parts[p][step][t].nodes["patches"],
                batch[t].nodes["patches"][2 * p : 2 * p + 2],
            )
            np.testing.assert_array_equal(
                parts[p][step][t].globals["mask"],
                batch[t].globals["mask"][2 * p : 2 * p + 2],
            )
    # One device per process: still stacked (the step is pmapped).
    (first, *_) = data.eval_batches("test", process_index=1, process_count=2)
    self.assertEqual(first["knn"].globals["mask"].shape,
                     (1, data.budget.n_graph))


if __name__ == "__main__":
  absltest.main()
