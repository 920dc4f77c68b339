"""Padded batching of single-sample graphs to fixed budgets.

Host-side numpy (+ jraph containers). `pad_batch` / `batch_iterator`
concatenate samples from `graphs.build_sample_graphs` (`{graph_type:
GraphsTuple}` with one graph each; see `mammojax.data.graphs`) and pad them
to a fixed `Budget` following jraph's `pad_with_graphs` conventions: the
first padding graph holds all padding nodes and edges, the remaining padding
graphs are empty, and padding edges are self-loops on the first padding node.
All graph types of a batch share one `nodes` dict (plus `mask`), one `n_node`
and one `globals` dict (`label`, `mask`).

Batching is a numpy re-implementation of `jraph.dynamically_batch` +
`pad_with_graphs` (same layout), because several graph types must be packed
together and a too-large sample must name itself in the error.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import jax
import jraph
import numpy as np


@dataclasses.dataclass(frozen=True)
class Budget:
  """Static padded sizes of a batch (one per split => one compilation).

  `n_node` and `n_graph` include at least one padding node / graph (jraph's
  `pad_with_graphs` needs them); `n_edge[graph_type]` may be fully used.
  """

  n_node: int
  n_edge: Mapping[str, int]
  n_graph: int

  @property
  def max_samples(self) -> int:
    return self.n_graph - 1


def _sizes(
    sample_graphs: Mapping[str, jraph.GraphsTuple], graph_types: Sequence[str]
) -> tuple[int, dict[str, int]]:
  first = next(iter(sample_graphs.values()))
  num_nodes = int(np.sum(first.n_node))
  return num_nodes, {
      t: int(sample_graphs[t].senders.shape[0]) for t in graph_types
  }


def _round_up(value: float, multiple: int) -> int:
  return int(math.ceil(value / multiple) * multiple)


def estimate_budget(
    samples_graphs: Sequence[Mapping[str, jraph.GraphsTuple]],
    batch_size: int,
    *,
    graph_types: Optional[Sequence[str]] = None,
    round_to: int = 64,
    strategy: str = "max",
) -> Budget:
  """A budget into which `batch_iterator` packs every given sample.

  Strategies:

  * `"max"` (default): nodes / edges = the sum over the `batch_size` largest
    samples (per quantity), so ANY `batch_size` samples fit and every batch
    but the last holds exactly `batch_size` samples (fixed effective batch
    size, as the losses expect). Wasteful when sizes are very skewed.
  * `"mean"` (flax ogbg_molpcba): mean size x `batch_size`, with dynamic
    packing; batches then hold a variable number (<= `batch_size`) of
    samples. Floored at the largest single sample so none is too big.

  Both round up to a multiple of `round_to` (after reserving the padding
  node) and set `n_graph = batch_size + 1`. No sample of `samples_graphs` is
  ever too large for the result; a sample from elsewhere that is raises a
  ValueError in `pad_batch` / `batch_iterator`.

  Args:
    samples_graphs: per-sample `{graph_type: GraphsTuple}` (e.g. the whole
      split, from `graphs.build_sample_graphs`).
    batch_size: samples per batch (>= 1).
    graph_types: graph types to budget; default = those of the first sample.
    round_to: rounding multiple for node / edge counts.
    strategy: `"max"` or `"mean"`.

  Returns:
    The `Budget`.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}")
  if not samples_graphs:
    raise ValueError("estimate_budget needs at least one sample")
  if graph_types is None:
    graph_types = tuple(samples_graphs[0])
  sizes = [_sizes(s, graph_types) for s in samples_graphs]
  node_counts = np.array([s[0] for s in sizes], np.int64)
  edge_counts = {
      t: np.array([s[1][t] for s in sizes], np.int64) for t in graph_types
  }

  def need(counts: np.ndarray) -> int:
    if strategy == "max":
      return int(np.sort(counts)[::-1][:batch_size].sum())
    if strategy == "mean":
      return max(int(math.ceil(counts.mean() * batch_size)), int(counts.max()))
    raise ValueError(f"strategy must be 'max' or 'mean', got {strategy!r}")

  return Budget(
      n_node=_round_up(need(node_counts) + 1, round_to),
      n_edge={
          t: max(_round_up(need(edge_counts[t]), round_to), round_to)
          for t in graph_types
      },
      n_graph=batch_size + 1,
  )


def _too_large(
    sample_id: Any, num_nodes: int, num_edges: Mapping[str, int], budget: Budget
) -> ValueError:
  return ValueError(
      f"sample {sample_id!r} does not fit the batch budget: it has"
      f" {num_nodes} nodes and edges {dict(num_edges)}, the budget allows"
      f" {budget.n_node - 1} real nodes (n_node={budget.n_node}, one is"
      f" padding) and edges {dict(budget.n_edge)}; re-estimate the budget"
      " over all splits or raise it"
  )


def pad_batch(
    sample_graphs_list: Sequence[Mapping[str, jraph.GraphsTuple]],
    budget: Budget,
    *,
    ids: Optional[Sequence[Any]] = None,
) -> dict[str, jraph.GraphsTuple]:
  """Concatenates single-sample graphs and pads them to `budget`.

  Args:
    sample_graphs_list: per-sample `{graph_type: GraphsTuple}`; every sample
      must have every graph type of `budget.n_edge`.
    budget: the static sizes.
    ids: optional sample names for error messages (default: list index).

  Returns:
    `{graph_type: GraphsTuple}` with exactly `budget` sizes: node arrays
    `[n_node, ...]` plus `nodes["mask"]` bool, `edges` `[n_edge[t], 2]`,
    `n_node` / `n_edge` int32 `[n_graph]`, globals `[n_graph]` plus
    `globals["mask"]` bool. Real graphs come first; the first padding graph
    holds every padding node and edge; padding edges are self-loops on the
    first padding node; node features of padding nodes are zero.

  Raises:
    ValueError: if the samples do not fit, naming the offending sample(s).
  """
  graph_types = tuple(budget.n_edge)
  if ids is None:
    ids = list(range(len(sample_graphs_list)))
  num_samples = len(sample_graphs_list)
  if num_samples == 0:
    raise ValueError("pad_batch needs at least one sample")
  if num_samples > budget.n_graph - 1:
    raise ValueError(
        f"{num_samples} samples but the budget holds {budget.n_graph - 1}"
        f" (n_graph={budget.n_graph}, one is padding); ids {list(ids)}"
    )
  sizes = []
  for sample_id, sample in zip(ids, sample_graphs_list):
    missing = set(graph_types) - set(sample)
    if missing:
      raise ValueError(
          f"sample {sample_id!r} lacks graph types {sorted(missing)}"
      )
    num_nodes, num_edges = _sizes(sample, graph_types)
    if num_nodes > budget.n_node - 1 or any(
        num_edges[t] > budget.n_edge[t] for t in graph_types
    ):
      raise _too_large(sample_id, num_nodes, num_edges, budget)
    sizes.append((num_nodes, num_edges))
  total_nodes = sum(s[0] for s in sizes)
  total_edges = {t: sum(s[1][t] for s in sizes) for t in graph_types}
  if total_nodes > budget.n_node - 1 or any(
      total_edges[t] > budget.n_edge[t] for t in graph_types
  ):
    raise ValueError(
        f"samples {list(ids)} together have {total_nodes} nodes and edges"
        f" {total_edges}; the budget allows {budget.n_node - 1} real nodes and"
        f" edges {dict(budget.n_edge)}"
    )

  n_graph, n_node = budget.n_graph, budget.n_node
  first = [next(iter(s.values())) for s in sample_graphs_list]
  node_counts = np.zeros(n_graph, np.int32)
  node_counts[:num_samples] = [s[0] for s in sizes]
  node_counts[num_samples] = n_node - total_nodes
  node_mask = np.arange(n_node) < total_nodes
  graph_mask = np.arange(n_graph) < num_samples

  def pad_leading(arrays: list[np.ndarray], length: int, like: Any):
    template = np.asarray(like)
    out = np.zeros((length,) + template.shape[1:], template.dtype)
    if arrays:
      joined = np.concatenate(arrays, axis=0)
      out[: joined.shape[0]] = joined
    return out

  node_keys = [k for k in first[0].nodes if k != "mask"]
  nodes = {
      key: pad_leading(
          [g.nodes[key] for g in first], n_node, first[0].nodes[key]
      )
      for key in node_keys
  }
  nodes["mask"] = node_mask
  global_keys = [k for k in first[0].globals if k != "mask"]
  globals_ = {
      key: pad_leading(
          [g.globals[key] for g in first], n_graph, first[0].globals[key]
      )
      for key in global_keys
  }
  globals_["mask"] = graph_mask

  offsets = np.concatenate([[0], np.cumsum([s[0] for s in sizes])[:-1]])
  out = {}
  for graph_type in graph_types:
    n_edge = budget.n_edge[graph_type]
    graphs = [s[graph_type] for s in sample_graphs_list]
    # Padding edges: self-loops on the first padding node (index total_nodes).
    senders = np.full(n_edge, total_nodes, np.int32)
    receivers = np.full(n_edge, total_nodes, np.int32)
    used = total_edges[graph_type]
    if used:
      senders[:used] = np.concatenate(
          [g.senders + off for g, off in zip(graphs, offsets)]
      )
      receivers[:used] = np.concatenate(
          [g.receivers + off for g, off in zip(graphs, offsets)]
      )
    edge_counts = np.zeros(n_graph, np.int32)
    edge_counts[:num_samples] = [s[1][graph_type] for s in sizes]
    edge_counts[num_samples] = n_edge - used
    edges = pad_leading(
        [np.asarray(g.edges, np.float32).reshape(-1, 2) for g in graphs],
        n_edge,
        np.zeros((0, 2), np.float32),
    )
    out[graph_type] = jraph.GraphsTuple(
        nodes=nodes,
        edges=edges,
        senders=senders,
        receivers=receivers,
        globals=globals_,
        n_node=node_counts,
        n_edge=edge_counts,
    )
  return out


def batch_iterator(
    samples_graphs: Iterable[Mapping[str, jraph.GraphsTuple]],
    budget: Budget,
    *,
    batch_size: int,
    ids: Optional[Iterable[Any]] = None,
) -> Iterator[dict[str, jraph.GraphsTuple]]:
  """Greedily packs samples, in order, into padded batches; drops none.

  Like `jraph.dynamically_batch`: a sample joins the current batch if the
  batch then has at most `batch_size` samples and fits the node and every
  graph type's edge budget; otherwise the current batch is emitted and the
  sample starts the next one. The last, partial batch is emitted too.

  Args:
    samples_graphs: per-sample `{graph_type: GraphsTuple}`.
    budget: static sizes (`budget.n_graph - 1 >= batch_size`).
    batch_size: maximum samples per batch.
    ids: optional sample names for error messages (default: position).

  Yields:
    Padded batches from `pad_batch`.

  Raises:
    ValueError: when a single sample exceeds the budget (naming it).
  """
  if not 1 <= batch_size <= budget.n_graph - 1:
    raise ValueError(
        f"batch_size {batch_size} must be in [1, n_graph - 1 ="
        f" {budget.n_graph - 1}]"
    )
  graph_types = tuple(budget.n_edge)
  id_iter = iter(ids) if ids is not None else None
  batch, batch_ids = [], []
  used_nodes, used_edges = 0, {t: 0 for t in graph_types}
  for position, sample in enumerate(samples_graphs):
    sample_id = next(id_iter) if id_iter is not None else position
    num_nodes, num_edges = _sizes(sample, graph_types)
    if num_nodes > budget.n_node - 1 or any(
        num_edges[t] > budget.n_edge[t] for t in graph_types
    ):
      raise _too_large(sample_id, num_nodes, num_edges, budget)
    fits = (
        len(batch) < batch_size
        and used_nodes + num_nodes <= budget.n_node - 1
        and all(
            used_edges[t] + num_edges[t] <= budget.n_edge[t]
            for t in graph_types
        )
    )
    if batch and not fits:
      yield pad_batch(batch, budget, ids=batch_ids)
      batch, batch_ids = [], []
      used_nodes, used_edges = 0, {t: 0 for t in graph_types}
    batch.append(sample)
    batch_ids.append(sample_id)
    used_nodes += num_nodes
    for t in graph_types:
      used_edges[t] += num_edges[t]
  if batch:
    yield pad_batch(batch, budget, ids=batch_ids)


def stack_batches(batches: Sequence[Any]) -> Any:
  """Stacks per-device host batches on a new leading axis (pmap input).

  Graph batches cannot be split along an axis, so each local device gets its
  own padded batch.
  """
  return jax.tree_util.tree_map(lambda *xs: np.stack(xs), *batches)
