"""MT-GCN: multi-task deep GCN over calcification graphs.

The model of "Automatic Calcification Morphology and Distribution
Classification for Breast Mammograms With Multi-Task Graph Convolutional
Neural Network"
(MT-GCN, Du et al., IEEE JBHI 2023).

Patch CNN -> node features (patch embedding + normalised coordinates) -> node
and edge encoders -> one shared deep GCN (GENConv res+ stack) applied to each
graph type (KNN, radius) -> fusion across graph types -> node head
(morphology of each calcification) and graph head (mean pool -> distribution
of the cluster).

The fusion module ends in a Dense layer named ``proj``: it is the last layer
shared by both task heads, which the paper names as GradNorm's W.
"""

import functools
from typing import Any, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import jraph

from mammojax.models import gnn


class PatchCNN(nn.Module):
  """Small VGG-style CNN embedding each ``M x M`` calcification patch.

  Attributes:
    channels: conv widths per stage; each stage is two 3x3 convs + norm + ReLU
      followed by 2x2 max-pooling (the last stage is not pooled).
    embed_dim: output embedding size.
    norm: 'batch' (masked BatchNorm), 'layer', 'group' or 'none'.
  """

  channels: Sequence[int] = (32, 64, 128)
  embed_dim: int = 64
  norm: str = "batch"

  @nn.compact
  def __call__(
      self, patches: jax.Array, *, mask: jax.Array, train: bool
  ) -> jax.Array:
    """Embeds ``patches [N, M, M]`` into ``[N, embed_dim]``."""
    x = patches[..., None].astype(jnp.float32)
    bn_mask = mask[:, None, None, None]
    for stage, width in enumerate(self.channels):
      for _ in range(2):
        x = nn.Conv(width, (3, 3), padding="SAME", use_bias=False)(x)
        x = self._norm(x, bn_mask, train)
        x = nn.relu(x)
      if stage < len(self.channels) - 1:
        x = nn.max_pool(x, (2, 2), strides=(2, 2), padding="SAME")
    x = jnp.mean(x, axis=(1, 2))
    return nn.Dense(self.embed_dim)(x)

  def _norm(self, x, mask, train):
    if self.norm == "batch":
      # The mask keeps padding patches out of the batch statistics.
      return nn.BatchNorm(
          use_running_average=not train, momentum=0.9, epsilon=1e-5
      )(x, mask=jnp.broadcast_to(mask, x.shape))
    if self.norm == "layer":
      return nn.LayerNorm(epsilon=1e-5)(x)
    if self.norm == "group":
      return nn.GroupNorm(num_groups=min(8, x.shape[-1]), epsilon=1e-5)(x)
    if self.norm == "none":
      return x
    raise ValueError(
        f"config.model.patch_norm={self.norm!r}: expected batch, layer, "
        "group or none"
    )


class GraphTypeFusion(nn.Module):
  """Fuses per-graph-type node embeddings ``[N, G, h]`` into ``[N, D]``.

  'attention' applies self-attention over the graph-type axis (as the
  authors' code) and flattens; 'concat' flattens; 'mean' averages. A final
  Dense ``proj`` (the last layer shared by both tasks) maps to ``[N, D]``.
  """

  method: str = "attention"
  num_heads: int = 1

  @nn.compact
  def __call__(self, stacked: jax.Array) -> jax.Array:
    """Returns fused node features ``[N, D]``."""
    num_nodes, num_types, hidden = stacked.shape
    if self.method == "attention":
      attended = nn.MultiHeadDotProductAttention(
          num_heads=self.num_heads, qkv_features=hidden, out_features=hidden
      )(stacked, stacked)
      fused = attended.reshape(num_nodes, num_types * hidden)
    elif self.method == "concat":
      fused = stacked.reshape(num_nodes, num_types * hidden)
    elif self.method == "mean":
      fused = jnp.mean(stacked, axis=1)
    else:
      raise ValueError(
          f"config.model.fusion={self.method!r}: expected attention, concat "
          "or mean"
      )
    return nn.Dense(fused.shape[-1], name="proj")(fused)


def graph_mean_pool(
    node_features: jax.Array, n_node: jax.Array, node_mask: jax.Array
) -> jax.Array:
  """Mean of the real nodes of each graph: ``[N, D] -> [G, D]``."""
  num_graphs = n_node.shape[0]
  graph_idx = jnp.repeat(
      jnp.arange(num_graphs),
      n_node,
      total_repeat_length=node_features.shape[0],
  )
  weights = node_mask.astype(node_features.dtype)
  sums = jax.ops.segment_sum(
      node_features * weights[:, None], graph_idx, num_graphs
  )
  counts = jax.ops.segment_sum(weights, graph_idx, num_graphs)
  return sums / jnp.maximum(counts, 1.0)[:, None]


_SMALL_K_MAX = 4  # Edge encoders with at most this many inputs: factored.


class AffineEdgeEncoder(nn.Module):
  """``nn.Dense`` over the raw edge features, returned factored.

  The same params (``kernel [K, C]``, ``bias [C]``), initialisers and param
  names as ``nn.Dense(features)``, but the output is a ``gnn.AffineEdges``:
  the fused GENConv CPU kernel forms ``raw @ kernel + bias`` per edge and
  never stores the ``[E, C]`` product (nor its gradient), and everything
  else multiplies it out as a sum of ``K`` broadcast products (a K=2 matmul
  over every edge is slow on the CPU; docs/performance.md).
  """

  features: int
  kernel_init: Any = nn.initializers.lecun_normal()
  bias_init: Any = nn.initializers.zeros_init()

  @nn.compact
  def __call__(self, edges: jax.Array) -> gnn.AffineEdges:
    kernel = self.param(
        "kernel", self.kernel_init, (edges.shape[-1], self.features),
        jnp.float32,
    )
    bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
    dtype = jnp.result_type(edges, kernel)
    return gnn.AffineEdges(
        edges.astype(dtype), kernel.astype(dtype), bias.astype(dtype)
    )


def _fused_gcn(
    gcn: nn.Module,
    edge_encoder: nn.Module,
    x: jax.Array,
    typed_graphs: Sequence[jraph.GraphsTuple],
    node_mask: jax.Array,
    train: bool,
) -> jax.Array:
  """The shared GCN over all graph types in one call: ``[N, G, hidden]``.

  Graph type ``i`` uses node copies ``i * N .. (i + 1) * N - 1``. Receivers
  sorted within each type stay sorted after the offsets.
  """
  num_nodes, num_types = x.shape[0], len(typed_graphs)
  offsets = [i * num_nodes for i in range(num_types)]
  senders = jnp.concatenate(
      [g.senders + o for g, o in zip(typed_graphs, offsets)]
  )
  receivers = jnp.concatenate(
      [g.receivers + o for g, o in zip(typed_graphs, offsets)]
  )
  edges = edge_encoder(jnp.concatenate([g.edges for g in typed_graphs]))
  out = gcn(
      jnp.tile(x, (num_types, 1)), senders, receivers, edges,
      node_mask=jnp.tile(node_mask, num_types), train=train,
  )
  return jnp.swapaxes(out.reshape(num_types, num_nodes, -1), 0, 1)


class MTGCN(nn.Module):
  """Multi-task, multi-graph deep GCN.

  Attributes:
    num_node_classes: morphology classes (node task); 0 disables the head.
    num_graph_classes: distribution classes (graph task); 0 disables it.
    graph_types: which graphs of the batch to use, e.g. ('knn', 'radius').
    hidden_size: GCN width.
    num_layers: GENConv layers (first bare conv + res+ blocks).
    node_input: 'patches' (run the patch CNN) or 'features' (precomputed
      ``nodes['features']``, e.g. for benchmarks).
    dropout_bits: random bits per dropout draw in the GCN (``gnn.dropout``:
      16 halves the threefry hashing of flax's Dropout, which on the CPU
      cost ~15 % of a train step; 32 is ``flax.linen.Dropout`` itself).
    scan: run the GCN's res+ layers under ``nn.scan`` (params stacked under
      ``gcn/blocks``; compile time independent of depth) instead of unrolled
      (``gcn/blocks_1..L-1``; faster steps on CPU, docs/performance.md).
    fuse_graph_types: run the shared GCN ONCE over all graph types: the node
      set is repeated per type (``[G * N]`` nodes) and the edge lists are
      concatenated with offsets. Same weights, same math (every op of the
      GCN is per node or per edge; graphs of different types never share a
      node), half the kernels and ~1.5x faster compilation, but no faster
      (0-10% slower) steps on CPU, hence off by default. Only used without
      BatchNorm in the GCN (``conv_norm != 'batch'``), whose statistics
      would mix the types.
  """

  num_node_classes: int
  num_graph_classes: int
  graph_types: Sequence[str] = ("knn", "radius")
  patch_embed_dim: int = 64
  patch_channels: Sequence[int] = (32, 64, 128)
  patch_norm: str = "batch"
  hidden_size: int = 64
  num_layers: int = 8
  aggr: str = "softmax"
  learn_t: bool = True
  msg_norm: bool = False
  learn_msg_scale: bool = False
  mlp_layers: int = 2
  conv_norm: str = "layer"
  dropout: float = 0.1
  dropout_bits: int = 16
  fusion: str = "attention"
  num_heads: int = 1
  node_input: str = "patches"
  scan: bool = False
  fuse_graph_types: bool = False

  @nn.compact
  def __call__(
      self, graphs: dict[str, jraph.GraphsTuple], *, train: bool
  ) -> dict[str, Any]:
    """Returns node and graph logits for a batch of multi-graph samples.

    Args:
      graphs: graph type -> GraphsTuple; all share ``nodes`` (``patches``
        ``[N, M, M]`` or ``features`` ``[N, F]``, ``coords`` ``[N, 2]``,
        ``mask`` ``[N]``) and ``n_node``.
      train: enables dropout and batch-statistics updates.

    Returns:
      ``{'node_logits': [N, C_node], 'graph_logits': [G, C_graph],
      'node_embeddings': [N, D]}`` (absent heads are omitted).
    """
    missing = [t for t in self.graph_types if t not in graphs]
    if missing:
      raise ValueError(
          f"MTGCN: batch lacks graph types {missing}; it has {sorted(graphs)}"
      )
    first = graphs[self.graph_types[0]]
    nodes = first.nodes
    node_mask = nodes["mask"]
    if self.node_input == "patches":
      embed = PatchCNN(
          self.patch_channels, self.patch_embed_dim, self.patch_norm
      )(nodes["patches"], mask=node_mask, train=train)
    elif self.node_input == "features":
      embed = nodes["features"]
    else:
      raise ValueError(
          f"config.model.node_input={self.node_input!r}: expected patches or "
          "features"
      )
    x = jnp.concatenate([embed, nodes["coords"]], axis=-1)
    x = nn.Dense(self.hidden_size, name="node_encoder")(x)
    # Edge features are a few numbers (2-d offsets): their encoding stays
    # factored (AffineEdgeEncoder) so the fused GENConv kernel forms it per
    # edge; wider edge features get a plain Dense.
    first_edges = graphs[self.graph_types[0]].edges
    if first_edges.shape[-1] <= _SMALL_K_MAX:
      edge_encoder = AffineEdgeEncoder(self.hidden_size, name="edge_encoder")
    else:
      edge_encoder = nn.Dense(self.hidden_size, name="edge_encoder")
    gcn = gnn.DeepGCN(
        hidden=self.hidden_size,
        num_layers=self.num_layers,
        aggr=self.aggr,
        learn_t=self.learn_t,
        msg_norm=self.msg_norm,
        learn_msg_scale=self.learn_msg_scale,
        mlp_layers=self.mlp_layers,
        conv_norm=self.conv_norm,
        norm="layer",
        dropout=self.dropout,
        dropout_bits=self.dropout_bits,
        scan=self.scan,
        name="gcn",
    )
    if self.fuse_graph_types and self.conv_norm != "batch":
      stacked = _fused_gcn(
          gcn, edge_encoder, x, [graphs[t] for t in self.graph_types],
          node_mask, train,
      )
    else:
      per_type = []
      for graph_type in self.graph_types:
        g = graphs[graph_type]
        edges = edge_encoder(g.edges)
        per_type.append(
            gcn(x, g.senders, g.receivers, edges, node_mask=node_mask,
                train=train)
        )
      stacked = jnp.stack(per_type, axis=1)
    fused = GraphTypeFusion(self.fusion, self.num_heads, name="fusion")(
        stacked
    )
    out = {"node_embeddings": fused}
    if self.num_node_classes:
      h = nn.relu(nn.Dense(fused.shape[-1], name="node_head_0")(fused))
      out["node_logits"] = nn.Dense(
          self.num_node_classes, name="node_head_1"
      )(h)
    if self.num_graph_classes:
      pooled = graph_mean_pool(fused, first.n_node, node_mask)
      h = nn.relu(nn.Dense(pooled.shape[-1], name="graph_head_0")(pooled))
      out["graph_logits"] = nn.Dense(
          self.num_graph_classes, name="graph_head_1"
      )(h)
    return out


_MTGCNTiny = functools.partial(
    MTGCN,
    patch_embed_dim=8,
    patch_channels=(4, 8),
    hidden_size=16,
    num_layers=3,
)
