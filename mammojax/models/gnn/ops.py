"""Pure graph math: segment softmax, aggregations, message norm (PyG numerics).

Functions over arrays, jraph style: static ``num_nodes`` / ``num_segments``
(jit needs static segment counts), no RNG, no params. ``softmax_aggregation``
has a hand-written VJP; ``_softmax_aggregation_reference`` is PyG's
formulation differentiated by autodiff, kept as its spec
(docs/performance.md). Messages are aggregated at ``receivers``.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array

# PyG's sparse softmax adds this to the denominator (torch_geometric/utils/
# _softmax.py); jraph's segment_softmax does not.
_SOFTMAX_DENOM_EPS = 1e-16
# F.normalize's default eps.
_NORMALIZE_EPS = 1e-12

_AGGRS = ('softmax', 'softmax_sg', 'mean', 'sum', 'add', 'max')


class AffineEdges(NamedTuple):
  """Edge features ``raw @ kernel + bias``, kept factored.

  A linear edge encoder over a few raw edge features (MT-GCN's 2-d offsets)
  returns this instead of the ``[E, C]`` product, so that a consumer that
  can form the product per edge on the fly (the fused GENConv CPU kernel,
  ``gnn.fused``) never stores it; everything else calls ``materialize()``.
  A pytree (a NamedTuple of arrays): it passes through jit, vmap, scan.

  Attributes:
    raw: ``[E, K]`` raw edge features.
    kernel: ``[K, C]`` encoder weights.
    bias: ``[C]`` or None.
  """

  raw: Array
  kernel: Array
  bias: Array | None = None

  @property
  def shape(self) -> tuple[int, ...]:
    return tuple(self.raw.shape[:-1]) + (self.kernel.shape[-1],)

  @property
  def dtype(self):
    return jnp.result_type(self.raw, self.kernel)

  def materialize(self) -> Array:
    """``raw @ kernel + bias`` as a sum of ``K`` broadcast products.

    For tiny ``K`` this is one fused elementwise op on the CPU (a K=2 matmul
    over every edge is slow there); the same math and summation order as
    the fused kernel's per-edge product.
    """
    out = self.raw[..., 0:1] * self.kernel[0]
    for k in range(1, self.kernel.shape[0]):
      out = out + self.raw[..., k:k + 1] * self.kernel[k]
    if self.bias is not None:
      out = out + self.bias
    return out


def materialize_edges(edge_attr: Array | AffineEdges | None) -> Array | None:
  """``edge_attr`` as an array (``AffineEdges`` multiplied out)."""
  if isinstance(edge_attr, AffineEdges):
    return edge_attr.materialize()
  return edge_attr


def genconv_messages(
    x_src: Array,
    edge_attr: Array | AffineEdges | None,
    senders: Array,
    eps: float,
) -> Array:
  """GENConv's messages ``relu(x_src[senders] + edge_attr) + eps`` (PyG)."""
  msg = x_src[senders]
  if edge_attr is not None:
    msg = msg + materialize_edges(edge_attr)
  return jax.nn.relu(msg) + eps


def segment_softmax(
    logits: Array, segment_ids: Array, num_segments: int
) -> Array:
  """Softmax of ``logits`` within each segment, per trailing channel (PyG).

  The segment max is under ``stop_gradient`` (PyG takes it of a detached
  tensor; the softmax value does not depend on it) and ``1e-16`` is added to
  the denominator, as in ``torch_geometric.utils.softmax``.

  Args:
    logits: ``[num_edges, ...]`` scores.
    segment_ids: ``[num_edges]`` int segment (receiver) of each row.
    num_segments: static number of segments.

  Returns:
    ``[num_edges, ...]`` weights summing to (almost) 1 within each segment.
  """
  seg_max = jax.ops.segment_max(
      jax.lax.stop_gradient(logits), segment_ids, num_segments
  )
  # Empty segments hold -inf but are never gathered; guard anyway so no inf
  # can leak through a gather of an out-of-range id.
  seg_max = jnp.where(jnp.isfinite(seg_max), seg_max, 0.0)
  out = jnp.exp(logits - seg_max[segment_ids])
  denom = jax.ops.segment_sum(out, segment_ids, num_segments)
  return out / (denom + _SOFTMAX_DENOM_EPS)[segment_ids]


def _softmax_aggregation_reference(
    messages: Array,
    receivers: Array,
    num_nodes: int,
    t: float | Array = 1.0,
    *,
    semi_grad: bool = False,
) -> Array:
  """PyG's formulation, differentiated by autodiff (the spec of the VJP).

  Per-edge weights ``alpha = segment_softmax(t * m)`` (max under
  ``stop_gradient``, ``1e-16`` in the denominator), then
  ``segment_sum(m * alpha)``. ``softmax_aggregation`` computes the same
  values with a hand-written VJP; tests check one against the other.
  """
  scores = messages
  if not (isinstance(t, (int, float)) and t == 1):
    scores = messages * t
  alpha = segment_softmax(scores, receivers, num_nodes)
  if semi_grad:
    alpha = jax.lax.stop_gradient(alpha)
  return jax.ops.segment_sum(messages * alpha, receivers, num_nodes)


def _softmax_aggregation_forward(
    messages: Array, receivers: Array, num_nodes: int, t: Any
) -> tuple[Array, Array, Array]:
  """``(out, e, inv)``: normalised per node, not per edge.

  ``e = exp(t m - max_i(t m))`` per edge, ``inv = 1 / (sum_i e + 1e-16)``
  and ``out = (sum_i e m) * inv``: the same value as PyG's
  ``sum_i m * (e / (sum_i e + 1e-16))`` (up to float rounding) without the
  per-edge division and its gather.
  """
  scores = messages if t is None else messages * t
  seg_max = jax.ops.segment_max(scores, receivers, num_nodes)
  # Empty segments hold -inf but are never gathered; guard anyway.
  seg_max = jnp.where(jnp.isfinite(seg_max), seg_max, 0.0)
  e = jnp.exp(scores - seg_max[receivers])
  den = jax.ops.segment_sum(e, receivers, num_nodes)
  num = jax.ops.segment_sum(e * messages, receivers, num_nodes)
  inv = 1.0 / (den + _SOFTMAX_DENOM_EPS)
  return num * inv, e, inv


def _sum_to_shape(x: Array, shape: tuple[int, ...]) -> Array:
  """Sums ``x`` down to ``shape`` (the inverse of numpy broadcasting)."""
  lead = x.ndim - len(shape)
  x = jnp.sum(x, axis=tuple(range(lead)))
  axes = tuple(i for i, n in enumerate(shape) if n == 1 and x.shape[i] != 1)
  return jnp.sum(x, axis=axes, keepdims=True).reshape(shape)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 4, 5))
def _softmax_aggregation_vjp(
    messages, receivers, num_nodes, t_array, t_static, semi_grad
):
  t = t_array if t_static is None else t_static
  return _softmax_aggregation_forward(messages, receivers, num_nodes, t)[0]


def _softmax_aggregation_vjp_fwd(
    messages, receivers, num_nodes, t_array, t_static, semi_grad
):
  t = t_array if t_static is None else t_static
  out, e, inv = _softmax_aggregation_forward(
      messages, receivers, num_nodes, t
  )
  return out, (messages, receivers, t_array, e, inv, out)


def _softmax_aggregation_vjp_bwd(num_nodes, t_static, semi_grad, res, g):
  """``dm = alpha g (1 + t (m - out_i))``, ``dt = sum m alpha g (m - out_i)``.

  With ``alpha = e * inv_i``: the softmax Jacobian ``d alpha_e / d s_e' =
  alpha_e (delta - alpha_e')`` holds exactly with the ``1e-16`` in the
  denominator, and the (stop-gradient) max only shifts the scores. With
  ``semi_grad`` the weights are constants: ``dm = alpha g``, ``dt = 0``.
  """
  del num_nodes
  messages, receivers, t_array, e, inv, out = res
  alpha_g = e * (g * inv)[receivers]
  dt = None if t_array is None else jnp.zeros_like(t_array)
  if semi_grad:
    return alpha_g, None, dt
  q = alpha_g * (messages - out[receivers])
  t = t_array if t_static is None else t_static
  dm = alpha_g + q if t is None else alpha_g + t * q
  if t_array is not None:
    dt = _sum_to_shape(messages * q, jnp.shape(t_array)).astype(t_array.dtype)
  return dm, None, dt


_softmax_aggregation_vjp.defvjp(
    _softmax_aggregation_vjp_fwd, _softmax_aggregation_vjp_bwd
)


def softmax_aggregation(
    messages: Array,
    receivers: Array,
    num_nodes: int,
    t: float | Array = 1.0,
    *,
    semi_grad: bool = False,
) -> Array:
  """PyG ``SoftmaxAggregation``: ``sum_e softmax_i(t * m_e) * m_e``.

  Same values and gradients as PyG (max under ``stop_gradient``, ``1e-16``
  in the softmax denominator; ``_softmax_aggregation_reference`` is the
  autodiff spec) but computed with a ``jax.custom_vjp``: the softmax is
  normalised per node (no per-edge division) and the backward pass is
  written by hand, ``dm = alpha g (1 + t (m - out_i))`` and ``dt = sum m
  alpha g (m - out_i)``, which saves most of the per-edge gathers, scatters
  and temporaries of autodiff (docs/performance.md).

  Args:
    messages: ``[num_edges, channels]``.
    receivers: ``[num_edges]`` target node of each message.
    num_nodes: static number of nodes.
    t: inverse temperature, a float or an array broadcastable to a row
      (``[1]`` or ``[channels]``).
    semi_grad: compute the softmax weights under ``stop_gradient``.

  Returns:
    ``[num_nodes, channels]``; nodes without incoming edges get 0.
  """
  if isinstance(t, (int, float)):
    t_static = None if t == 1 else float(t)
    t_array = None
  else:
    t_static = None
    t_array = jnp.asarray(t)
    if not jnp.issubdtype(t_array.dtype, jnp.floating):
      t_array = t_array.astype(messages.dtype)
  return _softmax_aggregation_vjp(
      messages, receivers, num_nodes, t_array, t_static, semi_grad
  )


def sum_aggregation(messages: Array, receivers: Array, num_nodes: int) -> Array:
  """Sum of incoming messages, ``[num_nodes, channels]``."""
  return jax.ops.segment_sum(messages, receivers, num_nodes)


def mean_aggregation(
    messages: Array, receivers: Array, num_nodes: int
) -> Array:
  """Mean of incoming messages; 0 for nodes without edges (PyG)."""
  total = jax.ops.segment_sum(messages, receivers, num_nodes)
  count = jax.ops.segment_sum(
      jnp.ones(receivers.shape, messages.dtype), receivers, num_nodes
  )
  return total / jnp.maximum(count, 1.0)[:, None]


def max_aggregation(messages: Array, receivers: Array, num_nodes: int) -> Array:
  """Channel-wise max of incoming messages; 0 for nodes without edges (PyG)."""
  out = jax.ops.segment_max(messages, receivers, num_nodes)
  count = jax.ops.segment_sum(
      jnp.ones(receivers.shape, jnp.int32), receivers, num_nodes
  )
  return jnp.where((count > 0)[:, None], out, 0.0)


def _safe_l2_norm(x: Array) -> Array:
  """L2 norm over the last axis (keepdims) with a zero (not NaN) grad at 0."""
  sq = jnp.sum(x * x, axis=-1, keepdims=True)
  positive = sq > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, sq, 1.0)), 0.0)


def message_norm(x: Array, msg: Array, scale: float | Array = 1.0) -> Array:
  """PyG ``MessageNorm``: ``msg / max(|msg|, 1e-12) * |x| * scale``.

  Args:
    x: ``[num_nodes, f]`` node features (PyG passes the unprojected x_dst).
    msg: ``[num_nodes, c]`` aggregated messages.
    scale: scalar or ``[1]`` factor.

  Returns:
    ``[num_nodes, c]``; zero messages stay zero (with zero gradients, as
    torch's norm backward gives at 0).
  """
  msg = msg / jnp.maximum(_safe_l2_norm(msg), _NORMALIZE_EPS)
  return msg * _safe_l2_norm(x) * scale


def aggregate(
    aggr: str,
    messages: Array,
    receivers: Array,
    num_nodes: int,
    t: float | Array = 1.0,
) -> Array:
  """Aggregation by name: softmax, softmax_sg, mean, sum (add), max."""
  if aggr in ('softmax', 'softmax_sg'):
    return softmax_aggregation(
        messages, receivers, num_nodes, t, semi_grad=aggr == 'softmax_sg'
    )
  if aggr in ('sum', 'add'):
    return sum_aggregation(messages, receivers, num_nodes)
  if aggr == 'mean':
    return mean_aggregation(messages, receivers, num_nodes)
  if aggr == 'max':
    return max_aggregation(messages, receivers, num_nodes)
  raise ValueError(f'aggr: expected one of {_AGGRS}, got {aggr!r}')


_DROPOUT_BITS = (8, 16, 32)


def dropout(rng: Array, x: Array, rate: float, *, bits: int = 16) -> Array:
  """Inverted dropout drawn from ``bits``-bit random integers.

  ``flax.linen.Dropout`` draws one 32-bit threefry word per element (through
  a float ``uniform``); on the CPU that hashing costs as much as a GCN layer
  (docs/performance.md). Here ``32 // bits`` elements share one word: an
  element is kept where its ``bits``-bit integer is ``>= round(rate *
  2**bits)``, and kept elements are scaled by ``1 / (1 - rate')`` with
  ``rate' = round(rate * 2**bits) / 2**bits`` the rate actually applied
  (for 16 bits within ``2**-17`` of ``rate``: 0.1 -> 0.1000061), so the
  output is unbiased. Elements are independent Bernoulli draws as in flax;
  the masks differ from flax's (another bit stream).

  Args:
    rng: a PRNG key.
    x: the input.
    rate: dropout probability in ``[0, 1)``.
    bits: 8, 16 or 32 integer bits per element.

  Returns:
    ``x`` with elements zeroed at rate ``rate'``, the rest scaled.
  """
  if bits not in _DROPOUT_BITS:
    raise ValueError(f'dropout bits: expected one of {_DROPOUT_BITS}, got {bits}')
  if not 0.0 <= rate < 1.0:
    raise ValueError(f'dropout rate: expected 0 <= rate < 1, got {rate}')
  levels = 1 << bits
  threshold = int(round(rate * levels))
  if threshold == 0:
    return x
  per_word = 32 // bits
  size = x.size
  # Two words of the key's own stream seed a threefry counter stream, drawn
  # by the fused CPU kernel where it is built (XLA's elementwise threefry
  # costs ~10 ns a word there) and by jnp elsewhere: the same words.
  from mammojax.models.gnn import fused  # pylint: disable=g-import-not-at-top
  seed = jax.random.bits(rng, (2,), jnp.uint32)
  words = fused.threefry_words(seed, -(-size // per_word))
  if bits < 32:
    words = jax.lax.bitcast_convert_type(
        words, jnp.uint8 if bits == 8 else jnp.uint16
    )
  draws = words.reshape(-1)[:size].reshape(x.shape)
  scale = jnp.asarray(levels / (levels - threshold), x.dtype)
  return jnp.where(draws >= threshold, x * scale, jnp.zeros((), x.dtype))
