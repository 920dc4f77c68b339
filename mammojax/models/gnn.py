"""Graph layers: segment softmax, softmax aggregation, GENConv, DeepGCN res+.

A port of PyG's ``GENConv``, ``SoftmaxAggregation``, ``MessageNorm`` and
``DeepGCNLayer`` (DeeperGCN, Li et al. 2020) with the same numerics in
float32, plus the ogbn_proteins-style stack used by MT-GCN (a bare first
conv, res+ blocks, then ``act(norm_0(x))`` and dropout).

Conventions (docs/architecture.md): ``senders`` = source j = PyG
``edge_index[0]``, ``receivers`` = target i = ``edge_index[1]``; messages are
aggregated at the receivers. Static sizes (``num_nodes``) come from array
shapes. Graph math is in pure functions; the linen modules only declare
parameters and call them.

Param trees (flax kernels are torch ``weight.T``):

* ``GENConv``: ``lin_src/lin_dst/lin_edge {kernel[, bias]}`` (only when the
  input / edge width differs from ``out_channels``), ``aggr_module {t: [1]}``
  (``learn_t``), ``msg_norm {scale: [1]}`` (``learn_msg_scale``),
  ``mlp {lin_0, norm_0, lin_1, ...}``; BatchNorm statistics live in
  ``batch_stats`` under the same paths.
* ``DeepGCNLayer``: ``conv {...}``, ``norm {scale, bias}``.
* ``DeepGCN``: ``node_encoder``, ``edge_encoder`` (optional),
  ``layer_0 {conv, norm}`` (its norm is only used by the head), and the
  res+ layers 1..L-1 either stacked on a leading axis under ``blocks``
  (``scan=True``) or as ``blocks_1 ... blocks_{L-1}`` (``scan=False``).

``params_from_torch_state_dict`` converts a PyG state_dict (as numpy arrays)
into these trees, so mammojax itself never imports torch.
"""

from __future__ import annotations

import functools
import re
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

# PyG's sparse softmax adds this to the denominator (torch_geometric/utils/
# _softmax.py); jraph's segment_softmax does not.
_SOFTMAX_DENOM_EPS = 1e-16
# F.normalize's default eps.
_NORMALIZE_EPS = 1e-12
# torch norm-layer defaults.
_TORCH_NORM_EPS = 1e-5
_TORCH_BN_MOMENTUM = 0.9  # torch momentum 0.1 == flax decay 0.9.

_AGGRS = ('softmax', 'softmax_sg', 'mean', 'sum', 'add', 'max')
_NORMS = ('batch', 'layer', 'instance', None)
_BLOCKS = ('res+', 'res', 'dense', 'plain')


# ----------------------------------------------------------------------------
# Pure functions.
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# Thin linen modules.
# ----------------------------------------------------------------------------


def _check_choice(field: str, value: Any, choices: tuple[Any, ...]) -> None:
  if value not in choices:
    raise ValueError(f'{field}: expected one of {choices}, got {value!r}')


def _norm_module(kind: str | None, name: str | None = None):
  """Norm module over node features ``[N, C]`` with torch's defaults.

  ``'batch'`` is BatchNorm1d (statistics over real nodes only, see
  ``_run_norm``); ``'layer'`` a per-node affine LayerNorm; ``'instance'`` is
  what torch's InstanceNorm1d(affine=False) does to a 2-D ``[N, C]`` input:
  it is taken as one unbatched sample, so each node is normalised over its
  channels without affine params. ``None`` gives no module.
  """
  if kind is None:
    return None
  if kind == 'batch':
    return nn.BatchNorm(
        momentum=_TORCH_BN_MOMENTUM,
        epsilon=_TORCH_NORM_EPS,
        use_fast_variance=False,
        name=name,
    )
  if kind == 'layer':
    return nn.LayerNorm(
        epsilon=_TORCH_NORM_EPS, use_fast_variance=False, name=name
    )
  if kind == 'instance':
    return nn.LayerNorm(
        epsilon=_TORCH_NORM_EPS,
        use_scale=False,
        use_bias=False,
        use_fast_variance=False,
        name=name,
    )
  raise ValueError(f'norm: expected one of {_NORMS}, got {kind!r}')


def _run_norm(
    module: nn.Module | None,
    h: Array,
    *,
    node_mask: Array | None,
    train: bool,
) -> Array:
  """Applies a ``_norm_module``; padding nodes never enter BatchNorm stats."""
  if module is None:
    return h
  if isinstance(module, nn.BatchNorm):
    mask = None if node_mask is None else node_mask.astype(bool)[:, None]
    return module(h, use_running_average=not train, mask=mask)
  return module(h)


def _apply_norm(
    kind: str | None,
    h: Array,
    *,
    name: str,
    node_mask: Array | None,
    train: bool,
) -> Array:
  """Creates and applies a norm (inside an ``@nn.compact`` method)."""
  return _run_norm(
      _norm_module(kind, name), h, node_mask=node_mask, train=train
  )


class SoftmaxAggregation(nn.Module):
  """PyG ``SoftmaxAggregation`` (``channels=1``); param ``t: [1]`` if learn."""

  t: float = 1.0
  learn: bool = False
  semi_grad: bool = False

  @nn.compact
  def __call__(
      self, messages: Array, receivers: Array, num_nodes: int
  ) -> Array:
    if self.learn and self.semi_grad:
      raise ValueError(
          "SoftmaxAggregation: 'semi_grad' cannot be used with a learnable t"
      )
    t = self.t
    if self.learn:
      t = self.param('t', nn.initializers.constant(self.t), (1,), jnp.float32)
    return softmax_aggregation(
        messages, receivers, num_nodes, t, semi_grad=self.semi_grad
    )


class MessageNorm(nn.Module):
  """PyG ``MessageNorm``; param ``scale: [1]`` only if ``learn_scale``."""

  learn_scale: bool = False
  scale_init: float = 1.0

  @nn.compact
  def __call__(self, x: Array, msg: Array) -> Array:
    scale = self.scale_init
    if self.learn_scale:
      scale = self.param(
          'scale', nn.initializers.constant(self.scale_init), (1,), jnp.float32
      )
    return message_norm(x, msg, scale)


class MLP(nn.Module):
  """GENConv's MLP: (Dense -> norm -> ReLU) x (L-1) -> Dense (no dropout).

  PyG adds ``Dropout(0.0)`` after each ReLU, a no-op left out here.
  """

  channels: tuple[int, ...]
  norm: str | None = 'batch'
  bias: bool = False

  @nn.compact
  def __call__(
      self, h: Array, *, node_mask: Array | None = None, train: bool = False
  ) -> Array:
    num = len(self.channels) - 1
    for i in range(num):
      h = nn.Dense(self.channels[i + 1], use_bias=self.bias, name=f'lin_{i}')(h)
      if i < num - 1:
        h = _apply_norm(
            self.norm, h, name=f'norm_{i}', node_mask=node_mask, train=train
        )
        h = nn.relu(h)
    return h


class GENConv(nn.Module):
  """PyG ``GENConv`` (DeeperGCN generalized aggregation conv).

  ``m_ji = relu(x_src[j] + lin_edge(e_ji)) + eps``, aggregated at i, optional
  MessageNorm against the raw ``x_i``, plus ``lin_dst(x_i)``, then an MLP
  with channels ``[C] + [C * expansion] * (num_layers - 1) + [C]``.
  ``lin_src``/``lin_dst`` exist when the input width differs from
  ``out_channels`` and ``lin_edge`` when the edge width does (PyG needs
  ``edge_dim`` for that; here it is read from ``edge_attr``).
  """

  out_channels: int
  aggr: str = 'softmax'
  t: float = 1.0
  learn_t: bool = False
  msg_norm: bool = False
  learn_msg_scale: bool = False
  norm: str | None = 'batch'
  num_layers: int = 2
  expansion: int = 2
  eps: float = 1e-7
  bias: bool = False  # PyG code default (its docstring says True).

  @nn.compact
  def __call__(
      self,
      x: Array,
      senders: Array,
      receivers: Array,
      edge_attr: Array | None = None,
      *,
      node_mask: Array | None = None,
      train: bool = False,
  ) -> Array:
    """Applies the conv.

    Args:
      x: ``[num_nodes, in_features]``.
      senders: ``[num_edges]`` source j of each edge.
      receivers: ``[num_edges]`` target i of each edge.
      edge_attr: optional ``[num_edges, edge_features]``.
      node_mask: optional ``[num_nodes]`` bool, True for real nodes; keeps
        padding out of BatchNorm statistics.
      train: batch statistics (and their update) for BatchNorm.

    Returns:
      ``[num_nodes, out_channels]``.
    """
    _check_choice('GENConv.aggr', self.aggr, _AGGRS)
    _check_choice('GENConv.norm', self.norm, _NORMS)
    if self.num_layers < 1:
      raise ValueError(
          f'GENConv.num_layers: expected >= 1, got {self.num_layers}'
      )
    c = self.out_channels
    num_nodes = x.shape[0]
    dense = lambda name: nn.Dense(c, use_bias=self.bias, name=name)

    x_src = dense('lin_src')(x) if x.shape[-1] != c else x
    msg = x_src[senders]
    if edge_attr is not None:
      if edge_attr.shape[-1] != c:
        edge_attr = dense('lin_edge')(edge_attr)
      msg = msg + edge_attr
    msg = nn.relu(msg) + self.eps

    if self.aggr in ('softmax', 'softmax_sg'):
      out = SoftmaxAggregation(
          t=self.t,
          learn=self.learn_t,
          semi_grad=self.aggr == 'softmax_sg',
          name='aggr_module',
      )(msg, receivers, num_nodes)
    else:
      out = aggregate(self.aggr, msg, receivers, num_nodes)

    if self.msg_norm:
      out = MessageNorm(learn_scale=self.learn_msg_scale, name='msg_norm')(
          x, out
      )

    out = out + (dense('lin_dst')(x) if x.shape[-1] != c else x)
    channels = (c,) + (c * self.expansion,) * (self.num_layers - 1) + (c,)
    return MLP(channels, norm=self.norm, bias=self.bias, name='mlp')(
        out, node_mask=node_mask, train=train
    )


def _block_forward(
    block: str,
    x: Array,
    conv_fn: Callable[[Array], Array],
    norm_fn: Callable[[Array], Array],
    act: Callable[[Array], Array] | None,
    dropout_fn: Callable[[Array], Array],
) -> Array:
  """PyG ``DeepGCNLayer.forward`` with the pieces passed as closures."""
  if block == 'res+':
    h = norm_fn(x)
    if act is not None:
      h = act(h)
    return x + conv_fn(dropout_fn(h))
  h = norm_fn(conv_fn(x))
  if act is not None:
    h = act(h)
  if block == 'res':
    h = x + h
  elif block == 'dense':
    h = jnp.concatenate([x, h], axis=-1)
  return dropout_fn(h)


class DeepGCNLayer(nn.Module):
  """PyG ``DeepGCNLayer``: res+ / res / dense / plain around a conv.

  ``conv`` is an unbound conv module (pass ``parent=None`` when creating it
  inside another module) called as ``conv(x, senders, receivers, edge_attr,
  node_mask=, train=)``; its params live under ``conv``. ``norm`` is a norm
  kind (see ``GENConv.norm``) with params under ``norm``. For res+ / res the
  conv's output width must equal its input width. PyG's ``ckpt_grad`` is
  ``nn.remat`` around this module (``DeepGCN(remat=True)`` does it).
  """

  conv: nn.Module
  norm: str | None = 'layer'
  act: Callable[[Array], Array] | None = nn.relu
  block: str = 'res+'
  dropout: float = 0.0

  @nn.compact
  def __call__(
      self,
      x: Array,
      senders: Array,
      receivers: Array,
      edge_attr: Array | None = None,
      *,
      node_mask: Array | None = None,
      train: bool = False,
  ) -> Array:
    """Applies the block; returns ``[N, C]`` (``[N, F + C]`` for dense).

    Dropout (rate ``dropout``) needs the ``'dropout'`` RNG when ``train``.
    """
    _check_choice('DeepGCNLayer.block', self.block, _BLOCKS)
    conv_fn = lambda h: self.conv(
        h, senders, receivers, edge_attr, node_mask=node_mask, train=train
    )
    norm_fn = lambda h: _apply_norm(
        self.norm, h, name='norm', node_mask=node_mask, train=train
    )
    drop = nn.Dropout(self.dropout, deterministic=not train)
    return _block_forward(self.block, x, conv_fn, norm_fn, self.act, drop)


class _ScanBlock(nn.Module):
  """One DeepGCN layer in ``nn.scan`` form: ``(x, None) -> (x, None)``.

  Params sit directly under ``conv`` / ``norm`` (no extra nesting), so a
  stacked tree is ``blocks {conv, norm}``.
  """

  conv_kwargs: tuple[tuple[str, Any], ...]
  norm: str | None
  act: Callable[[Array], Array] | None
  block: str
  dropout: float
  train: bool

  @nn.compact
  def __call__(self, x, _, senders, receivers, edge_attr, node_mask):
    conv = GENConv(**dict(self.conv_kwargs), name='conv')
    conv_fn = lambda h: conv(
        h, senders, receivers, edge_attr, node_mask=node_mask,
        train=self.train,
    )
    norm_fn = lambda h: _apply_norm(
        self.norm, h, name='norm', node_mask=node_mask, train=self.train
    )
    drop = nn.Dropout(self.dropout, deterministic=not self.train)
    return _block_forward(self.block, x, conv_fn, norm_fn, self.act, drop), None


class _LayerZero(nn.Module):
  """Layer 0 of the stack: a bare conv, and the norm that the head uses."""

  conv_kwargs: tuple[tuple[str, Any], ...]
  norm_kind: str | None

  def setup(self):
    self.conv = GENConv(**dict(self.conv_kwargs))
    self.norm = _norm_module(self.norm_kind)

  def __call__(self, x, senders, receivers, edge_attr, *, node_mask, train):
    return self.conv(
        x, senders, receivers, edge_attr, node_mask=node_mask, train=train
    )

  def head_norm(self, x, *, node_mask, train):
    return _run_norm(self.norm, x, node_mask=node_mask, train=train)


class DeepGCN(nn.Module):
  """The ogbn_proteins / MT-GCN GENConv stack.

  ``x -> node_encoder? -> conv_0 -> res+ layers 1..L-1 -> act(norm_0(x))
  -> dropout``. Defaults follow the MT-GCN authors' use (SPEC §0):
  ``GENConv(h, h, aggr='softmax', t=1.0, learn_t=True, num_layers=2,
  norm='layer')``, 8 layers, LayerNorm, ReLU, dropout 0.1. The res+ layers
  are identical, so they run under ``nn.scan`` (compile time independent of
  depth); ``scan=False`` unrolls them with the same math.
  """

  hidden: int = 128
  num_layers: int = 8
  dropout: float = 0.1
  block: str = 'res+'
  norm: str | None = 'layer'
  act: Callable[[Array], Array] | None = nn.relu
  # GENConv settings.
  aggr: str = 'softmax'
  t: float = 1.0
  learn_t: bool = True
  msg_norm: bool = False
  learn_msg_scale: bool = False
  conv_norm: str | None = 'layer'
  mlp_layers: int = 2
  expansion: int = 2
  conv_eps: float = 1e-7
  conv_bias: bool = False
  # Linear node / edge encoders to `hidden` (torch Linear has a bias).
  node_encoder: bool = False
  edge_encoder: bool = False
  encoder_bias: bool = True
  scan: bool = True
  remat: bool = False  # PyG ckpt_grad on the res+ layers.

  def _conv_kwargs(self) -> tuple[tuple[str, Any], ...]:
    return (
        ('out_channels', self.hidden),
        ('aggr', self.aggr),
        ('t', self.t),
        ('learn_t', self.learn_t),
        ('msg_norm', self.msg_norm),
        ('learn_msg_scale', self.learn_msg_scale),
        ('norm', self.conv_norm),
        ('num_layers', self.mlp_layers),
        ('expansion', self.expansion),
        ('eps', self.conv_eps),
        ('bias', self.conv_bias),
    )

  @nn.compact
  def __call__(
      self,
      x: Array,
      senders: Array,
      receivers: Array,
      edge_attr: Array | None = None,
      *,
      node_mask: Array | None = None,
      train: bool = False,
  ) -> Array:
    """Node embeddings ``[num_nodes, hidden]``.

    Args:
      x: ``[num_nodes, in_features]`` (``hidden`` wide without node_encoder).
      senders: ``[num_edges]`` sources j.
      receivers: ``[num_edges]`` targets i.
      edge_attr: optional ``[num_edges, edge_features]``.
      node_mask: optional ``[num_nodes]`` bool, True for real nodes.
      train: dropout on (needs the ``'dropout'`` RNG) and BatchNorm in
        training mode.
    """
    _check_choice('DeepGCN.block', self.block, ('res+', 'res', 'plain'))
    if self.num_layers < 1:
      raise ValueError(
          f'DeepGCN.num_layers: expected >= 1, got {self.num_layers}'
      )
    if self.node_encoder:
      x = nn.Dense(
          self.hidden, use_bias=self.encoder_bias, name='node_encoder'
      )(x)
    if edge_attr is not None and self.edge_encoder:
      edge_attr = nn.Dense(
          self.hidden, use_bias=self.encoder_bias, name='edge_encoder'
      )(edge_attr)
    if x.shape[-1] != self.hidden:
      raise ValueError(
          f'DeepGCN: node features have width {x.shape[-1]}, expected '
          f'hidden={self.hidden} (set node_encoder=True to project them)'
      )
    conv_kwargs = self._conv_kwargs()

    layer_0 = _LayerZero(conv_kwargs, self.norm, name='layer_0')
    x = layer_0(
        x, senders, receivers, edge_attr, node_mask=node_mask, train=train
    )

    block_kwargs = dict(
        conv_kwargs=conv_kwargs,
        norm=self.norm,
        act=self.act,
        block=self.block,
        dropout=self.dropout,
        train=train,
    )
    body = nn.remat(_ScanBlock) if self.remat else _ScanBlock
    num_blocks = self.num_layers - 1
    if num_blocks > 0 and self.scan:
      stack = nn.scan(
          body,
          variable_axes={'params': 0, 'batch_stats': 0},
          split_rngs={'params': True, 'dropout': True},
          in_axes=(nn.broadcast,) * 5,
          length=num_blocks,
      )
      x, _ = stack(**block_kwargs, name='blocks')(
          x, None, senders, receivers, edge_attr, node_mask
      )
    else:
      for i in range(1, self.num_layers):
        x, _ = body(**block_kwargs, name=f'blocks_{i}')(
            x, None, senders, receivers, edge_attr, node_mask
        )

    # ogbn_proteins head: act(layers[0].norm(x)) -> dropout.
    x = layer_0.head_norm(x, node_mask=node_mask, train=train)
    if self.act is not None:
      x = self.act(x)
    return nn.Dropout(self.dropout, deterministic=not train)(x)


# ----------------------------------------------------------------------------
# PyG state_dict -> flax variables.
# ----------------------------------------------------------------------------

_NORM_STATS = ('running_mean', 'running_var', 'num_batches_tracked')


def _put(tree: dict, path: tuple[str, ...], value: np.ndarray) -> None:
  for key in path[:-1]:
    tree = tree.setdefault(key, {})
  if path[-1] in tree:
    raise ValueError(f'duplicate parameter {"/".join(path)}')
  tree[path[-1]] = value


class _Converter:
  """Walks a flat PyG state_dict, recording which keys were consumed."""

  def __init__(self, state_dict: Mapping[str, Any]):
    self.sd = {k: np.array(v) for k, v in state_dict.items()}  # copies
    self.used: set[str] = set()
    self.params: dict = {}
    self.stats: dict = {}

  def take(self, key: str) -> np.ndarray:
    if key not in self.sd:
      raise KeyError(f'state_dict: missing key {key!r}')
    self.used.add(key)
    return self.sd[key]

  def has(self, key: str) -> bool:
    return key in self.sd

  def subkeys(self, prefix: str) -> list[str]:
    return [k for k in self.sd if k.startswith(prefix)]

  def linear(self, prefix: str, path: tuple[str, ...]) -> None:
    _put(self.params, path + ('kernel',), self.take(prefix + 'weight').T)
    if self.has(prefix + 'bias'):
      _put(self.params, path + ('bias',), self.take(prefix + 'bias'))

  def norm(self, prefix: str, path: tuple[str, ...]) -> None:
    """BatchNorm1d / LayerNorm affine params (+ running stats)."""
    if self.has(prefix + 'weight'):
      _put(self.params, path + ('scale',), self.take(prefix + 'weight'))
    if self.has(prefix + 'bias'):
      _put(self.params, path + ('bias',), self.take(prefix + 'bias'))
    if self.has(prefix + 'running_mean'):
      _put(self.stats, path + ('mean',), self.take(prefix + 'running_mean'))
      _put(self.stats, path + ('var',), self.take(prefix + 'running_var'))
      if self.has(prefix + 'num_batches_tracked'):
        self.take(prefix + 'num_batches_tracked')

  def gen_conv(
      self, prefix: str, path: tuple[str, ...], learn_msg_scale: bool
  ) -> None:
    for lin in ('lin_src', 'lin_edge', 'lin_dst'):
      if self.has(f'{prefix}{lin}.weight'):
        self.linear(f'{prefix}{lin}.', path + (lin,))
    if self.subkeys(prefix + 'lin_aggr_out.'):
      raise ValueError('GENConv with multi-aggregation is not supported')
    if self.has(prefix + 'aggr_module.t'):
      t = self.take(prefix + 'aggr_module.t')
      if t.shape != (1,):
        raise ValueError(
            f'{prefix}aggr_module.t: expected shape (1,), got {t.shape}'
        )
      _put(self.params, path + ('aggr_module', 't'), t)
    if self.has(prefix + 'msg_norm.scale'):
      scale = self.take(prefix + 'msg_norm.scale')
      if learn_msg_scale:
        _put(self.params, path + ('msg_norm', 'scale'), scale)
      elif not np.all(scale == 1.0):
        raise ValueError(
            f'{prefix}msg_norm.scale = {scale} with learn_msg_scale=False: '
            'a fixed scale other than 1 is not representable'
        )
    # MLP: Sequential indices; 2-D weights are Linears, the rest norms.
    indices = sorted({
        int(m.group(1))
        for k in self.subkeys(prefix + 'mlp.')
        if (m := re.match(re.escape(prefix) + r'mlp\.(\d+)\.', k))
    })
    n_lin = n_norm = 0
    for idx in indices:
      sub = f'{prefix}mlp.{idx}.'
      if self.has(sub + 'weight') and self.sd[sub + 'weight'].ndim == 2:
        self.linear(sub, path + ('mlp', f'lin_{n_lin}'))
        n_lin += 1
      else:
        self.norm(sub, path + ('mlp', f'norm_{n_norm}'))
        n_norm += 1

  def deepgcn_layer(
      self, prefix: str, path: tuple[str, ...], learn_msg_scale: bool
  ) -> None:
    self.gen_conv(prefix + 'conv.', path + ('conv',), learn_msg_scale)
    self.norm(prefix + 'norm.', path + ('norm',))

  def variables(self) -> dict:
    unused = sorted(set(self.sd) - self.used)
    if unused:
      raise ValueError(f'state_dict: keys not converted: {unused}')
    out = {'params': self.params}
    if self.stats:
      out['batch_stats'] = self.stats
    return out


def _stack_trees(trees: list[dict]) -> dict:
  return jax.tree.map(lambda *xs: np.stack(xs), *trees)


def params_from_torch_state_dict(
    state_dict: Mapping[str, Any],
    *,
    module: str = 'deepgcn',
    prefix: str = '',
    learn_msg_scale: bool = False,
    scan: bool = True,
) -> dict[str, dict]:
  """Converts a PyG state_dict (numpy arrays) into flax variables.

  Args:
    state_dict: ``{name: np.ndarray}``, e.g. ``{k: v.detach().numpy() for k, v
      in torch_module.state_dict().items()}``.
    module: what the state_dict holds: ``'gen_conv'`` (a ``GENConv``),
      ``'deepgcn_layer'`` (a ``DeepGCNLayer`` around a GENConv),
      ``'deepgcn'`` (the ogbn_proteins stack: ``node_encoder``,
      ``edge_encoder``, ``layers.{i}``; a final ``lin`` head is not part of
      ``DeepGCN`` and must be left out), ``'softmax_aggregation'`` or
      ``'message_norm'``.
    prefix: prefix of the keys to read (e.g. ``'gnn.'``); every key must
      start with it.
    learn_msg_scale: whether the target module learns the MessageNorm scale
      (PyG stores it either way).
    scan: for ``'deepgcn'``: stack layers 1..L-1 under ``blocks`` (``DeepGCN(
      scan=True)``) or name them ``blocks_{i}``.

  Returns:
    ``{'params': ..., 'batch_stats': ...}`` (``batch_stats`` only with
    BatchNorm) matching the module's param tree.

  Raises:
    ValueError / KeyError naming any key that is missing or not converted.
  """
  foreign = [k for k in state_dict if not k.startswith(prefix)]
  if foreign:
    raise ValueError(f'state_dict: keys without prefix {prefix!r}: {foreign}')
  conv = _Converter(state_dict)
  if module == 'gen_conv':
    conv.gen_conv(prefix, (), learn_msg_scale)
  elif module == 'deepgcn_layer':
    conv.deepgcn_layer(prefix, (), learn_msg_scale)
  elif module == 'softmax_aggregation':
    if conv.has(prefix + 't'):
      _put(conv.params, ('t',), conv.take(prefix + 't'))
  elif module == 'message_norm':
    if learn_msg_scale:
      _put(conv.params, ('scale',), conv.take(prefix + 'scale'))
    elif conv.has(prefix + 'scale'):
      if not np.all(conv.take(prefix + 'scale') == 1.0):
        raise ValueError('message_norm: fixed scale must be 1')
  elif module == 'deepgcn':
    for enc in ('node_encoder', 'edge_encoder'):
      if conv.has(f'{prefix}{enc}.weight'):
        conv.linear(f'{prefix}{enc}.', (enc,))
    layer_ids = sorted({
        int(m.group(1))
        for k in state_dict
        if (m := re.match(re.escape(prefix) + r'layers\.(\d+)\.', k))
    })
    if layer_ids != list(range(len(layer_ids))) or not layer_ids:
      raise ValueError(f'state_dict: expected layers.0..L-1, got {layer_ids}')
    conv.deepgcn_layer(f'{prefix}layers.0.', ('layer_0',), learn_msg_scale)
    if not scan:
      for i in layer_ids[1:]:
        conv.deepgcn_layer(
            f'{prefix}layers.{i}.', (f'blocks_{i}',), learn_msg_scale
        )
    elif len(layer_ids) > 1:
      per_layer = []
      for i in layer_ids[1:]:
        sub = _Converter({})
        sub.sd, sub.used = conv.sd, conv.used
        sub.deepgcn_layer(f'{prefix}layers.{i}.', (), learn_msg_scale)
        per_layer.append((sub.params, sub.stats))
      conv.params['blocks'] = _stack_trees([p for p, _ in per_layer])
      if per_layer[0][1]:
        conv.stats['blocks'] = _stack_trees([s for _, s in per_layer])
  else:
    raise ValueError(
        "module: expected 'gen_conv', 'deepgcn_layer', 'deepgcn', "
        f"'softmax_aggregation' or 'message_norm', got {module!r}"
    )
  return conv.variables()
