"""Tests of the MT-GCN model and its losses."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from mammojax.data import batching
from mammojax.data import graphs as graphs_lib
from mammojax.models import mtgcn
from mammojax.training import mtgcn_task


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


class MTGCNTaskTest(parameterized.TestCase):

  def _task(self, **kwargs):
    model = _model()
    return model, mtgcn_task.MTGCNTask(
        model, tasks=("node", "graph"), graph_types=("knn", "radius"),
        **kwargs,
    )

  def test_losses_match_masked_weighted_cross_entropy(self):
    batch = _batch(_samples())
    weights = {"node": np.asarray([1.0, 2.0, 0.5], np.float32)}
    model, task = self._task(class_weights=weights)
    variables = model.init(jax.random.key(0), batch, train=False)
    state = {k: v for k, v in variables.items() if k != "params"}
    sums, (_, out) = task.loss_sums(
        variables["params"], state, batch, None, train=False
    )
    norms = task.normalisers(batch)
    g = batch["knn"]
    mask = np.asarray(g.nodes["mask"])
    labels = np.asarray(g.nodes["label"])[mask]
    logits = np.asarray(out["node_logits"])[mask]
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    w = weights["node"][labels]
    expected = -(w * logp[np.arange(len(labels)), labels]).sum() / w.sum()
    np.testing.assert_allclose(sums[0] / norms[0], expected, rtol=1e-5)
    gmask = np.asarray(g.globals["mask"])
    glabels = np.asarray(g.globals["label"])[gmask]
    glogits = np.asarray(out["graph_logits"])[gmask]
    glogp = glogits - np.log(np.exp(glogits).sum(-1, keepdims=True))
    expected = -glogp[np.arange(len(glabels)), glabels].mean()
    np.testing.assert_allclose(sums[1] / norms[1], expected, rtol=1e-5)

  @parameterized.parameters(("fusion", (32, 32)), ("first_conv", (32, 16)))
  def test_gradnorm_layer_choice(self, layer, shape):
    batch = _batch(_samples())
    model, task = self._task(gradnorm_layer=layer)
    params = model.init(jax.random.key(0), batch, train=False)["params"]
    self.assertEqual(task.gradnorm_layer(params).shape, shape)

  def test_unknown_choices_name_the_config_key(self):
    with self.assertRaisesRegex(ValueError, r"config.gradnorm.layer='x'"):
      self._task(gradnorm_layer="x")
    with self.assertRaisesRegex(ValueError, r"config.tasks: unknown task"):
      mtgcn_task.MTGCNTask(_model(), tasks=("pixel",), graph_types=("knn",))

  def test_distillation_mixes_soft_and_hard_targets(self):
    batch = _batch(_samples())
    model, plain = self._task()
    _, distilled = self._task(distill_temperature=2.0, distill_alpha=1.0)
    variables = model.init(jax.random.key(0), batch, train=False)
    out = model.apply(variables, batch, train=False)
    g = batch["knn"]
    # A teacher equal to the student: the soft loss is T^2 * entropy.
    nodes = dict(g.nodes, teacher_logits=np.asarray(out["node_logits"]))
    batch = {k: v._replace(nodes=nodes) for k, v in batch.items()}
    state = {k: v for k, v in variables.items() if k != "params"}
    sums, _ = distilled.loss_sums(
        variables["params"], state, batch, None, train=False
    )
    mask = np.asarray(g.nodes["mask"])
    p = jax.nn.softmax(np.asarray(out["node_logits"])[mask] / 2.0)
    entropy = -(p * np.log(p)).sum(-1).sum()
    np.testing.assert_allclose(sums[0], 4.0 * entropy, rtol=1e-4)
    hard, _ = plain.loss_sums(
        variables["params"], state, batch, None, train=False
    )
    # No graph teacher: the graph task keeps its hard loss.
    np.testing.assert_allclose(sums[1], hard[1], rtol=1e-6)


if __name__ == "__main__":
  absltest.main()
