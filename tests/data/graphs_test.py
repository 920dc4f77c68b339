"""Tests for mammojax.data.graphs: edge sets, Cartesian parity, building."""

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from mammojax.data import graphs

# PyG's Cartesian is pure torch. PyG's knn_graph / radius_graph need pyg-lib
# or torch_cluster (not installed), so edge sets are checked against a
# brute-force reference that follows PyG's semantics instead.
# pylint: disable=g-import-not-at-top
try:
  import torch
  from torch_geometric import transforms as pyg_transforms
  from torch_geometric.data import Data
except ImportError:  # pragma: no cover
  torch = None
# pylint: enable=g-import-not-at-top


def _brute_knn(pos, k, loop=False):
  """Dense reference: k nearest by (distance, index), PyG edge direction."""
  pos = np.asarray(pos, np.float64)
  n = pos.shape[0]
  diff = pos[None, :, :] - pos[:, None, :]
  dist2 = (diff * diff).sum(-1)  # [receiver i, sender j]
  edges = set()
  for i in range(n):
    cand = [j for j in range(n) if loop or j != i]
    cand.sort(key=lambda j: (dist2[i, j], j))
    edges.update((j, i) for j in cand[:k])
  return edges


def _brute_radius(pos, r, max_num_neighbors=None, loop=False):
  pos = np.asarray(pos, np.float64)
  n = pos.shape[0]
  diff = pos[None, :, :] - pos[:, None, :]
  dist2 = (diff * diff).sum(-1)
  edges = set()
  for i in range(n):
    cand = [j for j in range(n) if (loop or j != i) and dist2[i, j] < r * r]
    cand.sort(key=lambda j: (dist2[i, j], j))
    edges.update((j, i) for j in cand[:max_num_neighbors])
  return edges


def _edge_set(senders, receivers):
  return set(zip(senders.tolist(), receivers.tolist()))


def _sample(n, seed, label=1, sid=None):
  rng = np.random.default_rng(seed)
  return {
      "id": sid if sid is not None else f"s{seed}",
      "nodes": {
          "patches": rng.random((n, 14, 14), dtype=np.float32),
          "coords": rng.random((n, 2), dtype=np.float32),
          "label": rng.integers(-1, 5, n).astype(np.int32),
      },
      "label": label,
  }


class KnnRadiusTest(parameterized.TestCase):

  @parameterized.product(n=[1, 2, 5, 40], k=[1, 4, 10], loop=[False, True])
  def test_knn_matches_brute_force(self, n, k, loop):
    pos = np.random.default_rng(n * 100 + k).random((n, 2)).astype(np.float32)
    senders, receivers = graphs.knn_graph(pos, k, loop=loop)
    self.assertEqual(senders.dtype, np.int32)
    self.assertEqual(_edge_set(senders, receivers), _brute_knn(pos, k, loop))
    self.assertLen(senders, n * min(k, n if loop else n - 1))

  def test_knn_direction_is_neighbour_to_target(self):
    pos = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    senders, receivers = graphs.knn_graph(pos, 1)
    # Node 2's nearest is node 1: edge 1 -> 2 (sender = neighbour).
    self.assertEqual(
        _edge_set(senders, receivers), {(1, 0), (0, 1), (1, 2)}
    )

  def test_knn_k_ge_n_connects_all(self):
    pos = np.random.default_rng(0).random((4, 2))
    senders, receivers = graphs.knn_graph(pos, 10)
    self.assertEqual(
        _edge_set(senders, receivers),
        {(j, i) for i in range(4) for j in range(4) if i != j},
    )

  def test_duplicates_are_deterministic_and_index_ordered(self):
    # Five copies of one point + one far point; k=2 must pick the two
    # lowest-index copies (other than self).
    pos = np.array([[0.5, 0.5]] * 5 + [[0.9, 0.9]], np.float32)
    senders, receivers = graphs.knn_graph(pos, 2)
    self.assertEqual(_edge_set(senders, receivers), _brute_knn(pos, 2))
    got = {i: sorted(senders[receivers == i].tolist()) for i in range(6)}
    self.assertEqual(got[0], [1, 2])
    self.assertEqual(got[3], [0, 1])
    self.assertEqual(got[5], [0, 1])
    again = graphs.knn_graph(pos, 2)
    np.testing.assert_array_equal(again[0], senders)
    np.testing.assert_array_equal(again[1], receivers)
    s2, r2 = graphs.radius_graph(pos, 0.1, max_num_neighbors=3)
    self.assertEqual(_edge_set(s2, r2), _brute_radius(pos, 0.1, 3))

  @parameterized.product(
      n=[1, 3, 60], r=[0.0, 0.05, 0.2, 2.0], cap=[None, 4, 32],
      loop=[False, True],
  )
  def test_radius_matches_brute_force(self, n, r, cap, loop):
    pos = np.random.default_rng(n).random((n, 2)).astype(np.float32)
    senders, receivers = graphs.radius_graph(
        pos, r, max_num_neighbors=cap, loop=loop
    )
    want = _brute_radius(pos, r, cap, loop) if r > 0 else set()
    self.assertEqual(_edge_set(senders, receivers), want)
    if cap is not None and receivers.size:
      self.assertLessEqual(np.bincount(receivers).max(), cap)

  def test_radius_is_strict(self):
    pos = np.array([[0.0, 0.0], [0.5, 0.0]])
    self.assertEmpty(graphs.radius_graph(pos, 0.5)[0])
    self.assertLen(graphs.radius_graph(pos, 0.5000001)[0], 2)

  def test_cluster_without_radius_edges(self):
    pos = np.array([[0.1, 0.1], [0.9, 0.9], [0.1, 0.9]], np.float32)
    senders, receivers = graphs.radius_graph(pos, 0.01)
    self.assertEqual(senders.shape, (0,))
    self.assertEqual(receivers.shape, (0,))

  def test_mm_to_normalised(self):
    self.assertAlmostEqual(
        graphs.radius_mm_to_normalised(
            7.0, pixel_spacing_mm=0.07, image_shape=(1000, 400), axis="x"
        ),
        0.25,
    )
    self.assertAlmostEqual(
        graphs.radius_mm_to_normalised(
            7.0, pixel_spacing_mm=0.07, image_shape=(400, 400)
        ),
        0.25,
    )


@absltest.skipIf(torch is None, "torch_geometric not installed")
class CartesianParityTest(parameterized.TestCase):

  @parameterized.product(
      seed=[0, 1, 2], norm=[True, False], max_value=[None, 0.7]
  )
  def test_matches_pyg(self, seed, norm, max_value):
    rng = np.random.default_rng(seed)
    pos = rng.random((30, 2), dtype=np.float32)
    senders, receivers = graphs.knn_graph(pos, 4)
    ours = graphs.cartesian(
        pos, senders, receivers, norm=norm, max_value=max_value
    )
    data = Data(
        pos=torch.from_numpy(pos),
        edge_index=torch.from_numpy(
            np.stack([senders, receivers]).astype(np.int64)
        ),
    )
    transform = pyg_transforms.Cartesian(norm=norm, max_value=max_value)
    ref = transform(data).edge_attr.numpy()
    self.assertEqual(ours.dtype, np.float32)
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=1e-7)

  def test_sign_is_source_minus_target(self):
    pos = np.array([[0.0, 0.0], [1.0, 2.0]], np.float32)
    out = graphs.cartesian(pos, np.array([1]), np.array([0]), norm=False)
    np.testing.assert_array_equal(out, [[1.0, 2.0]])

  def test_all_zero_offsets_are_centre_not_nan(self):
    pos = np.zeros((3, 2), np.float32)
    s, r = graphs.knn_graph(pos, 2)
    out = graphs.cartesian(pos, s, r)
    np.testing.assert_array_equal(out, np.full((6, 2), 0.5, np.float32))


class BuildTest(parameterized.TestCase):

  def test_build_sample_graphs(self):
    sample = _sample(7, 0, label=3)
    g = graphs.build_sample_graphs(sample, knn_k=4, radius=0.3)
    self.assertEqual(set(g), {"knn", "radius"})
    self.assertIs(g["knn"].nodes, g["radius"].nodes)
    for t, gt in g.items():
      self.assertEqual(gt.n_node.tolist(), [7])
      self.assertEqual(gt.n_edge.tolist(), [gt.senders.shape[0]])
      self.assertEqual(gt.edges.shape, (gt.senders.shape[0], 2))
      self.assertEqual(gt.edges.dtype, np.float32)
      self.assertEqual(gt.globals["label"].tolist(), [3], t)
    self.assertLen(g["knn"].senders, 28)

  def test_single_node_sample(self):
    g = graphs.build_sample_graphs(_sample(1, 0), radius=0.5)
    for gt in g.values():
      self.assertEqual(gt.senders.shape, (0,))
      self.assertEqual(gt.edges.shape, (0, 2))

  def test_bad_sample_errors(self):
    with self.assertRaisesRegex(ValueError, "s9.*'label'.*rows"):
      s = _sample(3, 9)
      s["nodes"]["label"] = np.zeros(4, np.int32)
      graphs.build_sample_graphs(s)
    with self.assertRaisesRegex(ValueError, "unknown graph type"):
      graphs.build_sample_graphs(_sample(3, 1), graph_types=("grid",))


if __name__ == "__main__":
  absltest.main()
