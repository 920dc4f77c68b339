"""DiagNet's signed graph (paper eq. 3) and its regulariser J_g (eq. 4).

Items are the training set expanded by the adversarial augmentation: every
item has a class ``c`` (``group``) and a ``kind``: ``ORIGINAL`` (X_c, flips
included), ``POSITIVE`` (X_c+, generated on the class manifold) or
``NEGATIVE`` (X_c-, generated off it).

Eq. 3, for an anchor ``x_i`` of class ``c``:

* ``phi_ij = +1`` for its ``n+`` nearest items of ``X_c u X_c+`` (same class,
  original or positive neighbour; ``j != i``);
* ``phi_ij = -1`` for its ``n-`` nearest items of ``X_-c u X_c-`` (every item
  of the other classes, whatever its kind, and the negative neighbours of
  ``c``);
* 0 elsewhere (the two candidate sets are disjoint, so no pair gets both).

Reading of the paper: the anchors are the on-manifold items (``ORIGINAL``
and ``POSITIVE``); a negative neighbour is never an anchor (pulling an
off-manifold sample towards its nearest class items would undo what it was
generated for), it only enters the graph as another anchor's ``-1`` edge.
Ties in distance go to the lower item index (stable sort).

Eq. 4: ``J_g = sum_{phi_ij > 0} dist(h_i, h_j) + sum_{phi_ij < 0}
max(0, m + phi_ij dist(h_i, h_j))`` with ``dist`` the angular cosine
distance ``arccos(cos(h_i, h_j)) / pi`` in [0, 1] and margin ``m`` (1 in the
paper). Eq. 4 is a sum over the graph's edges and sets no scale; the
trainer divides the batch sum by the number of edges (``edge_count``: the
mean hinge / distance per signed pair, each in [0, 1]), so ``lambda`` of
``J = J_l + lambda J_g`` (eq. 6) means the same at any batch size and any
``(n+, n-)``, and a J_g of the order of the per-item cross-entropy at
lambda = 1 (normalised per anchor, ``anchor_count``, J_g grows with
``n+ + n-``: with n- = 4 it outweighed J_l 3-4x and the network did not
learn).

Where the graph comes from (``mammojax.methods.diagnet``,
``config.diagnet.graph_space``): the neighbour ranks use either the fixed
input-space features of the augmentation (``input``: the paper's graph built
upon the augmented data, restricted to the items of the batch) or the
current embeddings (``embedding``, gradient stopped); either way the graph
is built inside the jitted step from the batch, so ``signed_graph`` takes
any distance matrix. All functions are pure ``jnp`` (a numpy twin of the
distance serves the host-side augmentation).
"""

import jax
import jax.numpy as jnp
import numpy as np

ORIGINAL, POSITIVE, NEGATIVE = 0, 1, 2
KINDS = ("original", "positive", "negative")

_COS_CLIP = 1.0 - 1e-6


def angular_distance_matrix(a: jax.Array, b: jax.Array) -> jax.Array:
  """Angular cosine distances ``arccos(cos(a_i, b_j)) / pi``, ``[N, M]``.

  Zero vectors have cosine 0 to everything (distance 1/2). The cosine is
  clipped to ``1 - 1e-6`` in magnitude, so gradients stay finite.
  """
  a = a.astype(jnp.float32)
  b = b.astype(jnp.float32)
  na = jnp.sqrt(jnp.sum(a * a, axis=-1, keepdims=True) + 1e-12)
  nb = jnp.sqrt(jnp.sum(b * b, axis=-1, keepdims=True) + 1e-12)
  cos = (a / na) @ (b / nb).T
  return jnp.arccos(jnp.clip(cos, -_COS_CLIP, _COS_CLIP)) / jnp.pi


def angular_distance_matrix_np(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """``angular_distance_matrix`` in float64 numpy (host-side)."""
  a = np.asarray(a, np.float64)
  b = np.asarray(b, np.float64)
  na = np.sqrt(np.sum(a * a, axis=-1, keepdims=True) + 1e-12)
  nb = np.sqrt(np.sum(b * b, axis=-1, keepdims=True) + 1e-12)
  cos = (a / na) @ (b / nb).T
  return np.arccos(np.clip(cos, -_COS_CLIP, _COS_CLIP)) / np.pi


def candidate_masks(
    group: jax.Array, kind: jax.Array, valid: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Anchors ``[B]`` and the ``+1`` / ``-1`` candidate sets ``[B, B]``.

  Args:
    group: int ``[B]`` class of each item.
    kind: int ``[B]`` ``ORIGINAL`` / ``POSITIVE`` / ``NEGATIVE``.
    valid: bool ``[B]`` real items (False = padding or excluded).

  Returns:
    ``(anchor, positive_candidates, negative_candidates)``.
  """
  b = group.shape[0]
  anchor = valid & (kind != NEGATIVE)
  pair = anchor[:, None] & valid[None, :] & ~jnp.eye(b, dtype=bool)
  same = group[:, None] == group[None, :]
  pos = pair & same & (kind[None, :] != NEGATIVE)
  neg = pair & (~same | (kind[None, :] == NEGATIVE))
  return anchor, pos, neg


def _nearest(distances: jax.Array, candidates: jax.Array, n: int):
  """``[B, B]`` bool: the ``n`` nearest candidates of each row."""
  if n <= 0:
    return jnp.zeros_like(candidates)
  masked = jnp.where(candidates, distances, jnp.inf)
  ranks = jnp.argsort(jnp.argsort(masked, axis=1, stable=True), axis=1,
                      stable=True)
  return candidates & (ranks < n)


def signed_graph(
    distances: jax.Array,
    group: jax.Array,
    kind: jax.Array,
    valid: jax.Array,
    *,
    n_pos: int,
    n_neg: int,
) -> jax.Array:
  """Eq. 3: the signed adjacency ``phi`` ``[B, B]`` in {-1, 0, +1}.

  Args:
    distances: ``[B, B]`` pairwise distances ranking the neighbours.
    group: int ``[B]`` class of each item.
    kind: int ``[B]`` kind of each item (module docstring).
    valid: bool ``[B]`` real items.
    n_pos: ``n+``, nearest same-class on-manifold neighbours (+1 edges).
    n_neg: ``n-``, nearest other-class / negative neighbours (-1 edges).

  Returns:
    float32 ``phi`` (row = anchor).
  """
  _, pos, neg = candidate_masks(group, kind, valid)
  distances = jax.lax.stop_gradient(distances)
  plus = _nearest(distances, pos, int(n_pos))
  minus = _nearest(distances, neg, int(n_neg))
  return plus.astype(jnp.float32) - minus.astype(jnp.float32)


def anchor_count(
    group: jax.Array, kind: jax.Array, valid: jax.Array, *, n_pos: int,
    n_neg: int,
) -> jax.Array:
  """Anchors with at least one edge (J_g's normaliser; no distances)."""
  anchor, pos, neg = candidate_masks(group, kind, valid)
  has = jnp.zeros_like(anchor)
  if n_pos > 0:
    has = has | jnp.any(pos, axis=1)
  if n_neg > 0:
    has = has | jnp.any(neg, axis=1)
  return jnp.sum(anchor & has).astype(jnp.float32)


def edge_count(
    group: jax.Array, kind: jax.Array, valid: jax.Array, *, n_pos: int,
    n_neg: int,
) -> jax.Array:
  """Edges of the batch's signed graph (J_g's normaliser; no distances).

  Each anchor has ``min(n+, its +1 candidates) + min(n-, its -1
  candidates)`` edges, the number of nonzero ``phi_ij`` of its row.
  """
  anchor, pos, neg = candidate_masks(group, kind, valid)
  per_anchor = (
      jnp.minimum(jnp.sum(pos, axis=1), max(int(n_pos), 0))
      + jnp.minimum(jnp.sum(neg, axis=1), max(int(n_neg), 0))
  )
  return jnp.sum(jnp.where(anchor, per_anchor, 0)).astype(jnp.float32)


def regulariser_terms(
    embedding_distances: jax.Array, phi: jax.Array, *, margin: float
) -> jax.Array:
  """Eq. 4 per anchor ``[B]``: its row of J_g.

  Args:
    embedding_distances: ``[B, B]`` ``dist(h_i, h_j)``.
    phi: the signed graph ``[B, B]``.
    margin: ``m``.
  """
  d = embedding_distances
  attract = jnp.where(phi > 0, d, 0.0)
  repel = jnp.where(phi < 0, jax.nn.relu(margin + phi * d), 0.0)
  return jnp.sum(attract + repel, axis=1)


def regulariser(
    embeddings: jax.Array, phi: jax.Array, *, margin: float = 1.0
) -> jax.Array:
  """Eq. 4: ``J_g`` (a sum over the graph's edges) of embeddings ``[B, F]``."""
  d = angular_distance_matrix(embeddings, embeddings)
  return jnp.sum(regulariser_terms(d, phi, margin=margin))
