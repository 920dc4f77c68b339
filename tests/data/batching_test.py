"""Tests for mammojax.data.batching: padded batches, budgets, packing."""

import jraph
import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from mammojax.data import batching
from mammojax.data import graphs
from tests.data.graphs_test import _sample


class PadBatchTest(parameterized.TestCase):

  def test_single_node_sample(self):
    # Building a single-node sample: graphs_test.test_single_node_sample.
    g = graphs.build_sample_graphs(_sample(1, 0), radius=0.5)
    budget = batching.estimate_budget([g], 1)
    batch = batching.pad_batch([g], budget)
    self.assertEqual(batch["knn"].n_node.tolist(), [1, budget.n_node - 1])
    self.assertTrue(np.all(batch["knn"].senders == 1))

  def _check_padded(self, batch, budget, samples):
    g0 = batch["knn"]
    num = len(samples)
    real_nodes = sum(s["knn"].n_node[0] for s in samples)
    for t, g in batch.items():
      self.assertIs(g.nodes, g0.nodes)
      self.assertIs(g.globals, g0.globals)
      self.assertEqual(g.nodes["patches"].shape, (budget.n_node, 14, 14))
      self.assertEqual(g.nodes["coords"].shape, (budget.n_node, 2))
      self.assertEqual(g.senders.shape, (budget.n_edge[t],))
      self.assertEqual(g.edges.shape, (budget.n_edge[t], 2))
      self.assertEqual(g.n_node.shape, (budget.n_graph,))
      self.assertEqual(g.n_edge.shape, (budget.n_graph,))
      self.assertEqual(g.n_node.sum(), budget.n_node)
      self.assertEqual(g.n_edge.sum(), budget.n_edge[t])
      # Same masks as jraph computes from the padded layout.
      np.testing.assert_array_equal(
          g.nodes["mask"], np.asarray(jraph.get_node_padding_mask(g))
      )
      np.testing.assert_array_equal(
          g.globals["mask"], np.asarray(jraph.get_graph_padding_mask(g))
      )
      edge_mask = np.asarray(jraph.get_edge_padding_mask(g))
      real_edges = sum(s[t].senders.shape[0] for s in samples)
      self.assertEqual(edge_mask.sum(), real_edges)
      # Padding edges: self-loops on the first padding node.
      self.assertTrue(np.all(g.senders[~edge_mask] == real_nodes))
      self.assertTrue(np.all(g.receivers[~edge_mask] == real_nodes))
      # Real edges: offset into their own sample's node range.
      offset, eoff = 0, 0
      for s in samples:
        e = s[t].senders.shape[0]
        np.testing.assert_array_equal(
            g.senders[eoff : eoff + e], s[t].senders + offset
        )
        np.testing.assert_array_equal(
            g.receivers[eoff : eoff + e], s[t].receivers + offset
        )
        np.testing.assert_array_equal(
            g.edges[eoff : eoff + e], s[t].edges
        )
        np.testing.assert_array_equal(
            g.nodes["coords"][offset : offset + s[t].n_node[0]],
            s[t].nodes["coords"],
        )
        offset += s[t].n_node[0]
        eoff += e
      self.assertTrue(np.all(g.nodes["patches"][real_nodes:] == 0))
    self.assertEqual(g0.nodes["mask"].sum(), real_nodes)
    self.assertEqual(g0.globals["mask"].sum(), num)
    np.testing.assert_array_equal(
        g0.globals["label"][:num],
        [s["knn"].globals["label"][0] for s in samples],
    )

  def test_pad_batch_invariants(self):
    samples = [
        graphs.build_sample_graphs(_sample(n, n, label=n % 5), radius=0.3)
        for n in (3, 1, 8, 5)
    ]
    budget = batching.estimate_budget(samples, 4, round_to=16)
    self.assertEqual(budget.n_graph, 5)
    batch = batching.pad_batch(samples, budget)
    self._check_padded(batch, budget, samples)

  @parameterized.parameters("max", "mean")
  def test_batch_iterator_epoch_covers_every_sample_once(self, strategy):
    sizes = [1, 12, 3, 30, 2, 7, 1, 1, 18, 4, 9]
    samples = [
        graphs.build_sample_graphs(_sample(n, i, label=i % 5), radius=0.2)
        for i, n in enumerate(sizes)
    ]
    budget = batching.estimate_budget(
        samples, 3, round_to=8, strategy=strategy
    )
    seen = []
    for batch in batching.batch_iterator(samples, budget, batch_size=3):
      g = batch["knn"]
      num = int(g.globals["mask"].sum())
      self.assertBetween(num, 1, 3)
      # Identify samples by their first coordinate.
      starts = np.concatenate([[0], np.cumsum(g.n_node[:num])[:-1]])
      seen.extend(g.nodes["coords"][starts, 0].tolist())
      for t in budget.n_edge:
        self.assertEqual(batch[t].senders.shape, (budget.n_edge[t],))
    want = [s["knn"].nodes["coords"][0, 0] for s in samples]
    self.assertEqual(seen, want)

  def test_max_budget_gives_full_batches(self):
    samples = [
        graphs.build_sample_graphs(_sample(n, n), radius=0.2)
        for n in [5, 40, 2, 33, 9, 1, 17]
    ]
    budget = batching.estimate_budget(samples, 2, strategy="max")
    counts = [
        int(b["knn"].globals["mask"].sum())
        for b in batching.batch_iterator(samples, budget, batch_size=2)
    ]
    self.assertEqual(counts, [2, 2, 2, 1])

  def test_over_budget_error_names_the_sample(self):
    small = [graphs.build_sample_graphs(_sample(3, i)) for i in range(3)]
    budget = batching.estimate_budget(small, 1, round_to=1)
    big = graphs.build_sample_graphs(_sample(50, 7))
    with self.assertRaisesRegex(ValueError, r"sample 'P7/c0'.*50 nodes"):
      list(
          batching.batch_iterator(
              small + [big], budget, batch_size=1,
              ids=["a", "b", "c", "P7/c0"],
          )
      )
    with self.assertRaisesRegex(ValueError, r"sample 0 .*50 nodes"):
      batching.pad_batch([big], budget)
    with self.assertRaisesRegex(ValueError, "holds 1"):
      batching.pad_batch(small[:2], budget)


if __name__ == "__main__":
  absltest.main()
