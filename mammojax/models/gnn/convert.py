"""PyG ``state_dict`` (numpy arrays) -> flax variables of the ``gnn`` modules.

Reads the keys of PyG's ``GENConv``, ``DeepGCNLayer``, the ogbn_proteins
stack (``DeepGCN``), ``SoftmaxAggregation``, ``MessageNorm``, ``GCNConv``,
``GATConv``, ``GCN2Conv``, ``NNConv`` and ``AttentionalAggregation``; flax kernels
are torch ``weight.T`` and BatchNorm running statistics go to
``batch_stats``. Takes numpy arrays, so mammojax itself never imports torch.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import numpy as np

_NORM_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


def _put(tree: dict, path: tuple[str, ...], value: np.ndarray) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  if path[-1] in tree:
    raise ValueError(f'duplicate parameter {"/".join(path)}')
  tree[path[-1]] = value


class _Converter:
  """Walks a flat PyG state_dict, recording which keys were consumed."""

  def __init__(self, state_dict: Mapping[str, Any]):
    self.sd = {k: np.array(v) for k, v in state_dict.items()}  # copies
    self.used: set[str] = set()
    self.params: dict = {}
    self.stats: dict = {}

  def take(self, key: str) -> np.ndarray:
    if key not in self.sd:
      raise KeyError(f'state_dict: missing key {key!r}')
    self.used.add(key)
    return self.sd[key]

  def has(self, key: str) -> bool:
    return key in self.sd

  def subkeys(self, prefix: str) -> list[str]:
    return [k for k in self.sd if k.startswith(prefix)]

  def linear(self, prefix: str, path: tuple[str, ...]) -> None:
    _put(self.params, path + ('kernel',), self.take(prefix + 'weight').T)
    if self.has(prefix + 'bias'):
      _put(self.params, path + ('bias',), self.take(prefix + 'bias'))

  def norm(self, prefix: str, path: tuple[str, ...]) -> None:
    """BatchNorm1d / LayerNorm affine params (+ running stats)."""
    if self.has(prefix + 'weight'):
      _put(self.params, path + ('scale',), self.take(prefix + 'weight'))
    if self.has(prefix + 'bias'):
      _put(self.params, path + ('bias',), self.take(prefix + 'bias'))
    if self.has(prefix + 'running_mean'):
      _put(self.stats, path + ('mean',), self.take(prefix + 'running_mean'))
      _put(self.stats, path + ('var',), self.take(prefix + 'running_var'))
      if self.has(prefix + 'num_batches_tracked'):
        self.take(prefix + 'num_batches_tracked')

  def gen_conv(
      self, prefix: str, path: tuple[str, ...], learn_msg_scale: bool
  ) -> None:
    for lin in ('lin_src', 'lin_edge', 'lin_dst'):
      if self.has(f'{prefix}{lin}.weight'):
        self.linear(f'{prefix}{lin}.', path + (lin,))
    if self.subkeys(prefix + 'lin_aggr_out.'):
      raise ValueError('GENConv with multi-aggregation is not supported')
    if self.has(prefix + 'aggr_module.t'):
      t = self.take(prefix + 'aggr_module.t')
      if t.shape != (1,):
        raise ValueError(
            f'{prefix}aggr_module.t: expected shape (1,), got {t.shape}'
        )
      _put(self.params, path + ('aggr_module', 't'), t)
    if self.has(prefix + 'msg_norm.scale'):
      scale = self.take(prefix + 'msg_norm.scale')
      if learn_msg_scale:
        _put(self.params, path + ('msg_norm', 'scale'), scale)
      elif not np.all(scale == 1.0):
        raise ValueError(
            f'{prefix}msg_norm.scale = {scale} with learn_msg_scale=False: '
            'a fixed scale other than 1 is not representable'
        )
    # MLP: Sequential indices; 2-D weights are Linears, the rest norms.
    indices = sorted({
        int(m.group(1))
        for k in self.subkeys(prefix + 'mlp.')
        if (m := re.match(re.escape(prefix) + r'mlp\.(\d+)\.', k))
    })
    n_lin = n_norm = 0
    for idx in indices:
      sub = f'{prefix}mlp.{idx}.'
      if self.has(sub + 'weight') and self.sd[sub + 'weight'].ndim == 2:
        self.linear(sub, path + ('mlp', f'lin_{n_lin}'))
        n_lin += 1
      else:
        self.norm(sub, path + ('mlp', f'norm_{n_norm}'))
        n_norm += 1

  def sequential(self, prefix: str, path: tuple[str, ...]) -> None:
    """``torch.nn.Sequential`` of Linear / ReLU -> ``DenseStack`` params."""
    indices = sorted({
        int(m.group(1))
        for k in self.subkeys(prefix)
        if (m := re.match(re.escape(prefix) + r'(\d+)\.', k))
    })
    if not indices:
      raise KeyError(f'state_dict: no Linear layers under {prefix!r}')
    for n_lin, idx in enumerate(indices):
      sub = f'{prefix}{idx}.'
      if not (self.has(sub + 'weight') and self.sd[sub + 'weight'].ndim == 2):
        raise ValueError(
            f'{sub}: expected a Linear layer (only Linear and ReLU are '
            'supported in a Sequential)')
      self.linear(sub, path + (f'lin_{n_lin}',))

  def plain(self, key: str, path: tuple[str, ...]) -> None:
    """A parameter copied as is (no transpose)."""
    _put(self.params, path, self.take(key))

  def deepgcn_layer(
      self, prefix: str, path: tuple[str, ...], learn_msg_scale: bool
  ) -> None:
    self.gen_conv(prefix + 'conv.', path + ('conv',), learn_msg_scale)
    self.norm(prefix + 'norm.', path + ('norm',))

  def variables(self) -> dict:
    unused = sorted(set(self.sd) - self.used)
    if unused:
      raise ValueError(f'state_dict: keys not converted: {unused}')
    out = {'params': self.params}
    if self.stats:
      out['batch_stats'] = self.stats
    return out


def _stack_trees(trees: list[dict]) -> dict:
  return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def params_from_torch_state_dict(
    state_dict: Mapping[str, Any],
    *,
    module: str = 'deepgcn',
    prefix: str = '',
    learn_msg_scale: bool = False,
    scan: bool = True,
) -> dict[str, dict]:
  """Converts a PyG state_dict (numpy arrays) into flax variables.

  Args:
    state_dict: ``{name: np.ndarray}``, e.g. ``{k: v.detach().numpy() for k, v
      in torch_module.state_dict().items()}``.
    module: what the state_dict holds: ``'gen_conv'`` (a ``GENConv``),
      ``'deepgcn_layer'`` (a ``DeepGCNLayer`` around a GENConv),
      ``'deepgcn'`` (the ogbn_proteins stack: ``node_encoder``,
      ``edge_encoder``, ``layers.{i}``; a final ``lin`` head is not part of
      ``DeepGCN`` and must be left out), ``'softmax_aggregation'``,
      ``'message_norm'``, ``'gcn_conv'`` (``GCNConv``), ``'gat_conv'``
      (``GATConv``), ``'gcn2_conv'`` (``GCN2Conv``; weights not
      transposed), ``'nn_conv'`` (``NNConv`` whose ``nn`` is a Sequential
      of Linear / ReLU) or ``'attentional_aggregation'`` (``gate_nn`` and
      optional ``nn`` Sequentials).
    prefix: prefix of the keys to read (e.g. ``'gnn.'``); every key must
      start with it.
    learn_msg_scale: whether the target module learns the MessageNorm scale
      (PyG stores it either way).
    scan: for ``'deepgcn'``: stack layers 1..L-1 under ``blocks`` (``DeepGCN(
      scan=True)``) or name them ``blocks_{i}``.

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` (``batch_stats`` only with
    BatchNorm) matching the module's param tree.

  Raises:
    ValueError / KeyError naming any key that is missing or not converted.
  """
  foreign = [k for k in state_dict if not k.startswith(prefix)]
  if foreign:
    raise ValueError(f'state_dict: keys without prefix {prefix!r}: {foreign}')
  conv = _Converter(state_dict)
  if module == 'gen_conv':
    conv.gen_conv(prefix, (), learn_msg_scale)
  elif module == 'deepgcn_layer':
    conv.deepgcn_layer(prefix, (), learn_msg_scale)
  elif module == 'softmax_aggregation':
    if conv.has(prefix + 't'):
      _put(conv.params, ('t',), conv.take(prefix + 't'))
  elif module == 'message_norm':
    if learn_msg_scale:
      _put(conv.params, ('scale',), conv.take(prefix + 'scale'))
    elif conv.has(prefix + 'scale'):
      if not np.all(conv.take(prefix + 'scale') == 1.0):
        raise ValueError('message_norm: fixed scale must be 1')
  elif module == 'gcn_conv':
    conv.linear(prefix + 'lin.', ('lin',))
    if conv.has(prefix + 'bias'):
      conv.plain(prefix + 'bias', ('bias',))
  elif module == 'gat_conv':
    if conv.has(prefix + 'lin_src.weight'):
      raise ValueError('GATConv with separate lin_src / lin_dst (bipartite '
                       'in_channels) is not supported')
    if conv.has(prefix + 'lin_edge.weight'):
      raise ValueError('GATConv with edge_dim is not supported')
    conv.linear(prefix + 'lin.', ('lin',))
    for key in ('att_src', 'att_dst', 'bias'):
      if conv.has(prefix + key):
        conv.plain(prefix + key, (key,))
    if conv.has(prefix + 'res.weight'):
      conv.linear(prefix + 'res.', ('res',))
  elif module == 'gcn2_conv':
    for key in ('weight1', 'weight2'):
      if conv.has(prefix + key):
        conv.plain(prefix + key, (key,))
  elif module == 'nn_conv':
    conv.sequential(prefix + 'nn.', ('nn',))
    if conv.has(prefix + 'lin.weight'):
      conv.linear(prefix + 'lin.', ('lin',))
    if conv.has(prefix + 'bias'):
      conv.plain(prefix + 'bias', ('bias',))
  elif module == 'attentional_aggregation':
    if conv.subkeys(prefix + 'gate_mlp.') or conv.subkeys(prefix + 'mlp.'):
      raise ValueError('AttentionalAggregation with torch_geometric MLP '
                       'modules is not supported; use torch.nn.Sequential')
    conv.sequential(prefix + 'gate_nn.', ('gate_nn',))
    if conv.subkeys(prefix + 'nn.'):
      conv.sequential(prefix + 'nn.', ('nn',))
  elif module == 'deepgcn':
    for enc in ('node_encoder', 'edge_encoder'):
      if conv.has(f'{prefix}{enc}.weight'):
        conv.linear(f'{prefix}{enc}.', (enc,))
    layer_ids = sorted({
        int(m.group(1))
        for k in state_dict
        if (m := re.match(re.escape(prefix) + r'layers\.(\d+)\.', k))
    })
    if layer_ids != list(range(len(layer_ids))) or not layer_ids:
      raise ValueError(f'state_dict: expected layers.0..L-1, got {layer_ids}')
    conv.deepgcn_layer(f'{prefix}layers.0.', ('layer_0',), learn_msg_scale)
    if not scan:
      for i in layer_ids[1:]:
        conv.deepgcn_layer(
            f'{prefix}layers.{i}.', (f'blocks_{i}',), learn_msg_scale
        )
    elif len(layer_ids) > 1:
      per_layer = []
      for i in layer_ids[1:]:
        sub = _Converter({})
        sub.sd, sub.used = conv.sd, conv.used
        sub.deepgcn_layer(f'{prefix}layers.{i}.', (), learn_msg_scale)
        per_layer.append((sub.params, sub.stats))
      conv.params['blocks'] = _stack_trees([p for p, _ in per_layer])
      if per_layer[0][1]:
        conv.stats['blocks'] = _stack_trees([s for _, s in per_layer])
  else:
    raise ValueError(
        "module: expected 'gen_conv', 'deepgcn_layer', 'deepgcn', "
        "'softmax_aggregation', 'message_norm', 'gcn_conv', 'gat_conv', "
        f"'gcn2_conv', 'nn_conv' or 'attentional_aggregation', got {module!r}"
    )
  return conv.variables()
