"""KNN / radius graphs over calcifications, Cartesian edges, padded batching.

Host-side numpy (+ jraph containers). Conventions (docs/architecture.md):
`senders` = source j = PyG `edge_index[0]`, `receivers` = target i = PyG
`edge_index[1]` (PyG `flow="source_to_target"`); edge features are PyG
`Cartesian` offsets `pos[senders] - pos[receivers]`, normalised per sample.

One graph sample (one cluster) is a mapping::

  {"nodes": {"patches": f32[n, M, M], "coords": f32[n, 2], "label": i32[n]},
   "label": int,            # graph label (distribution index), -1 = unknown
   "id": str}               # optional, used in error messages

`build_sample_graphs` turns it into `{graph_type: GraphsTuple}` with one
graph; `pad_batch` / `batch_iterator` concatenate such samples and pad them
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

import jraph
import numpy as np
from scipy.spatial import cKDTree

GRAPH_TYPES = ("knn", "radius")
# Relative slack on KD-tree ball radii; candidates are re-filtered exactly.
_BALL_SLACK = 1e-9


def _as_points(coords: np.ndarray) -> np.ndarray:
  pos = np.asarray(coords, dtype=np.float64)
  if pos.ndim != 2:
    raise ValueError(f"coords must be [n, d], got shape {pos.shape}")
  if not np.all(np.isfinite(pos)):
    raise ValueError("coords contain NaN or inf")
  return pos


def _empty_edges() -> tuple[np.ndarray, np.ndarray]:
  return np.zeros((0,), np.int32), np.zeros((0,), np.int32)


def _rank_and_cut(
    pos: np.ndarray,
    receivers: np.ndarray,
    senders: np.ndarray,
    *,
    loop: bool,
    max_per_receiver: Optional[int],
    max_dist2: Optional[float] = None,
) -> tuple[np.ndarray, np.ndarray]:
  """Sorts candidate edges by (receiver, distance, sender) and keeps the top.

  Squared distances are recomputed here in float64 so ties (duplicate
  coordinates) are broken by sender index, independent of the KD-tree.
  """
  if not loop:
    keep = senders != receivers
    receivers, senders = receivers[keep], senders[keep]
  diff = pos[senders] - pos[receivers]
  dist2 = (diff * diff).sum(axis=1)
  if max_dist2 is not None:
    keep = dist2 < max_dist2
    receivers, senders, dist2 = receivers[keep], senders[keep], dist2[keep]
  order = np.lexsort((senders, dist2, receivers))
  receivers, senders = receivers[order], senders[order]
  if max_per_receiver is not None and receivers.size:
    # Rank of each edge within its receiver's (sorted) run.
    starts = np.flatnonzero(np.r_[True, receivers[1:] != receivers[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, receivers.size]))
    keep = np.arange(receivers.size) - run_start < max_per_receiver
    receivers, senders = receivers[keep], senders[keep]
  return senders.astype(np.int32), receivers.astype(np.int32)


def _ball_candidates(
    tree: cKDTree, pos: np.ndarray, radii: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """(receivers, senders) of all points within `radii[i]` of each point i."""
  hits = tree.query_ball_point(pos, radii * (1 + _BALL_SLACK) + 1e-300)
  counts = np.fromiter((len(h) for h in hits), np.int64, count=len(hits))
  receivers = np.repeat(np.arange(len(hits), dtype=np.int64), counts)
  senders = (
      np.concatenate([np.asarray(h, np.int64) for h in hits])
      if counts.sum()
      else np.zeros((0,), np.int64)
  )
  return receivers, senders


def knn_graph(
    coords: np.ndarray, k: int, *, loop: bool = False
) -> tuple[np.ndarray, np.ndarray]:
  """Edges j -> i from the k nearest neighbours j of every node i.

  PyG `knn_graph(x, k, loop=loop, flow="source_to_target")` semantics:
  `senders` = neighbour j, `receivers` = i. With `k >= n - 1` every node is
  linked to all others. Ties in distance (e.g. duplicate coordinates) are
  broken by the lower neighbour index; PyG's tie order is implementation
  defined. With `loop=True` the node itself counts as one of its k
  neighbours (as in PyG).

  Args:
    coords: `[n, d]` node positions.
    k: number of neighbours per node.
    loop: include self-loops.

  Returns:
    int32 `(senders, receivers)`, sorted by receiver, then by distance, then
    sender.
  """
  if k < 0:
    raise ValueError(f"k must be >= 0, got {k}")
  pos = _as_points(coords)
  n = pos.shape[0]
  if n == 0 or k == 0:
    return _empty_edges()
  num_query = min(k if loop else k + 1, n)
  if num_query == n:
    # Everyone is a neighbour: skip the tree.
    receivers = np.repeat(np.arange(n), n)
    senders = np.tile(np.arange(n), n)
  else:
    tree = cKDTree(pos)
    dist, _ = tree.query(pos, k=num_query)
    dist = dist.reshape(n, -1)  # k=1 returns a 1-D array.
    # All points as close as the num_query-th one (ties included) are
    # candidates; the exact cut happens in _rank_and_cut.
    receivers, senders = _ball_candidates(tree, pos, dist[:, -1])
  return _rank_and_cut(pos, receivers, senders, loop=loop, max_per_receiver=k)


def radius_graph(
    coords: np.ndarray,
    r: float,
    *,
    max_num_neighbors: Optional[int] = 32,
    loop: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
  """Edges j -> i for every pair closer than `r`.

  PyG `radius_graph(x, r, loop=loop, max_num_neighbors=...)` semantics with
  a strict `||x_i - x_j|| < r` (torch_cluster / pyg-lib compare squared
  distances with `<`). At most `max_num_neighbors` edges per receiver are
  kept: here the nearest ones (ties by lower index), deterministically. PyG
  keeps an implementation-defined subset (the first ones found by its KD-tree
  on CPU, by index order on GPU), so edge sets only agree with PyG when no
  receiver has more than `max_num_neighbors` neighbours.

  Args:
    coords: `[n, d]` node positions.
    r: radius, in the units of `coords`.
    max_num_neighbors: cap per receiver; None = no cap.
    loop: include self-loops (which then count towards the cap).

  Returns:
    int32 `(senders, receivers)` sorted by receiver, distance, sender.
  """
  if r < 0:
    raise ValueError(f"r must be >= 0, got {r}")
  pos = _as_points(coords)
  n = pos.shape[0]
  if n == 0 or r == 0:
    return _empty_edges()
  tree = cKDTree(pos)
  receivers, senders = _ball_candidates(tree, pos, np.full(n, float(r)))
  return _rank_and_cut(
      pos,
      receivers,
      senders,
      loop=loop,
      max_per_receiver=max_num_neighbors,
      max_dist2=float(r) * float(r),
  )


def cartesian(
    coords: np.ndarray,
    senders: np.ndarray,
    receivers: np.ndarray,
    *,
    norm: bool = True,
    max_value: Optional[float] = None,
) -> np.ndarray:
  """PyG `Cartesian` edge features of one graph.

  `cart = pos[senders] - pos[receivers]`; with `norm`,
  `cart / (2 * max) + 0.5` where `max = max |cart|` over all edges and both
  axes (or `max_value`), mapping offsets into `[0, 1]`. Computed in float32
  in PyG's operation order. Deviation: when every offset is 0 (only
  duplicate coordinates are linked) PyG divides 0 by 0 and yields NaN; here
  the features are 0.5 (zero offset).

  Args:
    coords: `[n, d]` node positions.
    senders: `[E]` source indices (PyG `edge_index[0]`).
    receivers: `[E]` target indices (PyG `edge_index[1]`).
    norm: normalise into `[0, 1]`.
    max_value: fixed normaliser instead of the data maximum.

  Returns:
    float32 `[E, d]`.
  """
  pos = np.asarray(coords, dtype=np.float32)
  cart = pos[np.asarray(senders)] - pos[np.asarray(receivers)]
  if norm and cart.size:
    max_val = float(np.abs(cart).max()) if max_value is None else max_value
    if max_val == 0:
      return np.full(cart.shape, 0.5, np.float32)
    cart = cart / np.float32(2 * max_val) + np.float32(0.5)
  return cart.astype(np.float32)


def radius_mm_to_normalised(
    radius_mm: float,
    *,
    pixel_spacing_mm: float,
    image_shape: Sequence[int],
    axis: str = "mean",
) -> float:
  """Converts a radius in mm into normalised-coordinate units.

  Normalised coordinates are `(x / width, y / height)`, so a physical circle
  is an ellipse there (unless the image is square). `axis` picks the scale:
  `"x"` (width), `"y"` (height) or `"mean"` (geometric mean of the two).

  Args:
    radius_mm: radius in millimetres.
    pixel_spacing_mm: isotropic pixel size.
    image_shape: `(H, W)` of the image the coordinates were normalised by.
    axis: `"x"`, `"y"` or `"mean"`.

  Returns:
    The radius in normalised units.
  """
  height, width = float(image_shape[0]), float(image_shape[1])
  scales = {"x": width, "y": height, "mean": math.sqrt(width * height)}
  if axis not in scales:
    raise ValueError(f"axis must be 'x', 'y' or 'mean', got {axis!r}")
  return float(radius_mm) / (float(pixel_spacing_mm) * scales[axis])


def build_sample_graphs(
    sample: Mapping[str, Any],
    *,
    graph_types: Sequence[str] = GRAPH_TYPES,
    knn_k: int = 4,
    radius: float = 0.05,
    max_num_neighbors: Optional[int] = 32,
    cartesian_norm: bool = True,
    cartesian_max_value: Optional[float] = None,
) -> dict[str, jraph.GraphsTuple]:
  """Builds the graphs of ONE sample (one cluster), one GraphsTuple per type.

  Args:
    sample: `{"nodes": {...node arrays, "coords" required...}, "label": int}`
      (see the module docstring); every node array has `n` rows.
    graph_types: subset of `("knn", "radius")`.
    knn_k: neighbours per node for `"knn"` (MT-GCN: 4).
    radius: radius for `"radius"` in normalised coordinate units (see
      `radius_mm_to_normalised`).
    max_num_neighbors: per-receiver cap of the radius graph (PyG: 32).
    cartesian_norm / cartesian_max_value: `cartesian` options; the maximum
      is taken per sample and graph type, as PyG's transform does per `Data`.

  Returns:
    `{graph_type: GraphsTuple}` with `n_node = [n]`, `n_edge = [E]`, the
    sample's node arrays as `nodes` (the same dict object for every type),
    float32 `[E, 2]` edges and `globals = {"label": int32 [1]}`.
  """
  if "nodes" not in sample:
    raise ValueError(
        f"sample {sample.get('id', '?')!r} has no 'nodes' mapping; keys:"
        f" {sorted(sample)}"
    )
  nodes = {key: np.asarray(value) for key, value in sample["nodes"].items()}
  if "coords" not in nodes:
    raise ValueError(
        f"sample {sample.get('id', '?')!r}: nodes need 'coords', got"
        f" {sorted(nodes)}"
    )
  n = nodes["coords"].shape[0]
  for key, value in nodes.items():
    if value.shape[:1] != (n,):
      raise ValueError(
          f"sample {sample.get('id', '?')!r}: nodes[{key!r}] has shape"
          f" {value.shape}, expected {n} rows like 'coords'"
      )
  globals_ = {"label": np.asarray([sample.get("label", -1)], np.int32)}
  graphs = {}
  for graph_type in graph_types:
    if graph_type == "knn":
      senders, receivers = knn_graph(nodes["coords"], knn_k)
    elif graph_type == "radius":
      senders, receivers = radius_graph(
          nodes["coords"], radius, max_num_neighbors=max_num_neighbors
      )
    else:
      raise ValueError(
          f"unknown graph type {graph_type!r}; expected one of {GRAPH_TYPES}"
      )
    edges = cartesian(
        nodes["coords"],
        senders,
        receivers,
        norm=cartesian_norm,
        max_value=cartesian_max_value,
    )
    graphs[graph_type] = jraph.GraphsTuple(
        nodes=nodes,
        edges=edges,
        senders=senders,
        receivers=receivers,
        globals=globals_,
        n_node=np.asarray([n], np.int32),
        n_edge=np.asarray([senders.shape[0]], np.int32),
    )
  return graphs


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
      split, from `build_sample_graphs`).
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
