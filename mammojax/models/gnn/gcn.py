"""PyG ``GCNConv`` (Kipf & Welling 2017) and ``GCN2Conv`` (GCNII, Chen 2020).

Pure functions (``gcn_norm``, ``gcn_propagate``, ``gcn2_combine``) and thin
linen modules with PyG's numerics:

* ``gcn_norm``: PyG's ``add_remaining_self_loops`` + symmetric
  normalisation. Existing self-loops are dropped and every node gets exactly
  one self-loop of weight ``fill`` (1, or 2 when ``improved`` and
  ``edge_weight`` is given: PyG 2.x ignores ``improved`` on unweighted
  graphs, and so does this port) or the weight
  of its existing self-loop (PyG keeps the last one written when a node has
  several; here the largest, the same for unweighted graphs). Duplicate
  edges count once each. ``deg_i = sum_{j->i} w``, ``norm = deg_j^-1/2 w
  deg_i^-1/2`` (0 where the degree is 0). Static shapes: the self-loop
  edges stay in the arrays with weight 0 and ``num_nodes`` loops are
  appended, so a graph of E edges becomes E + N weighted edges.
* ``GCNConv``: ``out = sum_{j->i} norm_ji (x_j W) + b`` (``lin`` has no
  bias, ``bias`` is a separate ``[out]`` param, as in PyG).
* ``GCN2Conv``: ``h = (1 - alpha) P x + alpha x_0`` then
  ``(1 - beta) h + beta h W1`` (shared weights) or
  ``(1 - beta) P'x + beta P'x W1 + (1 - beta) x0' + beta x0' W2``
  with ``beta = log(theta / layer + 1)`` (1 without theta). ``weight1`` /
  ``weight2`` are used as in ``torch.addmm(out, out, weight1)``, i.e. *not*
  transposed: the flax params equal the torch ones.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array


def gcn_norm(
    senders: Array,
    receivers: Array,
    num_nodes: int,
    edge_weight: Array | None = None,
    *,
    improved: bool = False,
    add_self_loops: bool = True,
) -> tuple[Array, Array, Array]:
  """PyG's ``gcn_norm`` with static shapes.

  Args:
    senders: ``[E]`` source j of each edge.
    receivers: ``[E]`` target i of each edge.
    num_nodes: static number of nodes N.
    edge_weight: optional ``[E]`` weights (1 by default).
    improved: self-loop weight 2 instead of 1 (weighted graphs only, as
      PyG).
    add_self_loops: replace the self-loops by one per node (else the edges
      are normalised as given).

  Returns:
    ``(senders, receivers, norm)`` of ``E + N`` edges with
    ``add_self_loops`` (the last N are the loops ``i -> i``), else ``E``.
  """
  dtype = jnp.float32 if edge_weight is None else edge_weight.dtype
  w = (jnp.ones(senders.shape, dtype) if edge_weight is None
       else edge_weight)
  if add_self_loops:
    is_loop = senders == receivers
    # PyG: without edge weights the loops get weight 1 even when improved
    # (add_remaining_self_loops adds no attribute, gcn_norm then fills 1s).
    fill = 2.0 if improved and edge_weight is not None else 1.0
    # The weight of an existing self-loop replaces the fill value.
    loop_w = jax.ops.segment_max(
        jnp.where(is_loop, w, -jnp.inf), receivers, num_nodes)
    has_loop = jax.ops.segment_sum(
        is_loop.astype(jnp.int32), receivers, num_nodes) > 0
    loop_w = jnp.where(has_loop, loop_w, jnp.asarray(fill, dtype))
    loops = jnp.arange(num_nodes, dtype=senders.dtype)
    w = jnp.concatenate([jnp.where(is_loop, 0.0, w).astype(dtype), loop_w])
    senders = jnp.concatenate([senders, loops])
    receivers = jnp.concatenate([receivers, loops])
  deg = jax.ops.segment_sum(w, receivers, num_nodes)
  positive = deg > 0
  dis = jnp.where(positive, jax.lax.rsqrt(jnp.where(positive, deg, 1.0)), 0.0)
  return senders, receivers, dis[senders] * w * dis[receivers]


def gcn_propagate(
    x: Array, senders: Array, receivers: Array, norm: Array, num_nodes: int
) -> Array:
  """``out_i = sum_{j->i} norm_ji x_j`` (PyG ``propagate`` with weights)."""
  return jax.ops.segment_sum(norm[:, None] * x[senders], receivers, num_nodes)


def gcn2_combine(
    propagated: Array,
    x_0: Array,
    weight1: Array,
    weight2: Array | None,
    *,
    alpha: float,
    beta: float,
) -> Array:
  """GCNII's initial residual and identity mapping (PyG ``GCN2Conv``)."""
  h = propagated * (1.0 - alpha)
  x_0 = alpha * x_0[:h.shape[0]]
  if weight2 is None:
    h = h + x_0
    return (1.0 - beta) * h + beta * (h @ weight1)
  return ((1.0 - beta) * h + beta * (h @ weight1)
          + (1.0 - beta) * x_0 + beta * (x_0 @ weight2))


def gcn2_beta(theta: float | None, layer: int | None) -> float:
  """``log(theta / layer + 1)``, or 1 without ``theta`` (PyG)."""
  if theta is None and layer is None:
    return 1.0
  if theta is None or layer is None:
    raise ValueError(
        'GCN2Conv: theta and layer must be given together, got '
        f'theta={theta!r}, layer={layer!r}')
  if layer < 1:
    raise ValueError(f'GCN2Conv.layer: expected >= 1, got {layer}')
  return math.log(theta / layer + 1.0)


def _glorot(key, shape, dtype=jnp.float32):
  return nn.initializers.glorot_uniform()(key, shape, dtype)


class GCNConv(nn.Module):
  """PyG ``GCNConv``: params ``lin {kernel}`` and ``bias [out]``."""

  out_channels: int
  improved: bool = False
  add_self_loops: bool = True
  normalize: bool = True
  bias: bool = True

  @nn.compact
  def __call__(
      self,
      x: Array,
      senders: Array,
      receivers: Array,
      edge_weight: Array | None = None,
  ) -> Array:
    """``[N, F] -> [N, out_channels]``; messages flow senders -> receivers."""
    num_nodes = x.shape[0]
    h = nn.Dense(self.out_channels, use_bias=False, kernel_init=_glorot,
                 name='lin')(x)
    if self.normalize:
      s, r, w = gcn_norm(senders, receivers, num_nodes, edge_weight,
                         improved=self.improved,
                         add_self_loops=self.add_self_loops)
    else:
      s, r = senders, receivers
      w = (jnp.ones(senders.shape, h.dtype) if edge_weight is None
           else edge_weight)
    out = gcn_propagate(h, s, r, w, num_nodes)
    if self.bias:
      out = out + self.param('bias', nn.initializers.zeros,
                             (self.out_channels,), jnp.float32)
    return out


class GCN2Conv(nn.Module):
  """PyG ``GCN2Conv``: params ``weight1 [C, C]`` (+ ``weight2``)."""

  channels: int
  alpha: float
  theta: float | None = None
  layer: int | None = None
  shared_weights: bool = True
  add_self_loops: bool = True
  normalize: bool = True

  @nn.compact
  def __call__(
      self,
      x: Array,
      x_0: Array,
      senders: Array,
      receivers: Array,
      edge_weight: Array | None = None,
  ) -> Array:
    """``x, x_0: [N, C] -> [N, C]``."""
    if x.shape[-1] != self.channels:
      raise ValueError(
          f'GCN2Conv: x has {x.shape[-1]} channels, expected '
          f'channels={self.channels}')
    beta = gcn2_beta(self.theta, self.layer)
    num_nodes = x.shape[0]
    c = self.channels
    w1 = self.param('weight1', _glorot, (c, c))
    w2 = None if self.shared_weights else self.param('weight2', _glorot, (c, c))
    if self.normalize:
      s, r, w = gcn_norm(senders, receivers, num_nodes, edge_weight,
                         add_self_loops=self.add_self_loops)
    else:
      s, r = senders, receivers
      w = (jnp.ones(senders.shape, x.dtype) if edge_weight is None
           else edge_weight)
    h = gcn_propagate(x, s, r, w, num_nodes)
    return gcn2_combine(h, x_0, w1, w2, alpha=self.alpha, beta=beta)
