"""PyG ``NNConv``: the edge-conditioned convolution (ECC, Simonovsky 2017).

An edge network maps each edge's features to a ``[F_in, F_out]`` weight
matrix; ``out_i = aggr_{j->i} x_j Theta(e_ji) + x_i W_root + b``.
``nnconv_messages`` is the pure message function; ``NNConv`` declares the
edge network (``nn``, a ``DenseStack``: PyG's ``Sequential(Linear, ReLU,
..., Linear)``), the root weight ``lin`` (no bias) and ``bias``. Aggregations
``add``/``sum``, ``mean`` or ``max`` (``gnn.ops.aggregate``; nodes without
incoming edges get 0, as in PyG).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mammojax.models.gnn.dense import DenseStack
from mammojax.models.gnn.ops import aggregate

Array = jax.Array

_NNCONV_AGGRS = ('add', 'sum', 'mean', 'max')


def nnconv_messages(x_src: Array, edge_weights: Array) -> Array:
  """``[E, F_in] x [E, F_in, F_out] -> [E, F_out]``: ``x_j Theta(e_ji)``."""
  return jnp.einsum('ef,efo->eo', x_src, edge_weights)


class NNConv(nn.Module):
  """PyG ``NNConv``: params ``nn {lin_k}``, ``lin {kernel}``, ``bias``.

  Attributes:
    out_channels: F_out.
    edge_hidden: hidden widths of the edge network (its last layer has
      ``F_in * F_out`` outputs).
    aggr: ``add`` (= ``sum``), ``mean`` or ``max``.
    root_weight: add ``x_i W_root``.
    bias: add ``bias``.
  """

  out_channels: int
  edge_hidden: tuple[int, ...] = ()
  aggr: str = 'add'
  root_weight: bool = True
  bias: bool = True

  @nn.compact
  def __call__(
      self, x: Array, senders: Array, receivers: Array, edge_attr: Array
  ) -> Array:
    """``x [N, F_in]``, ``edge_attr [E, D] -> [N, out_channels]``."""
    if self.aggr not in _NNCONV_AGGRS:
      raise ValueError(
          f'NNConv.aggr: expected one of {_NNCONV_AGGRS}, got {self.aggr!r}')
    num_nodes, f_in = x.shape
    f_out = self.out_channels
    theta = DenseStack(tuple(self.edge_hidden) + (f_in * f_out,),
                       name='nn')(edge_attr).reshape(-1, f_in, f_out)
    msg = nnconv_messages(x[senders], theta)
    out = aggregate(self.aggr, msg, receivers, num_nodes)
    if self.root_weight:
      out = out + nn.Dense(f_out, use_bias=False, name='lin')(x)
    if self.bias:
      out = out + self.param('bias', nn.initializers.zeros, (f_out,),
                             jnp.float32)
    return out
