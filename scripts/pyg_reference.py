"""PyTorch Geometric reference of the MT-GCN benchmark workload.

Used by ``scripts/benchmark.py --reference=pyg`` (and importable by tests).
Not part of ``mammojax/`` (which never imports torch).

The model mirrors ``mammojax.models.mtgcn.MTGCN(node_input='features',
fusion='concat', msg_norm=True, learn_msg_scale=True)``:

* ``node_encoder = Linear(130, h)`` on ``[features (128) | coords (2)]``,
  ``edge_encoder = Linear(2, h)`` on the Cartesian edge features;
* one shared ogbn_proteins-style stack applied to each graph type:
  ``layers[0].conv`` bare, then 7 ``DeepGCNLayer(GENConv(h, h,
  aggr='softmax', t=1.0, learn_t=True, msg_norm=True, learn_msg_scale=True,
  num_layers=2, norm='layer'), LayerNorm(h), ReLU, block='res+',
  dropout=0.1)``, then ``relu(layers[0].norm(x))`` and dropout 0.1;
* concat fusion over the graph types + ``proj = Linear(2h, 2h)`` (GradNorm's
  W, like mammojax's ``params['fusion']['proj']['kernel']``);
* node head ``Linear(2h, 2h) -> ReLU -> Linear(2h, 4)``, graph head
  ``global_mean_pool -> Linear(2h, 2h) -> ReLU -> Linear(2h, 5)``.

GradNorm is done like ``mammojax.objectives.gradnorm``: the
network moves along the gradient of ``sum_i w_i L_i``; the per-task
``||grad_W L_i||`` come from ``torch.autograd.grad(L_i, W,
retain_graph=True)`` (no ``create_graph``: ``L_grad`` is differentiated
w.r.t. ``w`` only, and ``G_i = w_i ||grad_W L_i||`` is linear in ``w_i``);
``w`` moves with Adam on ``L_grad`` and is clamped and renormalised to
``sum w = T``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F
from torch_geometric.data import Data
from torch_geometric.nn import DeepGCNLayer, GENConv, global_mean_pool

GRAPH_TYPES = ("knn", "radius")


class DeepGCNStack(nn.Module):
  """The ogbn_proteins GENConv res+ stack, without encoders."""

  def __init__(self, hidden: int = 64, num_layers: int = 8,
               dropout: float = 0.1):
    super().__init__()
    self.dropout = dropout
    self.layers = nn.ModuleList()
    for _ in range(num_layers):
      conv = GENConv(
          hidden, hidden, aggr="softmax", t=1.0, learn_t=True,
          msg_norm=True, learn_msg_scale=True, num_layers=2, norm="layer",
      )
      norm = nn.LayerNorm(hidden, elementwise_affine=True)
      act = nn.ReLU(inplace=True)
      self.layers.append(
          DeepGCNLayer(conv, norm, act, block="res+", dropout=dropout)
      )

  def forward(self, x, edge_index, edge_attr):
    x = self.layers[0].conv(x, edge_index, edge_attr)
    for layer in self.layers[1:]:
      x = layer(x, edge_index, edge_attr)
    x = self.layers[0].act(self.layers[0].norm(x))
    return F.dropout(x, p=self.dropout, training=self.training)


class PygMTGCN(nn.Module):
  """MT-GCN with concat fusion over the graph types (see module docstring)."""

  def __init__(
      self,
      *,
      in_features: int = 130,
      edge_features: int = 2,
      hidden: int = 64,
      num_layers: int = 8,
      num_node_classes: int = 4,
      num_graph_classes: int = 5,
      dropout: float = 0.1,
      graph_types: Sequence[str] = GRAPH_TYPES,
  ):
    super().__init__()
    self.graph_types = tuple(graph_types)
    width = hidden * len(self.graph_types)
    self.node_encoder = nn.Linear(in_features, hidden)
    self.edge_encoder = nn.Linear(edge_features, hidden)
    self.gcn = DeepGCNStack(hidden, num_layers, dropout)
    self.proj = nn.Linear(width, width)
    self.node_head = nn.Sequential(
        nn.Linear(width, width), nn.ReLU(), nn.Linear(width, num_node_classes)
    )
    self.graph_head = nn.Sequential(
        nn.Linear(width, width), nn.ReLU(), nn.Linear(width, num_graph_classes)
    )

  def forward(self, data: Data) -> dict[str, torch.Tensor]:
    x = self.node_encoder(torch.cat([data.features, data.coords], dim=-1))
    per_type = [
        self.gcn(
            x,
            data[f"edge_index_{t}"],
            self.edge_encoder(data[f"edge_attr_{t}"]),
        )
        for t in self.graph_types
    ]
    fused = self.proj(torch.cat(per_type, dim=-1))
    pooled = global_mean_pool(fused, data.batch, size=data.num_graphs)
    return {
        "node_logits": self.node_head(fused),
        "graph_logits": self.graph_head(pooled),
    }

  @property
  def gradnorm_layer(self) -> torch.Tensor:
    """W: the fusion projection's weight (the last shared layer)."""
    return self.proj.weight


def num_params(module: nn.Module) -> int:
  return int(sum(p.numel() for p in module.parameters()))


def batch_to_pyg(
    batch: dict[str, Any],
    graph_types: Sequence[str] = GRAPH_TYPES,
    device: str | torch.device = "cpu",
) -> Data:
  """Unpads a mammojax batch (``{type: jraph.GraphsTuple}`` of numpy arrays).

  Real nodes / edges / graphs come first in a padded batch
  (docs/architecture.md), so unpadding is slicing. Returns one PyG ``Data``
  holding the disjoint union of the batch's graphs (what ``Batch`` builds):
  ``features``, ``coords``, ``edge_index_{type}``, ``edge_attr_{type}``,
  ``batch``, ``y_node``, ``y_graph``, ``num_graphs``.
  """
  first = batch[graph_types[0]]
  n_node = np.asarray(first.n_node)
  graph_mask = np.asarray(first.globals["mask"], bool)
  num_graphs = int(graph_mask.sum())
  num_nodes = int(n_node[:num_graphs].sum())
  nodes = first.nodes
  if not np.asarray(nodes["mask"])[:num_nodes].all():
    raise ValueError("batch_to_pyg: real nodes must come first")
  as_t = lambda a, dtype: torch.as_tensor(np.asarray(a), dtype=dtype).to(
      device
  )
  out = dict(
      features=as_t(nodes["features"][:num_nodes], torch.float32),
      coords=as_t(nodes["coords"][:num_nodes], torch.float32),
      y_node=as_t(nodes["label"][:num_nodes], torch.long),
      y_graph=as_t(first.globals["label"][:num_graphs], torch.long),
      batch=as_t(
          np.repeat(np.arange(num_graphs), n_node[:num_graphs]), torch.long
      ),
  )
  for t in graph_types:
    g = batch[t]
    num_edges = int(np.asarray(g.n_edge)[:num_graphs].sum())
    senders = np.asarray(g.senders)[:num_edges]
    receivers = np.asarray(g.receivers)[:num_edges]
    out[f"edge_index_{t}"] = as_t(np.stack([senders, receivers]), torch.long)
    out[f"edge_attr_{t}"] = as_t(g.edges[:num_edges], torch.float32)
  data = Data(num_nodes=num_nodes, **out)
  data.num_graphs = num_graphs
  return data


def task_losses(
    outputs: dict[str, torch.Tensor], data: Data
) -> torch.Tensor:
  """``[L_node, L_graph]``: mean CE over labelled nodes / graphs."""
  return torch.stack([
      F.cross_entropy(outputs["node_logits"], data.y_node, ignore_index=-1),
      F.cross_entropy(outputs["graph_logits"], data.y_graph, ignore_index=-1),
  ])


@dataclasses.dataclass
class TorchGradNorm:
  """GradNorm task weights, as in ``mammojax.objectives.gradnorm``."""

  num_tasks: int
  alpha: float
  learning_rate: float
  min_weight: float = 1e-6

  def __post_init__(self):
    self.weights = torch.ones(self.num_tasks, requires_grad=True)
    self.opt = torch.optim.Adam([self.weights], lr=self.learning_rate)
    self.initial_losses = None

  def update(self, losses: torch.Tensor, grad_norms: torch.Tensor) -> None:
    """One step on ``w`` from ``L_i`` and unweighted ``||grad_W L_i||``."""
    losses = losses.detach()
    grad_norms = grad_norms.detach()
    if self.initial_losses is None:
      self.initial_losses = losses.clone()
    g = self.weights * grad_norms
    ratio = losses / self.initial_losses
    rate = ratio / ratio.mean()
    target = (g.mean() * rate**self.alpha).detach()
    l_grad = (g - target).abs().sum()
    self.opt.zero_grad(set_to_none=True)
    (w_grad,) = torch.autograd.grad(l_grad, self.weights)
    self.weights.grad = w_grad
    self.opt.step()
    with torch.no_grad():
      self.weights.clamp_(min=self.min_weight)
      self.weights.mul_(self.num_tasks / self.weights.sum())


class Trainer:
  """Train / eval steps of ``PygMTGCN`` with Adam and optional GradNorm."""

  def __init__(
      self,
      model: PygMTGCN,
      *,
      learning_rate: float = 1e-3,
      gradnorm: bool = True,
      gradnorm_alpha: float = 1.5,
      gradnorm_learning_rate: float = 1e-3,
  ):
    self.model = model
    self.opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    self.gradnorm = (
        TorchGradNorm(2, gradnorm_alpha, gradnorm_learning_rate)
        if gradnorm
        else None
    )
    self.static_weights = torch.ones(2)

  def train_step(self, data: Data) -> torch.Tensor:
    self.model.train()
    self.opt.zero_grad(set_to_none=True)
    outputs = self.model(data)
    losses = task_losses(outputs, data)
    if self.gradnorm is None:
      weights = self.static_weights.to(losses.device)
    else:
      weights = self.gradnorm.weights.detach().to(losses.device)
      w_layer = self.model.gradnorm_layer
      grad_norms = torch.stack([
          torch.linalg.vector_norm(
              torch.autograd.grad(losses[i], w_layer, retain_graph=True)[0]
          )
          for i in range(losses.shape[0])
      ])
    total = torch.sum(weights * losses)
    total.backward()
    self.opt.step()
    if self.gradnorm is not None:
      self.gradnorm.update(losses.cpu(), grad_norms.cpu())
    return losses.detach()

  @torch.inference_mode()
  def eval_step(self, data: Data) -> dict[str, torch.Tensor]:
    self.model.eval()
    outputs = self.model(data)
    return {
        "node_probs": torch.softmax(outputs["node_logits"], -1),
        "graph_probs": torch.softmax(outputs["graph_logits"], -1),
    }
