"""KNN / radius graphs over calcifications and Cartesian edge features.

Host-side numpy (+ jraph containers). Conventions (docs/architecture.md):
`senders` = source j = PyG `edge_index[0]`, `receivers` = target i = PyG
`edge_index[1]` (PyG `flow="source_to_target"`); edge features are PyG
`Cartesian` offsets `pos[senders] - pos[receivers]`, normalised per sample.

One graph sample (one cluster) is a mapping::

  {"nodes": {"patches": f32[n, M, M], "coords": f32[n, 2], "label": i32[n]},
   "label": int,            # graph label (distribution index), -1 = unknown
   "id": str}               # optional, used in error messages

`build_sample_graphs` turns it into `{graph_type: GraphsTuple}` with one
graph; `mammojax.data.batching` concatenates such samples into padded
batches.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

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
