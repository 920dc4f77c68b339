"""Tests for mammojax.models.gnn: PyG parity, padding invariance, nn.scan.

The parity tests build the PyG module, copy its weights through
``params_from_torch_state_dict`` and compare outputs and gradients in float32
eval mode; they are skipped when torch_geometric is not installed.
"""

import functools
import os

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import jraph
import numpy as np
import pytest

from mammojax.models import gnn

RTOL = 1e-5
ATOL = 1e-6

# A 7-node graph: node 5 is isolated, 0->1 is duplicated, 3->3 is a
# self-loop, node 6 only sends.
SENDERS = np.array([0, 0, 1, 2, 3, 4, 0, 6, 2, 4], np.int32)
RECEIVERS = np.array([1, 1, 2, 1, 3, 0, 4, 2, 0, 3], np.int32)
NUM_NODES = 7
ISOLATED = 5


def _torch():
  """Imports torch + PyG or skips the test."""
  torch = pytest.importorskip(
      'torch', reason='torch not installed: PyG parity tests skipped'
  )
  pytest.importorskip(
      'torch_geometric',
      reason='torch_geometric not installed: PyG parity tests skipped',
  )
  torch.manual_seed(0)
  torch.set_num_threads(1)
  torch.set_default_dtype(torch.float32)
  return torch


def _pyg():
  """``torch_geometric.nn`` (after ``_torch`` has checked it exists)."""
  import torch_geometric.nn  # pylint: disable=g-import-not-at-top
  return torch_geometric.nn


def _randomise(torch, module, rng):
  """Non-trivial norm affine params, running stats, t and msg scale."""

  def fill(tensor, sample):
    tensor.copy_(torch.from_numpy(sample(tensor.shape).astype(np.float32)))

  with torch.no_grad():
    for mod in module.modules():
      if isinstance(mod, (torch.nn.BatchNorm1d, torch.nn.LayerNorm)):
        if mod.weight is not None:
          fill(mod.weight, lambda shape: rng.uniform(0.5, 1.5, shape))
          fill(mod.bias, lambda shape: rng.normal(0, 0.3, shape))
      if isinstance(mod, torch.nn.BatchNorm1d):
        fill(mod.running_mean, lambda shape: rng.normal(0, 0.5, shape))
        fill(mod.running_var, lambda shape: rng.uniform(0.5, 2.0, shape))
    for name, p in module.named_parameters(recurse=True):
      if name.endswith('aggr_module.t') or name == 't':
        p.fill_(1.3)
      if (name.endswith('msg_norm.scale') or name == 'scale') and (
          p.requires_grad):
        p.fill_(0.8)


def _to_numpy_sd(module):
  return {k: v.detach().cpu().numpy().copy()
          for k, v in module.state_dict().items()}


def _grads_sd(module):
  """state_dict-shaped dict with each parameter replaced by its gradient."""
  out = _to_numpy_sd(module)
  for k, p in module.named_parameters():
    if p.grad is not None:
      out[k] = p.grad.detach().cpu().numpy().copy()
  return out


def _assert_trees_close(test, actual, expected, what):
  flat_a = jax.tree_util.tree_flatten_with_path(actual)[0]
  flat_e = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
  test.assertEqual(
      sorted(jax.tree_util.keystr(p) for p, _ in flat_a),
      sorted(jax.tree_util.keystr(p) for p in flat_e),
      msg=what,
  )
  for path, a in flat_a:
    _assert_close(a, flat_e[path], f'{what} {jax.tree_util.keystr(path)}')


_ERRORS = []  # (what, max abs err, max err / scale) for the report.


def _assert_close(actual, expected, what='', rtol=RTOL, atol=ATOL):
  """rtol 1e-5 with atol 1e-6 relative to the array's scale.

  float32 sums in a different order leave ~1e-7 * max|x| noise on entries
  near zero; a fixed atol would flag those in deep stacks.
  """
  expected = np.asarray(expected)
  scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
  actual = np.asarray(actual)
  err = float(np.max(np.abs(actual - expected), initial=0.0))
  test = os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]
  _ERRORS.append((f'{test} {what}', err, err / scale))
  np.testing.assert_allclose(
      actual, expected, rtol=rtol, atol=atol * scale, err_msg=what)


def _pad(x, senders, receivers, edge_attr, extra_nodes=3, extra_edges=4):
  """Appends jraph-style padding: self-loops on the first padding node."""
  n = x.shape[0]
  x_pad = np.concatenate(
      [x, np.random.default_rng(9).normal(size=(extra_nodes,) + x.shape[1:])
       .astype(np.float32)]
  )
  loops = np.full(extra_edges, n, np.int32)
  s = np.concatenate([senders, loops])
  r = np.concatenate([receivers, loops])
  ea = None
  if edge_attr is not None:
    ea = np.concatenate(
        [edge_attr, np.ones((extra_edges, edge_attr.shape[1]), np.float32)]
    )
  mask = np.arange(n + extra_nodes) < n
  return x_pad, s, r, ea, mask


@pytest.mark.filterwarnings('ignore:input.s size at dim=0:UserWarning')
class PyGParityTest(parameterized.TestCase):
  """Outputs and grads equal PyG's for the same weights (float32, eval)."""

  def setUp(self):
    super().setUp()
    self.torch = _torch()
    self.rng = np.random.default_rng(0)

  def _edge_index(self, senders=SENDERS, receivers=RECEIVERS):
    return self.torch.from_numpy(
        np.stack([senders, receivers]).astype(np.int64))

  def _torch_forward_backward(self, module, x, edge_attr, cot, *args):
    torch = self.torch
    xt = torch.from_numpy(x).requires_grad_(True)
    eat = None
    if edge_attr is not None:
      eat = torch.from_numpy(edge_attr).requires_grad_(True)
    out = module(xt, self._edge_index(), eat, *args)
    (out * torch.from_numpy(cot)).sum().backward()
    return (
        out.detach().numpy(),
        xt.grad.numpy(),
        None if eat is None else eat.grad.numpy(),
    )

  @parameterized.named_parameters(
      dict(testcase_name='lin_src_dst_edge_msgnorm_learn_t_batch',
           f_in=5, c=4, edge_dim=3, kw=dict(
               aggr='softmax', learn_t=True, msg_norm=True,
               learn_msg_scale=True, norm='batch', bias=True)),
      dict(testcase_name='same_width_softmax_sg_layer_3mlp',
           f_in=4, c=4, edge_dim=4, kw=dict(
               aggr='softmax_sg', t=0.5, norm='layer', num_layers=3)),
      dict(testcase_name='no_edge_attr_mean_instance_msgnorm_fixed',
           f_in=4, c=6, edge_dim=None, kw=dict(
               aggr='mean', norm='instance', msg_norm=True)),
      dict(testcase_name='max_no_norm_1layer',
           f_in=3, c=4, edge_dim=2, kw=dict(
               aggr='max', norm=None, num_layers=1, bias=True)),
      dict(testcase_name='sum_layer_learn_t_default_bias',
           f_in=4, c=4, edge_dim=2, kw=dict(aggr='sum', norm='layer')),
  )
  def test_gen_conv(self, f_in, c, edge_dim, kw):
    pyg = _pyg()

    torch_kw = dict(kw)
    if torch_kw['aggr'] == 'sum':
      torch_kw['aggr'] = 'add'
    tmod = pyg.GENConv(f_in, c, edge_dim=edge_dim, **torch_kw)
    _randomise(self.torch, tmod, self.rng)
    tmod.eval()

    x = self.rng.normal(size=(NUM_NODES, f_in)).astype(np.float32)
    edge_attr = None
    if edge_dim is not None:
      edge_attr = self.rng.normal(size=(len(SENDERS), edge_dim)).astype(
          np.float32
      )
    cot = self.rng.normal(size=(NUM_NODES, c)).astype(np.float32)
    out_t, gx_t, gea_t = self._torch_forward_backward(tmod, x, edge_attr, cot)
    learn_scale = kw.get('learn_msg_scale', False)
    grads_t = gnn.params_from_torch_state_dict(
        _grads_sd(tmod), module='gen_conv', learn_msg_scale=learn_scale
    )['params']
    variables = gnn.params_from_torch_state_dict(
        _to_numpy_sd(tmod), module='gen_conv', learn_msg_scale=learn_scale
    )

    # Both paths against PyG: the fused CPU kernel (gnn.fused; softmax
    # aggregations, built on the first use where a C++ compiler exists) and
    # the jnp fallback / reference.
    outs = {}
    for use_kernel in (True, False):
      with self.subTest(use_kernel=use_kernel):
        outs[use_kernel] = self._check_gen_conv(
            gnn.GENConv(c, use_kernel=use_kernel, **kw), kw, variables,
            grads_t, x, edge_attr, cot, out_t, gx_t, gea_t, learn_scale)
    self.assertEqual(outs[True].shape, (NUM_NODES, c))
    np.testing.assert_allclose(outs[True], outs[False], rtol=1e-5, atol=1e-5)

  def _check_gen_conv(self, mod, kw, variables, grads_t, x, edge_attr, cot,
                      out_t, gx_t, gea_t, learn_scale):
    c = mod.out_channels
    # Padding appended: real rows must equal PyG on the unpadded graph.
    xp, sp, rp, eap, mask = _pad(x, SENDERS, RECEIVERS, edge_attr)
    cotp = np.concatenate([cot, np.zeros((xp.shape[0] - NUM_NODES, c),
                                          np.float32)])

    def loss(params, x, ea):
      out = mod.apply(
          {**variables, 'params': params}, x, sp, rp, ea, node_mask=mask
      )
      return (out * cotp).sum(), out

    (_, out), grads = jax.jit(jax.value_and_grad(
        loss, argnums=(0, 1, 2), has_aux=True))(
        variables['params'], xp, eap)
    _assert_close(out[:NUM_NODES], out_t)
    _assert_close(
        grads[1][:NUM_NODES], gx_t
    )
    if edge_attr is not None:
      _assert_close(
          grads[2][:len(SENDERS)], gea_t
      )
    _assert_trees_close(self, grads[0], grads_t, 'param grads')
    if kw.get('learn_t'):
      self.assertIn('t', grads[0]['aggr_module'])
    if learn_scale:
      self.assertIn('scale', grads[0]['msg_norm'])
    if kw['aggr'] != 'mean':  # Isolated node: only MLP(x_dst) reaches it.
      self.assertTrue(np.all(np.isfinite(out)))
    return np.asarray(out[:NUM_NODES])

  def test_softmax_aggregation(self):
    pyg = _pyg()

    torch = self.torch
    msgs = self.rng.normal(size=(len(SENDERS), 5)).astype(np.float32) * 3
    cot = self.rng.normal(size=(NUM_NODES, 5)).astype(np.float32)
    for learn, semi_grad in ((True, False), (False, True), (False, False)):
      tmod = pyg.aggr.SoftmaxAggregation(
          t=2.0, learn=learn, semi_grad=semi_grad)
      mt = torch.from_numpy(msgs).requires_grad_(True)
      out_t = tmod(mt, torch.from_numpy(RECEIVERS.astype(np.int64)),
                   dim_size=NUM_NODES)
      (out_t * torch.from_numpy(cot)).sum().backward()
      variables = gnn.params_from_torch_state_dict(
          _to_numpy_sd(tmod), module='softmax_aggregation')
      mod = gnn.SoftmaxAggregation(t=2.0, learn=learn, semi_grad=semi_grad)

      def loss(params, m):
        # pylint: disable-next=cell-var-from-loop
        out = mod.apply({'params': params}, m, RECEIVERS, NUM_NODES)
        return (out * cot).sum(), out

      (_, out), (gp, gm) = jax.jit(jax.value_and_grad(
          loss, argnums=(0, 1), has_aux=True))(variables['params'], msgs)
      _assert_close(out, out_t.detach().numpy())
      _assert_close(out[ISOLATED], 0.0)
      _assert_close(gm, mt.grad.numpy())
      if learn:
        _assert_close(gp['t'], tmod.t.grad.numpy())

  def test_message_norm(self):
    pyg = _pyg()

    torch = self.torch
    x = self.rng.normal(size=(6, 4)).astype(np.float32)
    msg = self.rng.normal(size=(6, 3)).astype(np.float32)
    msg[2] = 0.0  # A node without messages.
    x[4] = 0.0
    cot = self.rng.normal(size=(6, 3)).astype(np.float32)
    tmod = pyg.MessageNorm(learn_scale=True)
    with torch.no_grad():
      tmod.scale.fill_(0.7)
    xt = torch.from_numpy(x).requires_grad_(True)
    mt = torch.from_numpy(msg).requires_grad_(True)
    out_t = tmod(xt, mt)
    (out_t * torch.from_numpy(cot)).sum().backward()
    variables = gnn.params_from_torch_state_dict(
        _to_numpy_sd(tmod), module='message_norm', learn_msg_scale=True)
    mod = gnn.MessageNorm(learn_scale=True)

    def loss(params, x, m):
      out = mod.apply({'params': params}, x, m)
      return (out * cot).sum(), out

    (_, out), (gp, gx, gm) = jax.jit(jax.value_and_grad(
        loss, argnums=(0, 1, 2), has_aux=True))(variables['params'], x, msg)
    _assert_close(out, out_t.detach().numpy())
    _assert_close(gx, xt.grad.numpy())
    _assert_close(gm, mt.grad.numpy())
    _assert_close(gp['scale'], tmod.scale.grad.numpy())
    self.assertTrue(np.all(np.isfinite(gm)) and np.all(np.isfinite(gx)))

  @parameterized.parameters(
      ('res+', 'layer'), ('res+', 'batch'), ('res', 'layer'),
      ('dense', 'layer'), ('plain', 'batch'),
  )
  def test_deepgcn_layer(self, block, norm):
    pyg = _pyg()

    torch = self.torch
    c = 4
    norm_t = (torch.nn.LayerNorm(c) if norm == 'layer'
              else torch.nn.BatchNorm1d(c))
    tmod = pyg.DeepGCNLayer(
        pyg.GENConv(c, c, learn_t=True, msg_norm=True, norm='batch'),
        norm_t, torch.nn.ReLU(), block=block, dropout=0.1,
    )
    _randomise(torch, tmod, self.rng)
    tmod.eval()
    x = self.rng.normal(size=(NUM_NODES, c)).astype(np.float32)
    edge_attr = self.rng.normal(size=(len(SENDERS), c)).astype(np.float32)
    width = 2 * c if block == 'dense' else c
    cot = self.rng.normal(size=(NUM_NODES, width)).astype(np.float32)
    out_t, gx_t, _ = self._torch_forward_backward(tmod, x, edge_attr, cot)
    grads_t = gnn.params_from_torch_state_dict(
        _grads_sd(tmod), module='deepgcn_layer')['params']
    variables = gnn.params_from_torch_state_dict(
        _to_numpy_sd(tmod), module='deepgcn_layer')
    mod = gnn.DeepGCNLayer(
        conv=gnn.GENConv(c, learn_t=True, msg_norm=True, norm='batch'),
        norm=norm, block=block, dropout=0.1,
    )

    def loss(params, x):
      out = mod.apply({**variables, 'params': params}, x, SENDERS,
                      RECEIVERS, edge_attr)
      return (out * cot).sum(), out

    (_, out), (gp, gx) = jax.jit(jax.value_and_grad(
        loss, argnums=(0, 1), has_aux=True))(variables['params'], x)
    _assert_close(out, out_t)
    _assert_close(gx, gx_t)
    _assert_trees_close(self, gp, grads_t, 'param grads')

  def test_batchnorm_train_mode(self):
    """Train-mode BatchNorm normalises with the same batch statistics."""
    pyg = _pyg()

    tmod = pyg.GENConv(4, 4, norm='batch', learn_t=True)
    _randomise(self.torch, tmod, self.rng)
    variables = gnn.params_from_torch_state_dict(
        _to_numpy_sd(tmod), module='gen_conv')
    tmod.train()
    x = self.rng.normal(size=(NUM_NODES, 4)).astype(np.float32)
    out_t = tmod(self.torch.from_numpy(x), self._edge_index()).detach().numpy()
    out, updates = jax.jit(functools.partial(
        gnn.GENConv(4, learn_t=True).apply, train=True,
        mutable=['batch_stats']))(variables, x, SENDERS, RECEIVERS)
    _assert_close(out, out_t)
    _assert_close(
        updates['batch_stats']['mlp']['norm_0']['mean'],
        tmod.mlp[1].running_mean.numpy())

  def test_res_plus_stack(self):
    """4-layer ogbn_proteins stack (torch.nn.LayerNorm per node), scanned."""
    pyg = _pyg()

    torch = self.torch
    h, num_layers, f_node, f_edge = 8, 4, 6, 2

    class TorchStack(torch.nn.Module):
      """examples/ogbn_proteins_deepgcn.py without the final Linear."""

      def __init__(self):
        super().__init__()
        self.node_encoder = torch.nn.Linear(f_node, h)
        self.edge_encoder = torch.nn.Linear(f_edge, h)
        self.layers = torch.nn.ModuleList()
        for _ in range(num_layers):
          conv = pyg.GENConv(h, h, aggr='softmax', t=1.0, learn_t=True,
                              num_layers=2, norm='layer')
          self.layers.append(pyg.DeepGCNLayer(
              conv, torch.nn.LayerNorm(h, elementwise_affine=True),
              torch.nn.ReLU(inplace=True), block='res+', dropout=0.1))

      def forward(self, x, edge_index, edge_attr):
        x = self.node_encoder(x)
        edge_attr = self.edge_encoder(edge_attr)
        x = self.layers[0].conv(x, edge_index, edge_attr)
        for layer in self.layers[1:]:
          x = layer(x, edge_index, edge_attr)
        x = self.layers[0].act(self.layers[0].norm(x))
        return torch.nn.functional.dropout(x, p=0.1, training=self.training)

    tmod = TorchStack()
    _randomise(torch, tmod, self.rng)
    with torch.no_grad():  # Distinct t per layer.
      for i, layer in enumerate(tmod.layers):
        layer.conv.aggr_module.t.fill_(0.6 + 0.3 * i)
    tmod.eval()
    x = self.rng.normal(size=(NUM_NODES, f_node)).astype(np.float32)
    edge_attr = self.rng.normal(size=(len(SENDERS), f_edge)).astype(
        np.float32)
    cot = self.rng.normal(size=(NUM_NODES, h)).astype(np.float32)
    out_t, gx_t, gea_t = self._torch_forward_backward(tmod, x, edge_attr, cot)
    grads_t = gnn.params_from_torch_state_dict(
        _grads_sd(tmod), module='deepgcn')['params']
    variables = gnn.params_from_torch_state_dict(
        _to_numpy_sd(tmod), module='deepgcn')
    mod = gnn.DeepGCN(hidden=h, num_layers=num_layers, node_encoder=True,
                      edge_encoder=True)
    xp, sp, rp, eap, mask = _pad(x, SENDERS, RECEIVERS, edge_attr)
    cotp = np.concatenate([cot, np.zeros((xp.shape[0] - NUM_NODES, h),
                                          np.float32)])

    @jax.jit
    def loss(params, x, ea):
      out = mod.apply({'params': params}, x, sp, rp, ea, node_mask=mask)
      return (out * cotp).sum(), out

    (_, out), (gp, gx, gea) = jax.value_and_grad(
        loss, argnums=(0, 1, 2), has_aux=True)(variables['params'], xp, eap)
    _assert_close(out[:NUM_NODES], out_t)
    _assert_close(gx[:NUM_NODES], gx_t)
    _assert_close(gea[:len(SENDERS)], gea_t)
    _assert_trees_close(self, gp, grads_t, 'param grads')
    self.assertEqual(gp['blocks']['conv']['aggr_module']['t'].shape,
                     (num_layers - 1, 1))


def _random_graphs(rng, sizes, f_node=6, f_edge=2):
  graphs = []
  for n in sizes:
    e = 2 * n
    graphs.append(jraph.GraphsTuple(
        nodes={'x': rng.normal(size=(n, f_node)).astype(np.float32)},
        edges=rng.normal(size=(e, f_edge)).astype(np.float32),
        senders=rng.integers(0, n, e).astype(np.int32),
        receivers=rng.integers(0, n, e).astype(np.int32),
        n_node=np.array([n]), n_edge=np.array([e]), globals=None))
  return jraph.batch_np(graphs)


def _apply_graphs(mod, variables, graphs, *, padded=False, **kw):
  # jraph's mask helpers take the last graph as padding, so only use them
  # on padded batches.
  if padded:
    mask = jraph.get_node_padding_mask(graphs)
  else:
    mask = np.ones(graphs.nodes['x'].shape[0], bool)
  fn = jax.jit(functools.partial(mod.apply, **kw))
  return fn(variables, graphs.nodes['x'], graphs.senders, graphs.receivers,
            graphs.edges, node_mask=mask)


class PaddingAndScanTest(parameterized.TestCase):
  """No torch needed."""

  def test_padding_invariance(self):
    """BatchNorm everywhere (train and eval); LayerNorm is per node."""
    norm = 'batch'
    rng = np.random.default_rng(1)
    graphs = _random_graphs(rng, [5, 3, 4])
    padded = jraph.pad_with_graphs(graphs, n_node=20, n_edge=40, n_graph=5)
    mod = gnn.DeepGCN(hidden=8, num_layers=3, node_encoder=True,
                      edge_encoder=True, norm=norm, conv_norm=norm,
                      msg_norm=True, dropout=0.0)
    variables = jax.jit(mod.init)(jax.random.key(0), graphs.nodes['x'],
                                  graphs.senders, graphs.receivers,
                                  graphs.edges)
    n = int(graphs.n_node.sum())
    for train in (False, True):
      out, stats = _apply_graphs(mod, variables, graphs, train=train,
                                 mutable=['batch_stats'])
      out_p, stats_p = _apply_graphs(mod, variables, padded, padded=True,
                                     train=train, mutable=['batch_stats'])
      _assert_close(out_p[:n], out)
      jax.tree.map(
          lambda a, b: _assert_close(a, b),
          stats, stats_p)

  def test_scan_matches_unrolled(self):
    rng = np.random.default_rng(2)
    graphs = _random_graphs(rng, [6, 4])
    kw = dict(hidden=8, num_layers=3, node_encoder=True, edge_encoder=True,
              msg_norm=True, learn_msg_scale=True)
    scanned = gnn.DeepGCN(**kw)
    unrolled = gnn.DeepGCN(**kw, scan=False)
    args = (graphs.nodes['x'], graphs.senders, graphs.receivers, graphs.edges)
    variables = jax.jit(scanned.init)(jax.random.key(0), *args)

    def unstack(tree):
      tree = dict(tree)
      blocks = tree.pop('blocks')
      for i in range(kw['num_layers'] - 1):
        tree[f'blocks_{i + 1}'] = jax.tree.map(lambda a, i=i: a[i], blocks)
      return tree

    unrolled_params = unstack(variables['params'])
    self.assertEqual(
        jax.tree.structure(unrolled_params),
        jax.tree.structure(
            jax.eval_shape(unrolled.init, jax.random.key(0), *args)['params']
        ),
    )

    def loss(mod, params):
      out = mod.apply({'params': params}, *args)
      return jnp.sum(out * jnp.arange(out.size).reshape(out.shape) / out.size)

    grad_fn = jax.jit(jax.value_and_grad(loss, argnums=1), static_argnums=0)
    ls, gs = grad_fn(scanned, variables['params'])
    lu, gu = grad_fn(unrolled, unrolled_params)
    _assert_close(ls, lu)
    jax.tree.map(_assert_close, unstack(gs), gu)
    self.assertEqual(gs['blocks']['conv']['msg_norm']['scale'].shape,
                     (kw['num_layers'] - 1, 1))

  def test_dropout_train_needs_rng_and_is_stochastic(self):
    rng = np.random.default_rng(3)
    graphs = _random_graphs(rng, [5])
    mod = gnn.DeepGCN(hidden=8, num_layers=3, node_encoder=True,
                      edge_encoder=True, dropout=0.5)
    args = (graphs.nodes['x'], graphs.senders, graphs.receivers, graphs.edges)
    variables = jax.jit(mod.init)(jax.random.key(0), *args)
    train_fn = jax.jit(lambda key: mod.apply(
        variables, *args, train=True, rngs={'dropout': key}))
    a, b = train_fn(jax.random.key(1)), train_fn(jax.random.key(2))
    self.assertFalse(np.allclose(a, b))
    self.assertGreater(np.mean(np.asarray(a) == 0), 0.3)  # Final dropout.
    with self.assertRaises(Exception):  # No 'dropout' RNG given.
      jax.eval_shape(lambda: mod.apply(variables, *args, train=True))

  def test_segment_softmax_pure(self):
    logits = jnp.array([[1.0, 2.0], [3.0, -1.0], [0.5, 0.5], [1000.0, 0.0]])
    ids = jnp.array([0, 0, 2, 2])
    w = gnn.segment_softmax(logits, ids, 4)
    sums = jax.ops.segment_sum(w, ids, 4)
    _assert_close(sums[jnp.array([0, 2])], 1.0)
    self.assertTrue(np.all(np.isfinite(w)))
    agg = gnn.softmax_aggregation(logits, ids, 4, 1.0)
    np.testing.assert_array_equal(agg[1], 0.0)
    np.testing.assert_array_equal(agg[3], 0.0)

  @parameterized.named_parameters(
      dict(testcase_name='t_one', t=1.0, semi_grad=False),
      dict(testcase_name='t_float', t=0.5, semi_grad=False),
      dict(testcase_name='t_float_semi_grad', t=2.0, semi_grad=True),
      dict(testcase_name='t_param', t='param', semi_grad=False),
      dict(testcase_name='t_param_semi_grad', t='param', semi_grad=True),
      dict(testcase_name='t_channels', t='channels', semi_grad=False),
      dict(testcase_name='t_scalar_array', t='scalar', semi_grad=False),
  )
  def test_softmax_aggregation_vjp_matches_reference_autodiff(
      self, t, semi_grad):
    """The hand-written VJP equals autodiff of PyG's formulation.

    Duplicate edges, an isolated node, a self-loop, padding edges (self-loops
    on a padding node), large scores (the stop-gradient max matters) and
    unsorted receivers. Checked in float64 (tight: the same math) and in
    float32 at the parity tolerance.
    """
    rng = np.random.default_rng(5)
    num_nodes, channels = 9, 5
    xp, sp, rp, _, _ = _pad(
        np.zeros((NUM_NODES, 1), np.float32), SENDERS, RECEIVERS, None,
        extra_nodes=2, extra_edges=3)
    del xp, sp
    receivers = np.concatenate([rp, rng.integers(0, 5, 6).astype(np.int32)])
    msgs = rng.normal(size=(len(receivers), channels)) * 4
    cot = rng.normal(size=(num_nodes, channels))
    t_value = {
        'param': np.array([1.3]),
        'channels': rng.uniform(0.5, 2.0, channels),
        'scalar': np.array(0.7),
    }.get(t, t)

    def grads(fn, dtype):
      def loss(m, tt):
        out = fn(m, receivers, num_nodes, tt, semi_grad=semi_grad)
        return jnp.sum(out * cot.astype(dtype)), out
      if isinstance(t_value, float):
        (_, out), gm = jax.jit(jax.value_and_grad(
            lambda m: loss(m, t_value), has_aux=True))(msgs.astype(dtype))
        return out, gm, None
      (_, out), (gm, gt) = jax.jit(jax.value_and_grad(
          loss, argnums=(0, 1), has_aux=True))(
              msgs.astype(dtype), t_value.astype(dtype))
      return out, gm, gt

    with jax.enable_x64(True):
      new = grads(gnn.softmax_aggregation, np.float64)
      ref = grads(gnn._softmax_aggregation_reference, np.float64)
      for a, b in zip(new, ref):
        if b is not None:
          self.assertEqual(np.asarray(a).dtype, np.float64)
          np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)
    new = grads(gnn.softmax_aggregation, np.float32)
    ref = grads(gnn._softmax_aggregation_reference, np.float32)
    for a, b, what in zip(new, ref, ('out', 'dm', 'dt')):
      if b is not None:
        self.assertEqual(np.asarray(a).dtype, np.float32)
        self.assertEqual(np.shape(a), np.shape(b))
        # dt sums many cancelling float32 terms (both sides are ~1e-5
        # relative away from float64), hence the looser bound there.
        _assert_close(a, b, what, atol=1e-5 if what == 'dt' else ATOL)
    np.testing.assert_array_equal(new[0][ISOLATED], 0.0)
    if semi_grad and new[2] is not None:
      np.testing.assert_array_equal(new[2], 0.0)

  def test_bad_config_errors(self):
    x = jnp.ones((3, 4))
    s = r = jnp.array([0, 1])
    with self.assertRaisesRegex(ValueError, 'GENConv.aggr'):
      gnn.GENConv(4, aggr='median').init(jax.random.key(0), x, s, r)
    with self.assertRaisesRegex(ValueError, 'semi_grad'):
      gnn.GENConv(4, aggr='softmax_sg', learn_t=True).init(
          jax.random.key(0), x, s, r)
    with self.assertRaisesRegex(ValueError, 'hidden=8'):
      gnn.DeepGCN(hidden=8).init(jax.random.key(0), x, s, r)
    with self.assertRaisesRegex(ValueError, 'not converted'):
      gnn.params_from_torch_state_dict(
          {'lin.weight': np.ones((2, 2))}, module='gen_conv')


def tearDownModule():
  if os.environ.get('MAMMOJAX_PRINT_ERRORS') and _ERRORS:
    per_test = {}
    for what, err, scaled in _ERRORS:
      key = what.split(' ')[0]
      old = per_test.get(key, (0.0, 0.0))
      per_test[key] = (max(old[0], err), max(old[1], scaled))
    print()
    for key, (err, scaled) in sorted(per_test.items()):
      print(f'{key}: max abs err {err:.3g}, max err/scale {scaled:.3g}')


if __name__ == '__main__':
  absltest.main()
