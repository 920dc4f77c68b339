"""PyG parity of GCNConv, GATConv, GCN2Conv, NNConv, AttentionalAggregation.

Each test builds the PyG module (torch_geometric, the ``bench`` extra),
copies its weights through ``params_from_torch_state_dict`` and compares the
outputs and the gradients (input features, edge features, every parameter)
to rtol 1e-5 in float32 on a random graph with an isolated node, duplicate
edges and a self-loop, with jraph-style padding appended on the mammojax side
(padding nodes and self-loop edges on the first padding node).
"""

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch_geometric.nn as pyg

from mammojax.models import gnn

RTOL = 1e-5
ATOL = 1e-6


def random_graph(rng, num_nodes=9, num_edges=20):
  """Random edges + duplicates + a self-loop; node ``num_nodes - 1`` isolated."""
  s = rng.integers(0, num_nodes - 1, num_edges).astype(np.int32)
  r = rng.integers(0, num_nodes - 1, num_edges).astype(np.int32)
  s = np.concatenate([s, s[:3], [2, 2]]).astype(np.int32)  # Duplicates.
  r = np.concatenate([r, r[:3], [2, 2]]).astype(np.int32)  # Double loop 2->2.
  return s, r, num_nodes


def pad(x, senders, receivers, edge_attr=None, extra_nodes=3, extra_edges=5):
  """jraph-style padding: extra nodes, self-loops on the first of them."""
  n = x.shape[0]
  rng = np.random.default_rng(9)
  xp = np.concatenate(
      [x, rng.normal(size=(extra_nodes,) + x.shape[1:]).astype(np.float32)])
  loops = np.full(extra_edges, n, np.int32)
  sp = np.concatenate([senders, loops])
  rp = np.concatenate([receivers, loops])
  eap = None
  if edge_attr is not None:
    eap = np.concatenate(
        [edge_attr, np.ones((extra_edges, edge_attr.shape[1]), np.float32)])
  return xp, sp, rp, eap


def state_dict(module):
  return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def grads_dict(module):
  out = state_dict(module)
  for k, p in module.named_parameters():
    out[k] = p.grad.detach().numpy().copy()
  return out


def assert_close(actual, expected, what):
  expected = np.asarray(expected)
  scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
  np.testing.assert_allclose(np.asarray(actual), expected, rtol=RTOL,
                             atol=ATOL * scale, err_msg=what)


def assert_trees_close(test, actual, expected, what):
  flat_a = jax.tree_util.tree_flatten_with_path(actual)[0]
  flat_e = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
  test.assertEqual(sorted(jax.tree_util.keystr(p) for p, _ in flat_a),
                   sorted(jax.tree_util.keystr(p) for p in flat_e), msg=what)
  for path, a in flat_a:
    assert_close(a, flat_e[path], f'{what} {jax.tree_util.keystr(path)}')


class PyGLayerParityTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    self.rng = np.random.default_rng(0)
    self.s, self.r, self.n = random_graph(self.rng)
    self.edge_index = torch.from_numpy(
        np.stack([self.s, self.r]).astype(np.int64))

  def _randomise_biases(self, module):
    with torch.no_grad():
      for name, p in module.named_parameters():
        if name.endswith('bias'):
          p.copy_(torch.from_numpy(
              self.rng.normal(0, 0.5, p.shape).astype(np.float32)))

  def _compare(self, tmod, module_name, jax_fn, x, cot, extra=(),
               edge_attr=None):
    """Runs torch forward/backward and the jax fn on the padded graph.

    ``jax_fn(variables, x, edge_attr, senders, receivers) -> out``.
    """
    xt = torch.from_numpy(x).requires_grad_(True)
    eat = None if edge_attr is None else (
        torch.from_numpy(edge_attr).requires_grad_(True))
    extra_t = [torch.from_numpy(e).requires_grad_(True) for e in extra]
    out_t = tmod(xt, *extra_t, self.edge_index,
                 *(() if eat is None else (eat,)))
    (out_t * torch.from_numpy(cot)).sum().backward()
    variables = gnn.params_from_torch_state_dict(state_dict(tmod),
                                                 module=module_name)
    grads_t = gnn.params_from_torch_state_dict(grads_dict(tmod),
                                               module=module_name)['params']
    xp, sp, rp, eap = pad(x, self.s, self.r, edge_attr)
    extra_p = [pad(e, self.s, self.r)[0] for e in extra]
    cotp = np.concatenate(
        [cot, np.zeros((xp.shape[0] - self.n, cot.shape[1]), np.float32)])

    def loss(params, x, ea, extra):
      out = jax_fn({'params': params}, x, ea, sp, rp, *extra)
      return jnp.sum(out * cotp), out

    (_, out), grads = jax.jit(jax.value_and_grad(
        loss, argnums=(0, 1, 2, 3), has_aux=True))(
            variables['params'], xp, eap, extra_p)
    assert_close(out[:self.n], out_t.detach().numpy(), 'output')
    self.assertTrue(np.all(np.isfinite(np.asarray(out))))
    assert_close(grads[1][:self.n], xt.grad.numpy(), 'grad x')
    for k, e in enumerate(extra_t):
      assert_close(grads[3][k][:self.n], e.grad.numpy(), f'grad extra {k}')
    if edge_attr is not None:
      assert_close(grads[2][:len(self.s)], eat.grad.numpy(), 'grad edge')
    assert_trees_close(self, grads[0], grads_t, 'param grads')
    return np.asarray(out)

  @parameterized.named_parameters(
      dict(testcase_name='default', kw={}),
      dict(testcase_name='improved_no_bias', kw=dict(improved=True,
                                                     bias=False)),
      dict(testcase_name='no_self_loops', kw=dict(add_self_loops=False)),
      dict(testcase_name='no_normalize', kw=dict(normalize=False)),
  )
  def test_gcn_conv(self, kw):
    # improved=True is a no-op in PyG on unweighted graphs; the weighted
    # case is test_gcn_conv_weighted.
    tmod = pyg.GCNConv(5, 4, **kw)
    self._randomise_biases(tmod)
    x = self.rng.normal(size=(self.n, 5)).astype(np.float32)
    cot = self.rng.normal(size=(self.n, 4)).astype(np.float32)
    mod = gnn.GCNConv(4, **kw)
    out = self._compare(
        tmod, 'gcn_conv',
        lambda v, x, ea, s, r: mod.apply(v, x, s, r), x, cot)
    if kw.get('add_self_loops', True) and kw.get('normalize', True):
      # The isolated node sees only its own (normalised) self-loop.
      bias = 0 if not kw.get('bias', True) else np.asarray(
          state_dict(tmod)['bias'])
      lin = x[self.n - 1] @ state_dict(tmod)['lin.weight'].T
      np.testing.assert_allclose(out[self.n - 1], lin + bias, rtol=1e-5,
                                 atol=1e-6)

  @parameterized.named_parameters(
      dict(testcase_name='plain', improved=False),
      dict(testcase_name='improved', improved=True),
  )
  def test_gcn_conv_weighted(self, improved):
    tmod = pyg.GCNConv(5, 4, improved=improved)
    self._randomise_biases(tmod)
    x = self.rng.normal(size=(self.n, 5)).astype(np.float32)
    w = self.rng.uniform(0.2, 2.0, len(self.s)).astype(np.float32)
    cot = self.rng.normal(size=(self.n, 4)).astype(np.float32)
    xt = torch.from_numpy(x).requires_grad_(True)
    out_t = tmod(xt, self.edge_index, torch.from_numpy(w))
    (out_t * torch.from_numpy(cot)).sum().backward()
    variables = gnn.params_from_torch_state_dict(state_dict(tmod),
                                                 module='gcn_conv')
    mod = gnn.GCNConv(4, improved=improved)
    xp, sp, rp, _ = pad(x, self.s, self.r)
    wp = np.concatenate([w, np.ones(len(sp) - len(w), np.float32)])

    def loss(x):
      out = mod.apply(variables, x, sp, rp, wp)
      return jnp.sum(out[:self.n] * cot), out

    (_, out), gx = jax.value_and_grad(loss, has_aux=True)(xp)
    assert_close(out[:self.n], out_t.detach().numpy(), 'output')
    assert_close(gx[:self.n], xt.grad.numpy(), 'grad x')
    # The isolated node's loop weight (1 or 2) cancels in the normalisation.
    sd = state_dict(tmod)
    np.testing.assert_allclose(
        np.asarray(out)[self.n - 1],
        x[self.n - 1] @ sd['lin.weight'].T + sd['bias'], rtol=1e-5,
        atol=1e-6)

  @parameterized.named_parameters(
      dict(testcase_name='heads3_concat', kw=dict(heads=3)),
      dict(testcase_name='heads2_mean_slope_residual',
           kw=dict(heads=2, concat=False, negative_slope=0.1,
                   residual=True)),
      dict(testcase_name='no_self_loops_no_bias',
           kw=dict(heads=2, add_self_loops=False, bias=False)),
  )
  def test_gat_conv(self, kw):
    tmod = pyg.GATConv(5, 4, **kw)
    self._randomise_biases(tmod)
    tmod.eval()
    x = self.rng.normal(size=(self.n, 5)).astype(np.float32)
    width = 4 * kw['heads'] if kw.get('concat', True) else 4
    cot = self.rng.normal(size=(self.n, width)).astype(np.float32)
    mod = gnn.GATConv(4, **kw)
    out = self._compare(tmod, 'gat_conv',
                        lambda v, x, ea, s, r: mod.apply(v, x, s, r), x, cot)
    self.assertEqual(out.shape[1], width)
    self.assertGreater(float(np.std(out[:self.n])), 1e-3)

  def test_gat_attention_dropout(self):
    mod = gnn.GATConv(4, heads=2, dropout=0.5)
    x = self.rng.normal(size=(self.n, 5)).astype(np.float32)
    v = mod.init(jax.random.key(0), x, self.s, self.r)
    eval_out = mod.apply(v, x, self.s, self.r)
    out1 = mod.apply(v, x, self.s, self.r, train=True,
                     rngs={'dropout': jax.random.key(1)})
    out2 = mod.apply(v, x, self.s, self.r, train=True,
                     rngs={'dropout': jax.random.key(2)})
    self.assertGreater(float(jnp.max(jnp.abs(out1 - out2))), 1e-3)
    self.assertGreater(float(jnp.max(jnp.abs(out1 - eval_out))), 1e-3)
    # Masked edges (the removed self-loops) get exactly 0 and the others
    # sum to 1 per receiver.
    a = gnn.gat_attention(
        jnp.ones((self.n, 2)), jnp.ones((self.n, 2)), self.s, self.r,
        self.n, edge_mask=self.s != self.r)
    sums = jax.ops.segment_sum(a, self.r, self.n)
    has_in = np.bincount(self.r[self.s != self.r], minlength=self.n) > 0
    np.testing.assert_allclose(np.asarray(sums)[has_in], 1.0, rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(a)[self.s == self.r], 0.0)

  @parameterized.named_parameters(
      dict(testcase_name='shared', kw=dict(alpha=0.1)),
      dict(testcase_name='theta_layer_separate',
           kw=dict(alpha=0.2, theta=0.5, layer=3, shared_weights=False)),
  )
  def test_gcn2_conv(self, kw):
    tmod = pyg.GCN2Conv(6, **kw)
    x = self.rng.normal(size=(self.n, 6)).astype(np.float32)
    x0 = self.rng.normal(size=(self.n, 6)).astype(np.float32)
    cot = self.rng.normal(size=(self.n, 6)).astype(np.float32)
    mod = gnn.GCN2Conv(6, **kw)
    out = self._compare(tmod, 'gcn2_conv',
                        lambda v, x, ea, s, r, x0: mod.apply(v, x, x0, s, r),
                        x, cot, extra=(x0,))
    self.assertEqual(out.shape[1], 6)
    self.assertGreater(float(np.std(out[:self.n])), 1e-3)

  @parameterized.named_parameters(
      dict(testcase_name='add_hidden', aggr='add', hidden=(8,)),
      dict(testcase_name='mean_linear', aggr='mean', hidden=()),
  )
  def test_nn_conv(self, aggr, hidden):
    layers, width = [], 3
    for h in hidden:
      layers += [torch.nn.Linear(width, h), torch.nn.ReLU()]
      width = h
    layers.append(torch.nn.Linear(width, 5 * 4))
    tmod = pyg.NNConv(5, 4, torch.nn.Sequential(*layers), aggr=aggr)
    self._randomise_biases(tmod)
    x = self.rng.normal(size=(self.n, 5)).astype(np.float32)
    ea = self.rng.normal(size=(len(self.s), 3)).astype(np.float32)
    cot = self.rng.normal(size=(self.n, 4)).astype(np.float32)
    mod = gnn.NNConv(4, edge_hidden=hidden, aggr=aggr)
    out = self._compare(
        tmod, 'nn_conv',
        lambda v, x, ea, s, r: mod.apply(v, x, s, r, ea), x, cot,
        edge_attr=ea)
    # Isolated node: root weight and bias only.
    sd = state_dict(tmod)
    np.testing.assert_allclose(
        out[self.n - 1], x[self.n - 1] @ sd['lin.weight'].T + sd['bias'],
        rtol=1e-5, atol=1e-6)

  @parameterized.named_parameters(
      dict(testcase_name='gate_only', gate=(4, 1), feat=()),
      dict(testcase_name='gate_channels_and_nn', gate=(3,), feat=(6, 3)),
  )
  def test_attentional_aggregation(self, gate, feat):

    def seq(widths, width=5):
      layers = []
      for i, h in enumerate(widths):
        layers.append(torch.nn.Linear(width, h))
        if i < len(widths) - 1:
          layers.append(torch.nn.ReLU())
        width = h
      return torch.nn.Sequential(*layers)

    tmod = pyg.AttentionalAggregation(seq(gate), seq(feat) if feat else None)
    # Three graphs of 4, 0 (empty) and 5 nodes; 2 padding nodes after.
    x = self.rng.normal(size=(9, 5)).astype(np.float32)
    ids = np.array([0] * 4 + [2] * 5, np.int64)
    xt = torch.from_numpy(x).requires_grad_(True)
    out_t = tmod(xt, torch.from_numpy(ids), dim_size=3)
    c = out_t.shape[1]
    cot = self.rng.normal(size=(3, c)).astype(np.float32)
    (out_t * torch.from_numpy(cot)).sum().backward()
    variables = gnn.params_from_torch_state_dict(
        state_dict(tmod), module='attentional_aggregation')
    grads_t = gnn.params_from_torch_state_dict(
        grads_dict(tmod), module='attentional_aggregation')['params']
    mod = gnn.AttentionalAggregation(gate_features=gate, nn_features=feat)
    xp = np.concatenate([x, np.full((2, 5), 7.0, np.float32)])
    idp = np.concatenate([ids, [2, 2]]).astype(np.int32)
    mask = np.arange(11) < 9

    def loss(params, x):
      out = mod.apply({'params': params}, x, idp, 3, mask)
      return jnp.sum(out * cot), out

    (_, out), grads = jax.jit(jax.value_and_grad(
        loss, argnums=(0, 1), has_aux=True))(variables['params'], xp)
    assert_close(out, out_t.detach().numpy(), 'output')
    np.testing.assert_array_equal(np.asarray(out)[1], 0.0)  # Empty graph.
    assert_close(grads[1][:9], xt.grad.numpy(), 'grad x')
    np.testing.assert_array_equal(np.asarray(grads[1])[9:], 0.0)
    assert_trees_close(self, grads[0], grads_t, 'param grads')

  def test_converter_errors(self):
    with self.assertRaisesRegex(ValueError, 'not converted'):
      gnn.params_from_torch_state_dict(
          {'lin.weight': np.ones((2, 2)), 'extra': np.ones(2)},
          module='gcn_conv')
    with self.assertRaisesRegex(ValueError, 'edge_dim is not supported'):
      gnn.params_from_torch_state_dict(
          state_dict(pyg.GATConv(3, 2, edge_dim=2)), module='gat_conv')
    with self.assertRaisesRegex(ValueError, 'theta and layer'):
      gnn.GCN2Conv(4, alpha=0.1, theta=0.5).init(
          jax.random.key(0), jnp.ones((3, 4)), jnp.ones((3, 4)),
          jnp.array([0]), jnp.array([1]))
    with self.assertRaisesRegex(ValueError, 'NNConv.aggr'):
      gnn.NNConv(2, aggr='softmax').init(
          jax.random.key(0), jnp.ones((3, 4)), jnp.array([0]),
          jnp.array([1]), jnp.ones((1, 2)))


if __name__ == '__main__':
  absltest.main()
