"""PyG ``DeepGCNLayer`` (res+ / res / dense / plain) and the DeepGCN stack.

``DeepGCN`` is the ogbn_proteins-style GENConv stack used by MT-GCN: a bare
first conv, res+ blocks (under ``nn.scan`` by default), then
``act(norm_0(x))`` and dropout.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from mammojax.models.gnn.genconv import GENConv
from mammojax.models.gnn.genconv import _check_choice
from mammojax.models.gnn.norms import _apply_norm
from mammojax.models.gnn.norms import _norm_module
from mammojax.models.gnn.norms import _run_norm
from mammojax.models.gnn.ops import _DROPOUT_BITS
from mammojax.models.gnn.ops import dropout as _dropout
from mammojax.models.gnn.ops import materialize_edges

Array = jax.Array

_BLOCKS = ('res+', 'res', 'dense', 'plain')


def _dropout_fn(
    module: nn.Module, rate: float, bits: int, deterministic: bool
) -> Callable[[Array], Array]:
  """Dropout inside ``module``: ``gnn.dropout`` from ``bits``-bit integers
  (the ``'dropout'`` RNG), or ``flax.linen.Dropout`` itself for 32."""
  if bits not in _DROPOUT_BITS:
    raise ValueError(
        f'DeepGCN.dropout_bits: expected one of {_DROPOUT_BITS}, got {bits}'
    )
  if bits == 32:
    return nn.Dropout(rate, deterministic=deterministic)
  if deterministic or rate == 0.0:
    return lambda h: h
  return lambda h: _dropout(module.make_rng('dropout'), h, rate, bits=bits)


def _block_forward(
    block: str,
    x: Array,
    conv_fn: Callable[[Array], Array],
    norm_fn: Callable[[Array], Array],
    act: Callable[[Array], Array] | None,
    dropout_fn: Callable[[Array], Array],
) -> Array:
  """PyG ``DeepGCNLayer.forward`` with the pieces passed as closures."""
  if block == 'res+':
    h = norm_fn(x)
    if act is not None:
      h = act(h)
    return x + conv_fn(dropout_fn(h))
  h = norm_fn(conv_fn(x))
  if act is not None:
    h = act(h)
  if block == 'res':
    h = x + h
  elif block == 'dense':
    h = jnp.concatenate([x, h], axis=-1)
  return dropout_fn(h)


class DeepGCNLayer(nn.Module):
  """PyG ``DeepGCNLayer``: res+ / res / dense / plain around a conv.

  ``conv`` is an unbound conv module (pass ``parent=None`` when creating it
  inside another module) called as ``conv(x, senders, receivers, edge_attr,
  node_mask=, train=)``; its params live under ``conv``. ``norm`` is a norm
  kind (see ``GENConv.norm``) with params under ``norm``. For res+ / res the
  conv's output width must equal its input width. PyG's ``ckpt_grad`` is
  ``nn.remat`` around this module (``DeepGCN(remat=True)`` does it).
  """

  conv: nn.Module
  norm: str | None = 'layer'
  act: Callable[[Array], Array] | None = nn.relu
  block: str = 'res+'
  dropout: float = 0.0
  # Random bits per dropout draw (gnn.dropout); 32 = flax.linen.Dropout.
  dropout_bits: int = 16

  @nn.compact
  def __call__(
      self,
      x: Array,
      senders: Array,
      receivers: Array,
      edge_attr: Array | None = None,
      *,
      node_mask: Array | None = None,
      train: bool = False,
  ) -> Array:
    """Applies the block; returns ``[N, C]`` (``[N, F + C]`` for dense).

    Dropout (rate ``dropout``) needs the ``'dropout'`` RNG when ``train``.
    """
    _check_choice('DeepGCNLayer.block', self.block, _BLOCKS)
    conv_fn = lambda h: self.conv(
        h, senders, receivers, edge_attr, node_mask=node_mask, train=train
    )
    norm_fn = lambda h: _apply_norm(
        self.norm, h, name='norm', node_mask=node_mask, train=train
    )
    drop = _dropout_fn(self, self.dropout, self.dropout_bits, not train)
    return _block_forward(self.block, x, conv_fn, norm_fn, self.act, drop)


class _ScanBlock(nn.Module):
  """One DeepGCN layer in ``nn.scan`` form: ``(x, None) -> (x, None)``.

  Params sit directly under ``conv`` / ``norm`` (no extra nesting), so a
  stacked tree is ``blocks {conv, norm}``.
  """

  conv_kwargs: tuple[tuple[str, Any], ...]
  norm: str | None
  act: Callable[[Array], Array] | None
  block: str
  dropout: float
  dropout_bits: int
  train: bool

  @nn.compact
  def __call__(self, x, _, senders, receivers, edge_attr, node_mask):
    conv = GENConv(**dict(self.conv_kwargs), name='conv')
    conv_fn = lambda h: conv(
        h, senders, receivers, edge_attr, node_mask=node_mask,
        train=self.train,
    )
    norm_fn = lambda h: _apply_norm(
        self.norm, h, name='norm', node_mask=node_mask, train=self.train
    )
    drop = _dropout_fn(self, self.dropout, self.dropout_bits, not self.train)
    return _block_forward(self.block, x, conv_fn, norm_fn, self.act, drop), None


class _LayerZero(nn.Module):
  """Layer 0 of the stack: a bare conv, and the norm that the head uses."""

  conv_kwargs: tuple[tuple[str, Any], ...]
  norm_kind: str | None

  def setup(self):
    self.conv = GENConv(**dict(self.conv_kwargs))
    self.norm = _norm_module(self.norm_kind)

  def __call__(self, x, senders, receivers, edge_attr, *, node_mask, train):
    return self.conv(
        x, senders, receivers, edge_attr, node_mask=node_mask, train=train
    )

  def head_norm(self, x, *, node_mask, train):
    return _run_norm(self.norm, x, node_mask=node_mask, train=train)


class DeepGCN(nn.Module):
  """The ogbn_proteins / MT-GCN GENConv stack.

  ``x -> node_encoder? -> conv_0 -> res+ layers 1..L-1 -> act(norm_0(x))
  -> dropout``. Defaults follow the MT-GCN authors' public code:
  ``GENConv(h, h, aggr='softmax', t=1.0, learn_t=True, num_layers=2,
  norm='layer')``, 8 layers, LayerNorm, ReLU, dropout 0.1. The res+ layers
  are identical, so they run under ``nn.scan`` (compile time independent of
  depth); ``scan=False`` unrolls them with the same math.
  """

  hidden: int = 128
  num_layers: int = 8
  dropout: float = 0.1
  # Random bits per dropout draw: 16 = gnn.dropout (two draws per threefry
  # word, rate within 2**-17 of `dropout`); 32 = flax.linen.Dropout.
  dropout_bits: int = 16
  block: str = 'res+'
  norm: str | None = 'layer'
  act: Callable[[Array], Array] | None = nn.relu
  # GENConv settings.
  aggr: str = 'softmax'
  t: float = 1.0
  learn_t: bool = True
  msg_norm: bool = False
  learn_msg_scale: bool = False
  conv_norm: str | None = 'layer'
  mlp_layers: int = 2
  expansion: int = 2
  conv_eps: float = 1e-7
  conv_bias: bool = False
  # Linear node / edge encoders to `hidden` (torch Linear has a bias).
  node_encoder: bool = False
  edge_encoder: bool = False
  encoder_bias: bool = True
  scan: bool = True
  remat: bool = False  # PyG ckpt_grad on the res+ layers.

  def _conv_kwargs(self) -> tuple[tuple[str, Any], ...]:
    return (
        ('out_channels', self.hidden),
        ('aggr', self.aggr),
        ('t', self.t),
        ('learn_t', self.learn_t),
        ('msg_norm', self.msg_norm),
        ('learn_msg_scale', self.learn_msg_scale),
        ('norm', self.conv_norm),
        ('num_layers', self.mlp_layers),
        ('expansion', self.expansion),
        ('eps', self.conv_eps),
        ('bias', self.conv_bias),
    )

  @nn.compact
  def __call__(
      self,
      x: Array,
      senders: Array,
      receivers: Array,
      edge_attr: Array | None = None,
      *,
      node_mask: Array | None = None,
      train: bool = False,
  ) -> Array:
    """Node embeddings ``[num_nodes, hidden]``.

    Args:
      x: ``[num_nodes, in_features]`` (``hidden`` wide without node_encoder).
      senders: ``[num_edges]`` sources j.
      receivers: ``[num_edges]`` targets i.
      edge_attr: optional ``[num_edges, edge_features]``.
      node_mask: optional ``[num_nodes]`` bool, True for real nodes.
      train: dropout on (needs the ``'dropout'`` RNG) and BatchNorm in
        training mode.
    """
    _check_choice('DeepGCN.block', self.block, ('res+', 'res', 'plain'))
    if self.num_layers < 1:
      raise ValueError(
          f'DeepGCN.num_layers: expected >= 1, got {self.num_layers}'
      )
    if self.node_encoder:
      x = nn.Dense(
          self.hidden, use_bias=self.encoder_bias, name='node_encoder'
      )(x)
    if edge_attr is not None and self.edge_encoder:
      edge_attr = nn.Dense(
          self.hidden, use_bias=self.encoder_bias, name='edge_encoder'
      )(materialize_edges(edge_attr))
    if x.shape[-1] != self.hidden:
      raise ValueError(
          f'DeepGCN: node features have width {x.shape[-1]}, expected '
          f'hidden={self.hidden} (set node_encoder=True to project them)'
      )
    conv_kwargs = self._conv_kwargs()

    layer_0 = _LayerZero(conv_kwargs, self.norm, name='layer_0')
    x = layer_0(
        x, senders, receivers, edge_attr, node_mask=node_mask, train=train
    )

    block_kwargs = dict(
        conv_kwargs=conv_kwargs,
        norm=self.norm,
        act=self.act,
        block=self.block,
        dropout=self.dropout,
        dropout_bits=self.dropout_bits,
        train=train,
    )
    body = nn.remat(_ScanBlock) if self.remat else _ScanBlock
    num_blocks = self.num_layers - 1
    if num_blocks > 0 and self.scan:
      stack = nn.scan(
          body,
          variable_axes={'params': 0, 'batch_stats': 0},
          split_rngs={'params': True, 'dropout': True},
          in_axes=(nn.broadcast,) * 5,
          length=num_blocks,
      )
      x, _ = stack(**block_kwargs, name='blocks')(
          x, None, senders, receivers, edge_attr, node_mask
      )
    else:
      for i in range(1, self.num_layers):
        x, _ = body(**block_kwargs, name=f'blocks_{i}')(
            x, None, senders, receivers, edge_attr, node_mask
        )

    # ogbn_proteins head: act(layers[0].norm(x)) -> dropout.
    x = layer_0.head_norm(x, node_mask=node_mask, train=train)
    if self.act is not None:
      x = self.act(x)
    return _dropout_fn(self, self.dropout, self.dropout_bits, not train)(x)
