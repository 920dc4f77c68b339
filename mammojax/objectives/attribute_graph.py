"""The attribute graph of DAE-GCN: nodes, co-occurrence edges, group losses.

DAE-GCN (Zhang et al., MICCAI 2021, Eq. 2) adopts ML-GCN's correlation matrix
(Chen et al., CVPR 2019; the authors' ``util.py: gen_A / gen_adj``) over the
values of the lesion attributes (mass shape and mass margin values):

* **Nodes**: one per attribute value, grouped by attribute (``AttributeNodes``,
  built from the dataset's vocabularies, never hard-coded). Node ``i`` of
  group ``g`` is ``group_offsets[g] + value index``.
* **Co-occurrence** (``cooccurrence``): ``M_ij`` = training items that have
  both value ``i`` and value ``j`` (diagonal 0, as ML-GCN's pickles),
  ``N_i`` = training items with value ``i``. An item's missing attribute
  (-1, N/A) adds no node for that item.
* **Correlation matrix** (``correlation_matrix``): ``P = M / N[:, None]``
  (``P_ij = P(j | i)``), binarised ``A_ij = [P_ij >= tau]``, re-weighted
  ``A'_ij = p * A_ij / (sum_i A_ij + 1e-6)`` (column sums, as ML-GCN's code
  and its corrected Eq. 8) and a diagonal of ``1 - p`` (the DAE-GCN / ML-GCN
  papers, ``diagonal='one_minus_p'``) or ``1`` (ML-GCN's code,
  ``diagonal='one'``).
* **Normalisation** (``normalize_adjacency``): ``D^-1/2 A^T D^-1/2`` with
  ``D`` the row sums of ``A`` (``gen_adj``: note the transpose).
* **Group loss** (``group_cross_entropy_terms``): the scores of a group's
  values are soft-maxed within the group (the paper's ``clus(i)``) and the
  group's cross-entropy is summed over items whose value is known; an item
  with a missing attribute (-1) counts in no loss of that group.

An attribute value that never occurs among the training items has no
``P`` row (``N_i = 0``): ``correlation_matrix`` raises naming it, or, with
``unseen='isolate'``, gives it only its self-loop (reported by
``unseen_attributes``).
"""

import dataclasses
from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from mammojax.objectives import losses

DIAGONALS = ("one_minus_p", "one")
UNSEEN = ("error", "isolate")


@dataclasses.dataclass(frozen=True)
class AttributeNodes:
  """The attribute values as graph nodes.

  Attributes:
    groups: the attribute (vocabulary) names, e.g. ``('mass_shape',
      'mass_margin')``.
    values: per group, its values (the vocabulary).
  """

  groups: tuple[str, ...]
  values: tuple[tuple[str, ...], ...]

  @property
  def group_sizes(self) -> tuple[int, ...]:
    return tuple(len(v) for v in self.values)

  @property
  def group_offsets(self) -> tuple[int, ...]:
    return tuple(int(o) for o in np.cumsum((0,) + self.group_sizes)[:-1])

  @property
  def num_nodes(self) -> int:
    return int(sum(self.group_sizes))

  @property
  def names(self) -> tuple[str, ...]:
    """``group=value`` of every node, in node order."""
    return tuple(
        f"{g}={v}" for g, vals in zip(self.groups, self.values) for v in vals
    )

  @property
  def node_group(self) -> np.ndarray:
    """int ``[C]``: the group of each node."""
    return np.repeat(np.arange(len(self.groups)), self.group_sizes)


def attribute_nodes(
    vocabularies: Mapping[str, Sequence[str]], groups: Sequence[str]
) -> AttributeNodes:
  """The nodes of ``groups`` read from the dataset's ``vocabularies``.

  Raises:
    ValueError: a group is not a vocabulary, has fewer than two values (a
      softmax over one value learns nothing) or repeats a value.
  """
  groups = tuple(groups)
  if not groups:
    raise ValueError("config.model.attributes is empty: expected attribute "
                     "vocabularies such as ('mass_shape', 'mass_margin')")
  values = []
  for g in groups:
    if g not in vocabularies:
      raise ValueError(
          f"config.model.attributes: {g!r} is not a vocabulary of the "
          f"dataset (it has {sorted(vocabularies)})"
      )
    vals = tuple(str(v) for v in vocabularies[g])
    if len(vals) < 2:
      raise ValueError(
          f"attribute {g!r} has {len(vals)} value(s) {list(vals)}: expected "
          "at least 2 (a softmax within one value learns nothing; drop it "
          "from config.model.attributes)"
      )
    if len(set(vals)) != len(vals):
      raise ValueError(f"attribute {g!r}: repeated values in {list(vals)}")
    values.append(vals)
  return AttributeNodes(groups, tuple(values))


def node_labels(nodes: AttributeNodes, labels: np.ndarray) -> np.ndarray:
  """Items' per-group value indices ``[N, G]`` -> bool node sets ``[N, C]``.

  Raises:
    ValueError: a value index is outside its group (names the group).
  """
  labels = np.asarray(labels, np.int64).reshape(-1, len(nodes.groups))
  out = np.zeros((labels.shape[0], nodes.num_nodes), bool)
  for g, (size, offset) in enumerate(
      zip(nodes.group_sizes, nodes.group_offsets)
  ):
    y = labels[:, g]
    bad = (y < -1) | (y >= size)
    if bad.any():
      raise ValueError(
          f"attribute {nodes.groups[g]!r}: value index "
          f"{int(y[np.argmax(bad)])} of item {int(np.argmax(bad))} outside "
          f"-1..{size - 1}"
      )
    known = np.flatnonzero(y >= 0)
    out[known, offset + y[known]] = True
  return out


def cooccurrence(
    nodes: AttributeNodes, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
  """Co-occurrence counts ``M [C, C]`` (diagonal 0) and counts ``N [C]``.

  Args:
    nodes: the attribute nodes.
    labels: int ``[N, G]`` value index of each item per group, -1 missing.
  """
  onehot = node_labels(nodes, labels).astype(np.int64)
  counts = onehot.sum(0)
  m = onehot.T @ onehot
  np.fill_diagonal(m, 0)
  return m, counts


def unseen_attributes(
    nodes: AttributeNodes, counts: np.ndarray
) -> list[str]:
  """The ``group=value`` names of nodes with no training item."""
  return [n for n, c in zip(nodes.names, np.asarray(counts)) if c == 0]


def correlation_matrix(
    m: np.ndarray,
    counts: np.ndarray,
    *,
    tau: float,
    p: float,
    diagonal: str = "one_minus_p",
    names: Sequence[str] | None = None,
    unseen: str = "error",
) -> np.ndarray:
  """ML-GCN's re-weighted binary correlation matrix ``A' [C, C]``.

  Args:
    m: ``[C, C]`` co-occurrence counts (the diagonal is ignored).
    counts: ``[C]`` occurrences of each node.
    tau: the binarisation threshold in (0, 1).
    p: the neighbours' total weight in (0, 1).
    diagonal: ``'one_minus_p'`` (the papers) or ``'one'`` (ML-GCN's code).
    names: node names for error messages.
    unseen: ``'error'`` or ``'isolate'`` for nodes with ``counts == 0``.

  Raises:
    ValueError: bad ``tau`` / ``p`` / ``diagonal`` / ``unseen``, shapes that
      disagree, or (``unseen='error'``) a node that never occurs.
  """
  m = np.asarray(m, np.float64)
  counts = np.asarray(counts, np.float64)
  c = counts.shape[0]
  if m.shape != (c, c):
    raise ValueError(
        f"co-occurrence matrix of shape {m.shape} for {c} node counts"
    )
  if not 0.0 < tau < 1.0:
    raise ValueError(f"config.graph.tau={tau}: expected a value in (0, 1)")
  if not 0.0 < p < 1.0:
    raise ValueError(f"config.graph.p={p}: expected a value in (0, 1)")
  if diagonal not in DIAGONALS:
    raise ValueError(
        f"config.graph.diagonal={diagonal!r}: expected one of {DIAGONALS}"
    )
  if unseen not in UNSEEN:
    raise ValueError(
        f"config.graph.unseen={unseen!r}: expected one of {UNSEEN}"
    )
  names = list(names) if names is not None else [str(i) for i in range(c)]
  zero = counts <= 0
  if zero.any() and unseen == "error":
    missing = [names[i] for i in np.flatnonzero(zero)]
    raise ValueError(
        f"attribute values never occur in the training items: {missing} "
        "(their co-occurrence row P = M / N is undefined); remove them from "
        "the vocabulary or set config.graph.unseen='isolate' to keep them "
        "as nodes with only a self-loop"
    )
  m = m.copy()
  np.fill_diagonal(m, 0.0)
  prob = np.where(zero[:, None], 0.0, m / np.where(zero, 1.0, counts)[:, None])
  binary = (prob >= tau).astype(np.float64)
  weighted = p * binary / (binary.sum(0, keepdims=True) + 1e-6)
  np.fill_diagonal(weighted, 1.0 - p if diagonal == "one_minus_p" else 1.0)
  return weighted.astype(np.float32)


def normalize_adjacency(a: np.ndarray) -> np.ndarray:
  """ML-GCN's ``gen_adj``: ``D^-1/2 A^T D^-1/2``, ``D`` = row sums of A."""
  a = np.asarray(a, np.float64)
  d = np.power(a.sum(1), -0.5)
  return (d[:, None] * a.T * d[None, :]).astype(np.float32)


def group_cross_entropy_terms(
    scores: jax.Array,
    labels: jax.Array,
    mask: jax.Array,
    group_sizes: Sequence[int],
) -> tuple[jax.Array, jax.Array]:
  """Per-group softmax cross-entropy sums and their item counts.

  Args:
    scores: ``[B, C]`` node scores (``<H_L[i], h_ma>``), groups contiguous.
    labels: int ``[B, G]`` value index within each group, -1 missing.
    mask: bool ``[B]``, False for padding.
    group_sizes: the values per group (sums to ``C``).

  Returns:
    ``(sums [G], counts [G])``: each group's summed cross-entropy over the
    items whose value is known, and how many they are.
  """
  sums, counts = [], []
  start = 0
  for g, size in enumerate(group_sizes):
    y = labels[:, g]
    valid = jnp.logical_and(mask, y >= 0)
    terms, weights = losses.cross_entropy_terms(
        scores[:, start : start + size], y, valid
    )
    sums.append(jnp.sum(terms))
    counts.append(jnp.sum(weights))
    start += size
  return jnp.stack(sums), jnp.stack(counts)


def group_probabilities(
    scores: jax.Array, group_sizes: Sequence[int]
) -> jax.Array:
  """``[B, C]`` scores -> probabilities, soft-maxed within each group."""
  out, start = [], 0
  for size in group_sizes:
    out.append(jax.nn.softmax(scores[:, start : start + size], axis=-1))
    start += size
  return jnp.concatenate(out, axis=-1)
