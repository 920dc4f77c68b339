"""PyG ``AttentionalAggregation`` (global attention pooling, Li et al. 2016).

``out_g = sum_{i in g} softmax_g(gate_nn(x))_i * nn(x)_i``: the gate is a
softmax over the nodes of each graph (PyG's softmax; one gate per node,
``[N, 1]``, or one per channel, ``[N, C]``), ``nn`` an optional feature
network. ``attentional_aggregation`` is the pure function;
``AttentionalAggregation`` declares ``gate_nn`` and ``nn`` as
``DenseStack`` modules (PyG's ``Sequential(Linear, ReLU, ..., Linear)``).
Graphs without nodes (padding graphs) get 0.
"""

from __future__ import annotations

import flax.linen as nn
import jax

from mammojax.models.gnn.dense import DenseStack
from mammojax.models.gnn.ops import segment_softmax

Array = jax.Array


def attentional_aggregation(
    gate: Array, x: Array, graph_ids: Array, num_graphs: int,
    node_mask: Array | None = None,
) -> Array:
  """``[N, 1 | C]`` gate logits and ``[N, C]`` features -> ``[G, C]``.

  ``node_mask`` (optional ``[N]`` bool) leaves padding nodes out of the
  softmax and the sum.
  """
  if node_mask is not None:
    gate = jax.numpy.where(node_mask[:, None], gate, -jax.numpy.inf)
  weights = segment_softmax(gate, graph_ids, num_graphs)
  if node_mask is not None:
    weights = jax.numpy.where(node_mask[:, None], weights, 0.0)
  return jax.ops.segment_sum(weights * x, graph_ids, num_graphs)


class AttentionalAggregation(nn.Module):
  """Params ``gate_nn {lin_k}`` and, with ``nn_features``, ``nn {lin_k}``."""

  gate_features: tuple[int, ...] = (1,)
  nn_features: tuple[int, ...] = ()

  @nn.compact
  def __call__(
      self, x: Array, graph_ids: Array, num_graphs: int,
      node_mask: Array | None = None,
  ) -> Array:
    """``x [N, F]``, ``graph_ids [N]`` -> ``[num_graphs, C]``."""
    gate = DenseStack(tuple(self.gate_features), name='gate_nn')(x)
    if self.nn_features:
      x = DenseStack(tuple(self.nn_features), name='nn')(x)
    return attentional_aggregation(gate, x, graph_ids, num_graphs, node_mask)
