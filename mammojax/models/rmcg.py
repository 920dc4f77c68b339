"""RMCG (relation-aware multi-channel attention GCN) and its Table 1 baselines.

``GradeClassifier(kind=...)`` maps RGB tiles ``[B, H, W, 3]`` (float in
[0, 1]) to grade logits. Kinds (the paper's Table 1):

* ``alexnet``, ``resnet18``: plain CNNs (``models.cnn.alexnet``, the
  project's torchvision-layout ResNet-18).
* ``resnet18_gcn``, ``resnet18_gat``, ``resnet18_gcnii``, ``ecc``: ResNet-18's
  last feature map (``layer4``, ``[h, w, 512]``) -> one node per position ->
  the mutual-information graph below -> ``num_layers`` GCNConv / GATConv /
  GCN2Conv / NNConv layers -> mean pooling over the nodes -> dropout ->
  ``head``. The paper does not say what ECC's nodes are; a pixel graph of a
  40x tile would have 10^5+ nodes, so ECC runs on the same ResNet-18 nodes
  and graph, with edge features ``(dy, dx, |d|, MI)`` (its edge network
  turns them into the per-edge weights: the edge-conditioned convolution).
* ``rmcg``: ResNet-18 -> multi-channel attention -> mutual-information graph
  -> stacked attention-based graph convolutions (GATConv, residual) ->
  attention pooling (``AttentionalAggregation``) -> dropout -> ``head``.

Multi-channel attention (the paper's Fig. 4; its equations were lost in the
text): the channels are the tokens. ``X [C, d_m]`` holds each channel's
flattened spatial map (``d_m = h w``); ``Q = X W_q + b_q``, ``K = X W_k +
b_k``, ``V = X W_v + b_v`` (Dense over ``d_m``),
``A = softmax(Q K^T / sqrt(d_m))`` ``[C, C]`` fuses the channels (each
channel's query against every channel's key: "keys and values are the
outcome of the cross-channel query fusion"), ``H_1 = X + sigmoid(g) (.) A V``
with a learnable per-channel gate ``g`` (the paper's element-wise product),
then the attention block's feed-forward network and weighted residual sum,
``H = LayerNorm(H_1 + FFN(LayerNorm(H_1)))`` with
``FFN = Dense(2 d_m) -> ReLU -> Dense(d_m)``. ``H`` goes back to one
512-dim feature per position (node).

Topology from mutual information (computed without gradient: the graph is
an input of the graph layers, not learned): for two nodes the MI between
their feature vectors is estimated by treating the C channel values as
paired samples, binned per node into ``mi_bins`` equal-frequency bins (by
rank, so each marginal is uniform and MI = 2 log Q - H(joint)); each node
receives edges from its ``top_k`` highest-MI other nodes (directed
``j -> i``; ties by index). Graphs of a batch are disjoint (node offsets
``b * h w``).

Loss (eq. 7) = cross-entropy + ``(lambda / 2) ||w||^2`` on the last layer
``head`` (kernel; ``l2_head`` in ``head_kernel``) -- the method adds it as an
auxiliary term.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mammojax.models import cnn
from mammojax.models import gnn
from mammojax.models.cnn import alexnet

Array = jax.Array

KINDS = ("alexnet", "resnet18", "ecc", "resnet18_gcn", "resnet18_gat",
         "resnet18_gcnii", "rmcg")
GRAPH_KINDS = ("ecc", "resnet18_gcn", "resnet18_gat", "resnet18_gcnii",
               "rmcg")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def mutual_information(features: Array, bins: int) -> Array:
  """``[N, C]`` node features -> ``[N, N]`` MI (nats) between node pairs.

  The C channel values of a node are its samples; each node's values are
  binned into ``bins`` equal-frequency bins by rank.
  """
  n, c = features.shape
  ranks = jnp.argsort(jnp.argsort(features, axis=1), axis=1)
  q = jnp.minimum(ranks * bins // c, bins - 1)
  onehot = jax.nn.one_hot(q, bins, dtype=jnp.float32)  # [N, C, Q]
  joint = jnp.einsum("ncq,mcr->nmqr", onehot, onehot) / c
  marg = jnp.mean(onehot, axis=1)  # [N, Q]
  outer = marg[:, None, :, None] * marg[None, :, None, :]
  ratio = jnp.where(joint > 0, joint / jnp.where(outer > 0, outer, 1.0), 1.0)
  return jnp.sum(joint * jnp.log(ratio), axis=(2, 3))


def mi_topk_graph(features: Array, k: int, bins: int) -> tuple[Array, Array]:
  """Edges ``j -> i`` from each node's ``k`` highest-MI others.

  Returns ``(senders, receivers, mi)`` of ``N k`` edges for one graph.
  """
  n = features.shape[0]
  if not 1 <= k < n:
    raise ValueError(
        f"config.model.top_k={k}: expected 1 <= top_k < nodes per image "
        f"({n}: the feature map positions)")
  mi = mutual_information(jax.lax.stop_gradient(features), bins)
  mi = jnp.where(jnp.eye(n, dtype=bool), -jnp.inf, mi)
  top_mi, senders = jax.lax.top_k(mi, k)  # [N, k]: row i = its sources.
  receivers = jnp.repeat(jnp.arange(n), k)
  return senders.reshape(-1), receivers, top_mi.reshape(-1)


class MultiChannelAttention(nn.Module):
  """Cross-channel attention of a feature map ``[B, h, w, C]`` (see above)."""

  @nn.compact
  def __call__(self, fmap: Array) -> Array:
    b, h, w, c = fmap.shape
    d = h * w
    x = jnp.transpose(fmap.reshape(b, d, c), (0, 2, 1))  # [B, C, d_m]
    q = nn.Dense(d, name="query")(x)
    k = nn.Dense(d, name="key")(x)
    v = nn.Dense(d, name="value")(x)
    att = jax.nn.softmax(jnp.einsum("bcd,bed->bce", q, k) / jnp.sqrt(d), -1)
    gate = self.param("gate", nn.initializers.zeros, (c, 1), jnp.float32)
    h1 = x + jax.nn.sigmoid(gate) * jnp.einsum("bce,bed->bcd", att, v)
    y = nn.LayerNorm(name="ffn_norm")(h1)
    y = nn.Dense(d, name="ffn_out")(nn.relu(nn.Dense(2 * d, name="ffn_in")(y)))
    out = nn.LayerNorm(name="out_norm")(h1 + y)
    return jnp.transpose(out, (0, 2, 1)).reshape(b, h, w, c)


class GradeClassifier(nn.Module):
  """One of ``KINDS``; ``__call__(images [B, H, W, 3], *, train) -> logits``.

  Attributes:
    kind: the model (``KINDS``).
    num_classes: grades.
    stage_sizes: ResNet blocks per stage ((2, 2, 2, 2) = ResNet-18).
    hidden: graph layer width.
    num_layers: stacked graph layers.
    heads: GAT / RMCG attention heads.
    top_k: MI graph in-degree.
    mi_bins: equal-frequency bins of the MI estimate.
    dropout: before the head (and on GAT attention in ``rmcg``).
    gcnii_alpha, gcnii_theta: GCNII's initial residual and identity decay.
    alexnet_hidden: AlexNet's classifier width.
  """

  kind: str = "rmcg"
  num_classes: int = 3
  stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
  hidden: int = 128
  num_layers: int = 2
  heads: int = 4
  top_k: int = 4
  mi_bins: int = 8
  dropout: float = 0.3
  gcnii_alpha: float = 0.1
  gcnii_theta: float = 0.5
  alexnet_hidden: int = 4096

  def _check(self):
    if self.kind not in KINDS:
      raise ValueError(
          f"config.model.name={self.kind!r}: expected one of {KINDS}")
    if self.kind in ("resnet18_gat", "rmcg") and self.hidden % self.heads:
      raise ValueError(
          f"config.model.hidden={self.hidden} must be divisible by "
          f"config.model.heads={self.heads}")

  @nn.compact
  def __call__(self, images: Any, *, train: bool,
               return_graph: bool = False):
    self._check()
    x = images["image"] if isinstance(images, dict) else images
    x = jnp.asarray(x)
    if x.dtype == jnp.uint8:
      x = x.astype(jnp.float32) / 255.0
    if x.ndim != 4 or x.shape[-1] != 3:
      raise ValueError(f"images: expected [B, H, W, 3], got {x.shape}")
    x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
    if self.kind == "alexnet":
      return alexnet.AlexNet(self.num_classes, dropout=self.dropout,
                             hidden=self.alexnet_hidden, name="backbone")(
                                 x, train=train)
    net = cnn.create_model("resnet18", num_classes=self.num_classes,
                           dropout=self.dropout, name="backbone",
                           stage_sizes=tuple(self.stage_sizes))
    if self.kind == "resnet18":
      return net(x, train=train)
    _, feats = net(x, train=train, return_features=True)
    fmap = feats["layer4"]  # [B, h, w, 512]
    if self.kind == "rmcg":
      fmap = MultiChannelAttention(name="channel_attention")(fmap)
    b, h, w, c = fmap.shape
    n = h * w
    nodes = fmap.reshape(b, n, c)
    s, r, mi = jax.vmap(
        lambda f: mi_topk_graph(f, self.top_k, self.mi_bins))(nodes)
    offsets = (jnp.arange(b) * n)[:, None]
    senders = (s + offsets).reshape(-1)
    receivers = (r + offsets).reshape(-1)
    x = nodes.reshape(b * n, c)
    graph_ids = jnp.repeat(jnp.arange(b), n)
    hidden = self.hidden
    if self.kind == "resnet18_gcn":
      for i in range(self.num_layers):
        x = nn.relu(gnn.GCNConv(hidden, name=f"conv_{i}")(x, senders,
                                                          receivers))
    elif self.kind == "resnet18_gat":
      for i in range(self.num_layers):
        x = nn.elu(gnn.GATConv(hidden // self.heads, heads=self.heads,
                               name=f"conv_{i}")(x, senders, receivers,
                                                 train=train))
    elif self.kind == "resnet18_gcnii":
      x = x0 = nn.relu(nn.Dense(hidden, name="lin_in")(x))
      for i in range(self.num_layers):
        x = nn.relu(gnn.GCN2Conv(hidden, alpha=self.gcnii_alpha,
                                 theta=self.gcnii_theta, layer=i + 1,
                                 name=f"conv_{i}")(x, x0, senders, receivers))
    elif self.kind == "ecc":
      pos = jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w),
                                   indexing="ij"), -1).reshape(n, 2)
      pos = jnp.tile(pos, (b, 1)).astype(jnp.float32) / max(h, w, 1)
      d = pos[senders] - pos[receivers]
      edge_attr = jnp.concatenate(
          [d, jnp.linalg.norm(d, axis=-1, keepdims=True),
           mi.reshape(-1, 1)], -1)
      x = nn.relu(nn.Dense(hidden, name="lin_in")(x))
      for i in range(self.num_layers):
        x = nn.relu(gnn.NNConv(hidden, edge_hidden=(16,), aggr="mean",
                               name=f"conv_{i}")(x, senders, receivers,
                                                 edge_attr))
    else:  # rmcg
      x = nn.relu(nn.Dense(hidden, name="lin_in")(x))
      for i in range(self.num_layers):
        y = gnn.GATConv(hidden // self.heads, heads=self.heads,
                        dropout=self.dropout, name=f"conv_{i}")(
                            x, senders, receivers, train=train)
        x = x + nn.elu(y)
    if self.kind == "rmcg":
      pooled = gnn.AttentionalAggregation(
          gate_features=(hidden // 2, 1), name="pool")(x, graph_ids, b)
    else:
      pooled = jax.ops.segment_sum(x, graph_ids, b) / n
    pooled = nn.Dropout(self.dropout, deterministic=not train)(pooled)
    logits = nn.Dense(self.num_classes, name="head")(pooled)
    if return_graph:
      return logits, {"senders": senders, "receivers": receivers, "mi": mi}
    return logits


def head_kernel(params: Any, kind: str) -> Array:
  """The last prediction layer's kernel (eq. 7's ``w``)."""
  if kind == "alexnet":
    return params["backbone"]["fc_6"]["kernel"]
  if kind == "resnet18":
    return params["backbone"]["fc"]["kernel"]
  return params["head"]["kernel"]
