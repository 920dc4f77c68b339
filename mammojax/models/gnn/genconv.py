"""PyG ``GENConv`` and its parts as thin linen modules.

``SoftmaxAggregation`` (learnable ``t``), ``MessageNorm`` (learnable scale),
GENConv's ``MLP`` and ``GENConv`` itself (DeeperGCN, Li et al. 2020). They
declare params and call the pure functions of ``gnn.ops``; param names
follow PyG's module names (see the ``gnn`` package docstring).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mammojax.models.gnn import fused
from mammojax.models.gnn.norms import _NORMS
from mammojax.models.gnn.norms import _apply_norm
from mammojax.models.gnn.ops import _AGGRS
from mammojax.models.gnn.ops import AffineEdges
from mammojax.models.gnn.ops import aggregate
from mammojax.models.gnn.ops import genconv_messages
from mammojax.models.gnn.ops import materialize_edges
from mammojax.models.gnn.ops import message_norm
from mammojax.models.gnn.ops import softmax_aggregation

Array = jax.Array


def _check_choice(field: str, value: Any, choices: tuple[Any, ...]) -> None:
  if value not in choices:
    raise ValueError(f'{field}: expected one of {choices}, got {value!r}')


class SoftmaxAggregation(nn.Module):
  """PyG ``SoftmaxAggregation`` (``channels=1``); param ``t: [1]`` if learn.

  With ``fused_message=(x_src, emb, senders, eps)`` (and ``messages=None``)
  the messages ``relu(x_src[senders] + emb) + eps`` are built and
  aggregated by the fused CPU kernel (``gnn.fused``), same params.
  """

  t: float = 1.0
  learn: bool = False
  semi_grad: bool = False

  @nn.compact
  def __call__(
      self,
      messages: Array | None,
      receivers: Array,
      num_nodes: int,
      *,
      fused_message: (
          tuple[Array, Array | AffineEdges | None, Array, float] | None
      ) = None,
  ) -> Array:
    if self.learn and self.semi_grad:
      raise ValueError(
          "SoftmaxAggregation: 'semi_grad' cannot be used with a learnable t"
      )
    t = self.t
    if self.learn:
      t = self.param('t', nn.initializers.constant(self.t), (1,), jnp.float32)
    if fused_message is not None:
      x_src, emb, senders, eps = fused_message
      return fused.genconv_message_softmax(
          x_src, emb, senders, receivers, num_nodes, t, eps=eps,
          semi_grad=self.semi_grad,
      )
    return softmax_aggregation(
        messages, receivers, num_nodes, t, semi_grad=self.semi_grad
    )


class MessageNorm(nn.Module):
  """PyG ``MessageNorm``; param ``scale: [1]`` only if ``learn_scale``."""

  learn_scale: bool = False
  scale_init: float = 1.0

  @nn.compact
  def __call__(self, x: Array, msg: Array) -> Array:
    scale = self.scale_init
    if self.learn_scale:
      scale = self.param(
          'scale', nn.initializers.constant(self.scale_init), (1,), jnp.float32
      )
    return message_norm(x, msg, scale)


class MLP(nn.Module):
  """GENConv's MLP: (Dense -> norm -> ReLU) x (L-1) -> Dense (no dropout).

  PyG adds ``Dropout(0.0)`` after each ReLU, a no-op left out here.
  """

  channels: tuple[int, ...]
  norm: str | None = 'batch'
  bias: bool = False

  @nn.compact
  def __call__(
      self, h: Array, *, node_mask: Array | None = None, train: bool = False
  ) -> Array:
    num = len(self.channels) - 1
    for i in range(num):
      h = nn.Dense(self.channels[i + 1], use_bias=self.bias, name=f'lin_{i}')(h)
      if i < num - 1:
        h = _apply_norm(
            self.norm, h, name=f'norm_{i}', node_mask=node_mask, train=train
        )
        h = nn.relu(h)
    return h


class GENConv(nn.Module):
  """PyG ``GENConv`` (DeeperGCN generalized aggregation conv).

  ``m_ji = relu(x_src[j] + lin_edge(e_ji)) + eps``, aggregated at i, optional
  MessageNorm against the raw ``x_i``, plus ``lin_dst(x_i)``, then an MLP
  with channels ``[C] + [C * expansion] * (num_layers - 1) + [C]``.
  ``lin_src``/``lin_dst`` exist when the input width differs from
  ``out_channels`` and ``lin_edge`` when the edge width does (PyG needs
  ``edge_dim`` for that; here it is read from ``edge_attr``).
  """

  out_channels: int
  aggr: str = 'softmax'
  t: float = 1.0
  learn_t: bool = False
  msg_norm: bool = False
  learn_msg_scale: bool = False
  norm: str | None = 'batch'
  num_layers: int = 2
  expansion: int = 2
  eps: float = 1e-7
  bias: bool = False  # PyG code default (its docstring says True).
  # Softmax aggregations on the CPU run the fused C++ kernel (gnn.fused)
  # where it is built and MAMMOJAX_GENCONV_KERNEL != 0; False: always jnp.
  use_kernel: bool = True

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
    """Applies the conv.

    Args:
      x: ``[num_nodes, in_features]``.
      senders: ``[num_edges]`` source j of each edge.
      receivers: ``[num_edges]`` target i of each edge.
      edge_attr: optional ``[num_edges, edge_features]``, or
        ``gnn.AffineEdges`` (a linear edge encoding kept factored: the fused
        CPU kernel forms it per edge, the jnp path multiplies it out).
      node_mask: optional ``[num_nodes]`` bool, True for real nodes; keeps
        padding out of BatchNorm statistics.
      train: batch statistics (and their update) for BatchNorm.

    Returns:
      ``[num_nodes, out_channels]``.
    """
    _check_choice('GENConv.aggr', self.aggr, _AGGRS)
    _check_choice('GENConv.norm', self.norm, _NORMS)
    if self.num_layers < 1:
      raise ValueError(
          f'GENConv.num_layers: expected >= 1, got {self.num_layers}'
      )
    c = self.out_channels
    num_nodes = x.shape[0]
    dense = lambda name: nn.Dense(c, use_bias=self.bias, name=name)

    x_src = dense('lin_src')(x) if x.shape[-1] != c else x
    if edge_attr is not None and edge_attr.shape[-1] != c:
      edge_attr = dense('lin_edge')(materialize_edges(edge_attr))
    softmax = self.aggr in ('softmax', 'softmax_sg')
    if softmax and self.use_kernel and fused.use_kernel(
        x_src, *jax.tree.leaves(edge_attr)
    ):
      # Message + softmax aggregation in one fused CPU kernel (gnn.fused).
      out = SoftmaxAggregation(
          t=self.t,
          learn=self.learn_t,
          semi_grad=self.aggr == 'softmax_sg',
          name='aggr_module',
      )(None, receivers, num_nodes,
        fused_message=(x_src, edge_attr, senders, self.eps))
      return self._finish(x, out, c, dense, node_mask, train)
    msg = genconv_messages(x_src, edge_attr, senders, self.eps)

    if softmax:
      out = SoftmaxAggregation(
          t=self.t,
          learn=self.learn_t,
          semi_grad=self.aggr == 'softmax_sg',
          name='aggr_module',
      )(msg, receivers, num_nodes)
    else:
      out = aggregate(self.aggr, msg, receivers, num_nodes)

    return self._finish(x, out, c, dense, node_mask, train)

  def _finish(self, x, out, c, dense, node_mask, train):
    """MessageNorm, ``+ lin_dst(x)`` and the MLP (after the aggregation)."""
    if self.msg_norm:
      out = MessageNorm(learn_scale=self.learn_msg_scale, name='msg_norm')(
          x, out
      )

    out = out + (dense('lin_dst')(x) if x.shape[-1] != c else x)
    channels = (c,) + (c * self.expansion,) * (self.num_layers - 1) + (c,)
    return MLP(channels, norm=self.norm, bias=self.bias, name='mlp')(
        out, node_mask=node_mask, train=train
    )
