"""Tests of the MT-GCN model."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from mammojax.data import batching
from mammojax.data import graphs as graphs_lib
from mammojax.models import mtgcn


def _samples(n_samples=5, seed=0, patch=6):
  rng = np.random.default_rng(seed)
  out = []
  for i in range(n_samples):
    n = int(rng.integers(1, 9))
    sample = {
        "id": f"s{i}",
        "nodes": {
            "patches": rng.normal(size=(n, patch, patch)).astype(np.float32),
            "features": rng.normal(size=(n, 7)).astype(np.float32),
            "coords": rng.uniform(size=(n, 2)).astype(np.float32),
            "label": rng.integers(0, 3, size=n).astype(np.int32),
        },
        "label": int(rng.integers(0, 4)),
    }
    out.append(graphs_lib.build_sample_graphs(sample, knn_k=3, radius=0.4))
  return out


def _batch(samples, extra_nodes=0, extra_graphs=0):
  budget = batching.estimate_budget(samples, len(samples))
  budget = batching.Budget(
      n_node=budget.n_node + extra_nodes,
      n_edge={k: v + extra_nodes for k, v in budget.n_edge.items()},
      n_graph=budget.n_graph + extra_graphs,
  )
  return batching.pad_batch(samples, budget)


def _model(**kwargs):
  defaults = dict(
      num_node_classes=3,
      num_graph_classes=4,
      patch_embed_dim=8,
      patch_channels=(4, 8),
      hidden_size=16,
      num_layers=3,
      dropout=0.0,
  )
  defaults.update(kwargs)
  return mtgcn.MTGCN(**defaults)


class MTGCNTest(parameterized.TestCase):

  @parameterized.product(
      fusion=("attention", "concat", "mean"),
      graph_types=(("knn", "radius"), ("radius",)),
  )
  def test_output_shapes(self, fusion, graph_types):
    batch = _batch(_samples())
    model = _model(fusion=fusion, graph_types=graph_types)
    out, variables = model.init_with_output(
        jax.random.key(0), batch, train=False
    )
    n_node = batch["knn"].nodes["mask"].shape[0]
    n_graph = batch["knn"].globals["mask"].shape[0]
    self.assertEqual(out["node_logits"].shape, (n_node, 3))
    self.assertEqual(out["graph_logits"].shape, (n_graph, 4))
    self.assertIn("proj", variables["params"]["fusion"])

  @parameterized.parameters("batch", "layer")
  def test_padding_does_not_change_real_outputs(self, patch_norm):
    samples = _samples()
    small = _batch(samples)
    large = _batch(samples, extra_nodes=13, extra_graphs=3)
    model = _model(patch_norm=patch_norm)
    variables = model.init(jax.random.key(0), small, train=False)
    out_small = model.apply(variables, small, train=False)
    out_large = model.apply(variables, large, train=False)
    mask_s = np.asarray(small["knn"].nodes["mask"])
    mask_l = np.asarray(large["knn"].nodes["mask"])
    np.testing.assert_allclose(
        np.asarray(out_small["node_logits"])[mask_s],
        np.asarray(out_large["node_logits"])[mask_l],
        rtol=1e-5, atol=1e-5,
    )
    g_s = np.asarray(small["knn"].globals["mask"])
    g_l = np.asarray(large["knn"].globals["mask"])
    np.testing.assert_allclose(
        np.asarray(out_small["graph_logits"])[g_s],
        np.asarray(out_large["graph_logits"])[g_l],
        rtol=1e-5, atol=1e-5,
    )
    if patch_norm == "batch":
      # Training-mode batch statistics ignore padding nodes too.
      _, s_small = model.apply(variables, small, train=True,
                               mutable=["batch_stats"])
      _, s_large = model.apply(variables, large, train=True,
                               mutable=["batch_stats"])
      jax.tree_util.tree_map(
          lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4,
                                                  atol=1e-6),
          s_small, s_large,
      )

  def test_precomputed_features_input(self):
    batch = _batch(_samples())
    model = _model(node_input="features")
    out, variables = model.init_with_output(
        jax.random.key(0), batch, train=False
    )
    self.assertNotIn("PatchCNN_0", variables["params"])
    self.assertEqual(out["node_logits"].shape[1], 3)

  def test_missing_graph_type_is_a_clear_error(self):
    batch = _batch(_samples())
    del batch["radius"]
    with self.assertRaisesRegex(ValueError, r"lacks graph types \['radius'\]"):
      _model().init(jax.random.key(0), batch, train=False)

  def test_graph_mean_pool_ignores_padding(self):
    x = jnp.arange(12, dtype=jnp.float32).reshape(6, 2)
    n_node = jnp.asarray([2, 3, 1])
    mask = jnp.asarray([True, True, True, True, False, False])
    pooled = mtgcn.graph_mean_pool(x, n_node, mask)
    np.testing.assert_allclose(
        pooled, [[1, 2], [5, 6], [0, 0]], rtol=1e-6
    )


if __name__ == "__main__":
  absltest.main()
