"""Tests of the MT-GCN method: its loss definition and hooks."""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import numpy as np

from mammojax.methods import mtgcn
from tests.models.mtgcn_test import _batch
from tests.models.mtgcn_test import _model
from tests.models.mtgcn_test import _samples


class MTGCNTaskTest(parameterized.TestCase):

  def _task(self, **kwargs):
    model = _model()
    return model, mtgcn.MTGCNTask(
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
      mtgcn.MTGCNTask(_model(), tasks=("pixel",), graph_types=("knn",))

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
