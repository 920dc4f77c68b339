"""Layers shared by the torchvision-layout CNNs (conv, batch norm, feature taps).

Every CNN in this package names its Flax submodules so that the torchvision
``state_dict`` key is recovered by replacing ``_`` with ``.`` in each module
name (``layer1_0/downsample_0/kernel`` <-> ``layer1.0.downsample.0.weight``);
``convert.py`` relies on that rule and on torchvision module names never
containing an underscore.
"""

import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = Any

# torch BatchNorm2d defaults: running stats decay 0.9 (torch momentum=0.1).
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _window_view(xp: Array, i: int, j: int, out_hw, strides) -> Array:
  """The ``[b, ho, wo, c]`` view of padded NHWC ``xp`` that window offset
  ``(i, j)`` reads at strides ``(sh, sw)`` (one tap of a conv or pool)."""
  (ho, wo), (sh, sw) = out_hw, strides
  b, _, _, c = xp.shape
  return jax.lax.slice(
      xp, (0, i, j, 0), (b, i + (ho - 1) * sh + 1, j + (wo - 1) * sw + 1, c),
      (1, sh, sw, 1))


def _is_nhwc(dimension_numbers) -> bool:
  want = jax.lax.conv_dimension_numbers((1,) * 4, (1,) * 4, _NHWC)
  if dimension_numbers is None:
    return False
  if isinstance(dimension_numbers, jax.lax.ConvDimensionNumbers):
    return dimension_numbers == want
  return tuple(dimension_numbers) == _NHWC


def conv_general_dilated(
    lhs: Array,
    rhs: Array,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    precision=None,
    **kwargs,
) -> Array:
  """``lax.conv_general_dilated``; as patches times kernel where the output
  is smaller than the kernel.

  A drop-in for ``nn.Conv(conv_general_dilated=...)``. Where an NHWC / HWIO
  convolution (no dilation, any stride, padding and feature groups) has an
  output height below the kernel's height or an output width below its
  width, e.g. a 3 x 3 convolution over a 2 x 2 or 1 x N map (a ResNet's
  last stages on 32 x 32 patches), it is computed as the kernel taps'
  strided views of the padded input, stacked into ``[b, ho, wo, taps *
  C_in]`` patches, times the kernel reshaped to ``[taps * C_in / G,
  C_out]`` (one ``dot_general``, the G groups as its batch dimension);
  taps that read only padding are left out. The values
  are the convolution's (to float rounding) and the gradients are those of
  a slice, a concatenation and a dot. XLA's CPU compiler swaps the
  operands of such convolutions' input gradient and runs them in a slow
  generic loop: a ResNet-18 train step on 128 x 32 x 32 took 0.89 s with
  ``lax`` alone and 0.23 s this way (docs/performance.md, "Small feature
  maps"). Every other
  convolution goes to ``lax.conv_general_dilated`` unchanged.
  """
  kh, kw, cg, co = rhs.shape if rhs.ndim == 4 else (0, 0, 0, 0)
  plain = (
      lhs.ndim == 4 and rhs.ndim == 4 and not kwargs
      and _is_nhwc(dimension_numbers)
      and all(d == 1 for d in (lhs_dilation or (1, 1)))
      and all(d == 1 for d in (rhs_dilation or (1, 1)))
  )
  if plain:
    b, h, w, c = lhs.shape
    sh, sw = window_strides
    pads = (jax.lax.padtype_to_pads((h, w), (kh, kw), window_strides, padding)
            if isinstance(padding, str) else tuple(tuple(q) for q in padding))
    (pt, pb), (pl, pr) = pads
    ho = (h + pt + pb - kh) // sh + 1
    wo = (w + pl + pr - kw) // sw + 1
    plain = min(pt, pb, pl, pr) >= 0 and ho > 0 and wo > 0 and (
        ho < kh or wo < kw)
  if not plain:
    return jax.lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count, precision=precision,
        **kwargs)

  def reads_input(offset, stride, n_out, pad_lo, size):
    return any(pad_lo <= offset + r * stride < pad_lo + size
               for r in range(n_out))

  xp = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
  views, taps = [], []
  for i in range(kh):
    if not reads_input(i, sh, ho, pt, h):
      continue
    for j in range(kw):
      if not reads_input(j, sw, wo, pl, w):
        continue
      views.append(_window_view(xp, i, j, (ho, wo), (sh, sw)))
      taps.append(rhs[i, j])
  g = feature_group_count
  t = len(views)
  # patches [b, ho, wo, t, G, C/G]; kernel [t, C/G, G, C_out/G].
  patches = jnp.stack(views, axis=3).reshape(b, ho, wo, t, g, cg)
  kernel = jnp.stack(taps).reshape(t, cg, g, co // g)
  if g == 1:
    return jax.lax.dot_general(
        patches.reshape(b, ho, wo, t * cg), kernel.reshape(t * cg, co),
        (((3,), (0,)), ((), ())), precision=precision)
  out = jax.lax.dot_general(
      patches, kernel, (((3, 5), (0, 1)), ((4,), (2,))),
      precision=precision)  # [G, b, ho, wo, C_out/G]
  return jnp.moveaxis(out, 0, 3).reshape(b, ho, wo, co)


def conv(
    features: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int = 0,
    groups: int = 1,
    name: str,
    use_bias: bool = False,
) -> nn.Conv:
  """A ``torch.nn.Conv2d`` look-alike: square kernel, symmetric zero padding.

  Convolutions whose output is smaller than the kernel run through
  ``conv_general_dilated`` (patches times kernel); the parameters are
  ``nn.Conv``'s.
  """
  return nn.Conv(
      features,
      (kernel, kernel),
      strides=(stride, stride),
      padding=((padding, padding), (padding, padding)),
      feature_group_count=groups,
      use_bias=use_bias,
      kernel_init=nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
      conv_general_dilated=conv_general_dilated,
      name=name,
  )


def batch_norm(*, train: bool, name: str) -> nn.BatchNorm:
  """A ``torch.nn.BatchNorm2d`` look-alike (momentum 0.9, eps 1e-5)."""
  return nn.BatchNorm(
      use_running_average=not train,
      momentum=BN_MOMENTUM,
      epsilon=BN_EPSILON,
      name=name,
  )


def _pool_windows(x: Array, k: int, s: int, p: int):
  """The ``k * k`` strided views of ``x`` (NHWC, padded by ``p`` with -inf)
  whose elementwise max is the ``k x k`` / stride ``s`` max pool."""
  _, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-jnp.inf)
  ho, wo = (h + 2 * p - k) // s + 1, (w + 2 * p - k) // s + 1
  views = [_window_view(xp, i, j, (ho, wo), (s, s))
           for i in range(k) for j in range(k)]
  return views, (ho, wo)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: Array, k: int = 3, s: int = 2, p: int = 1) -> Array:
  """``k x k`` / stride ``s`` / padding ``p`` max pool (NHWC, -inf padding).

  The same values and gradient as ``nn.max_pool`` (``lax.reduce_window``:
  the gradient goes to the first maximum of each window in row-major
  order), computed as the max of ``k * k`` strided views and, backwards,
  ``k * k`` masked, interior-padded adds. XLA's CPU backend expands
  ``reduce_window`` and its ``select_and_scatter`` gradient into slow
  generic loops: in a ResNet-18 train step (16 x 128 x 80) the stem's one
  pool took ~60 ms of ~580 ms of op time (docs/performance.md).
  """
  views, _ = _pool_windows(x, k, s, p)
  return functools.reduce(jnp.maximum, views)


def _max_pool_fwd(x, k, s, p):
  out = max_pool(x, k, s, p)
  return out, (x, out)


def _max_pool_bwd(k, s, p, res, g):
  x, out = res
  views, (ho, wo) = _pool_windows(x, k, s, p)
  b, h, w, c = x.shape
  hp, wp = h + 2 * p, w + 2 * p
  taken = jnp.zeros(out.shape, bool)
  dxp = jnp.zeros((b, hp, wp, c), g.dtype)
  zero = jnp.zeros((), g.dtype)
  for idx, view in enumerate(views):
    i, j = divmod(idx, k)
    first = (view == out) & ~taken
    taken = taken | first
    contrib = jnp.where(first, g, zero)
    # Window offset (i, j) of output (r, q) is padded input (i + s r, j + s q).
    dxp = dxp + jax.lax.pad(contrib, zero, (
        (0, 0, 0),
        (i, hp - i - (ho - 1) * s - 1, s - 1),
        (j, wp - j - (wo - 1) * s - 1, s - 1),
        (0, 0, 0)))
  return (dxp[:, p:p + h, p:p + w, :],)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_3x3_s2(x: Array) -> Array:
  """``nn.MaxPool2d(3, 2, padding=1)`` (padding is -inf, as in torch)."""
  return max_pool(x, 3, 2, 1)


def tap(
    name: str,
    x: Array,
    features: dict[str, Array],
    feature_offsets: Mapping[str, Array] | None,
) -> Array:
  """Records ``x`` as feature ``name`` and adds an optional offset to it.

  The offset is zero in practice; differentiating the logits with respect to
  it gives d logits / d feature, which is how Grad-CAM reaches any tapped
  layer without splitting the model in two.

  Args:
    name: feature name (e.g. ``'layer4'``).
    x: the activation, ``[batch, height, width, channels]``.
    features: dict the activation is stored into (after the offset).
    feature_offsets: optional ``{name: array like x}``.

  Returns:
    ``x`` plus the offset if one is given for ``name``.
  """
  if feature_offsets is not None and name in feature_offsets:
    x = x + feature_offsets[name]
  features[name] = x
  return x



def feature_taps(
    feature_offsets: Mapping[str, Array] | None,
) -> tuple[dict[str, Array], Any]:
  """``(features, tap)``: an empty feature dict and ``tap`` bound to it."""
  features: dict[str, Array] = {}
  return features, functools.partial(
      tap, features=features, feature_offsets=feature_offsets
  )


def classifier_head(
    x: Array,
    *,
    tap_fn: Any,
    num_classes: int,
    dropout: float,
    train: bool,
    name: str,
) -> Array:
  """Global average pool (tapped as ``'pooled'``) -> dropout -> ``Dense``.

  Called inside a backbone's ``nn.compact`` ``__call__``: the ``Dense`` is
  that backbone's submodule ``name`` (torchvision's ``fc`` / ``classifier``).
  """
  x = tap_fn('pooled', jnp.mean(x, axis=(1, 2)))
  x = nn.Dropout(dropout, deterministic=not train)(x)
  return nn.Dense(num_classes, name=name)(x)


def standardize_per_image(x: Array, eps: float = 1e-3) -> Array:
  """``(x - mean) / (std + eps)`` over each image's ``H, W, C``.

  Removes each crop's own brightness and contrast (the mass methods' ROIs
  vary widely in both); ``eps`` keeps a flat crop finite.
  """
  mean = jnp.mean(x, axis=(1, 2, 3), keepdims=True)
  std = jnp.std(x, axis=(1, 2, 3), keepdims=True)
  return (x - mean) / (std + eps)
