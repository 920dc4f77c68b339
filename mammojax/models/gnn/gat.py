"""PyG ``GATConv`` (Velickovic et al. 2018): multi-head graph attention.

``gat_attention`` is the pure edge softmax, ``GATConv`` the linen module:

* ``h = x W`` viewed as ``[N, H, C]`` (``lin``, no bias);
  ``a_src = <h, att_src>``, ``a_dst = <h, att_dst>`` per head;
* with ``add_self_loops`` every existing self-loop is removed and one loop
  per node added (PyG ``remove_self_loops`` + ``add_self_loops``; here the
  old loops stay in the arrays with an attention of exactly 0);
* ``e_ji = leaky_relu(a_src[j] + a_dst[i], negative_slope)``, softmax over
  the edges into i (PyG's softmax: max under stop_gradient, ``+1e-16``),
  dropout on the coefficients when training;
* ``out_i = sum_j alpha_ji h_j``, heads concatenated (``[N, H C]``) or
  averaged (``[N, C]``), plus the optional residual ``res(x)`` and ``bias``.

Duplicate edges are separate softmax entries (as in PyG). Edge features
(PyG's ``edge_dim``) are not supported.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mammojax.models.gnn.ops import segment_softmax

Array = jax.Array


def gat_attention(
    a_src: Array,
    a_dst: Array,
    senders: Array,
    receivers: Array,
    num_nodes: int,
    *,
    negative_slope: float = 0.2,
    edge_mask: Array | None = None,
) -> Array:
  """Attention coefficients ``[E, H]`` of each edge j -> i (PyG GATConv).

  Args:
    a_src: ``[N, H]`` source scores.
    a_dst: ``[N, H]`` target scores.
    senders: ``[E]``.
    receivers: ``[E]``.
    num_nodes: static N.
    negative_slope: of the leaky ReLU.
    edge_mask: optional ``[E]`` bool; False edges get an attention of 0.

  Returns:
    ``[E, H]``, summing to 1 over the (unmasked) edges into each node.
  """
  logits = jax.nn.leaky_relu(a_src[senders] + a_dst[receivers], negative_slope)
  if edge_mask is not None:
    logits = jnp.where(edge_mask[:, None], logits, -jnp.inf)
  alpha = segment_softmax(logits, receivers, num_nodes)
  if edge_mask is not None:
    alpha = jnp.where(edge_mask[:, None], alpha, 0.0)
  return alpha


class GATConv(nn.Module):
  """PyG ``GATConv``: ``lin``, ``att_src/att_dst [1, H, C]``, ``bias``, ``res``."""

  out_channels: int
  heads: int = 1
  concat: bool = True
  negative_slope: float = 0.2
  dropout: float = 0.0
  add_self_loops: bool = True
  bias: bool = True
  residual: bool = False

  @nn.compact
  def __call__(
      self,
      x: Array,
      senders: Array,
      receivers: Array,
      *,
      train: bool = False,
  ) -> Array:
    """``[N, F] -> [N, H * C]`` (concat) or ``[N, C]``.

    Dropout on the attention needs the ``'dropout'`` rng when training.
    """
    num_nodes = x.shape[0]
    hh, c = self.heads, self.out_channels
    glorot = nn.initializers.glorot_uniform()
    total = hh * c if self.concat else c
    h = nn.Dense(hh * c, use_bias=False, kernel_init=glorot, name='lin')(x)
    h = h.reshape(num_nodes, hh, c)
    att_src = self.param('att_src', glorot, (1, hh, c), jnp.float32)
    att_dst = self.param('att_dst', glorot, (1, hh, c), jnp.float32)
    a_src = jnp.sum(h * att_src, -1)
    a_dst = jnp.sum(h * att_dst, -1)
    edge_mask = None
    if self.add_self_loops:
      edge_mask = jnp.concatenate([
          senders != receivers, jnp.ones((num_nodes,), bool)])
      loops = jnp.arange(num_nodes, dtype=senders.dtype)
      senders = jnp.concatenate([senders, loops])
      receivers = jnp.concatenate([receivers, loops])
    alpha = gat_attention(a_src, a_dst, senders, receivers, num_nodes,
                          negative_slope=self.negative_slope,
                          edge_mask=edge_mask)
    alpha = nn.Dropout(self.dropout, deterministic=not train)(alpha)
    out = jax.ops.segment_sum(alpha[..., None] * h[senders], receivers,
                              num_nodes)
    out = out.reshape(num_nodes, hh * c) if self.concat else out.mean(1)
    if self.residual:
      out = out + nn.Dense(total, use_bias=False, kernel_init=glorot,
                           name='res')(x)
    if self.bias:
      out = out + self.param('bias', nn.initializers.zeros, (total,),
                             jnp.float32)
    return out
