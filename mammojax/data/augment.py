"""Mammogram augmentations of the luminal paper, as pure JAX functions.

Flip (p=0.5), AugMix (p=0.2), random histogram equalisation (p=0.4) and random
erasing (p=0.1), composed in that order by ``mammography_augment``.

Design (host numpy vs device JAX): these are JAX functions of an explicit PRNG
key on one image ``[H, W]`` (float32 in [0, 1], bright = dense; see
docs/architecture.md). They jit, ``jax.vmap`` over a batch of images and keys,
and can run inside the jitted train step on the accelerator, where the keys
follow the step (``fold_in(rng, step)``) so a resumed run draws the same
augmentations - the same key always gives the same output. The host-side
input pipeline then stays a plain numpy batcher. Under ``vmap`` the
conditional ops (``lax.cond``/``lax.switch``) evaluate every branch and select;
that is ~40 cheap per-pixel ops per image, small next to a CNN step. Use
``jax.lax.map`` instead of ``vmap`` to keep true branching.

uint8: torchvision's AugMix and ``equalize`` are defined on uint8 only, so
for those two the float (or 16-bit-derived) image is quantised explicitly with
``to_uint8`` (``round(clip(x, 0, 1) * 255)``) and mapped back with
``from_uint8`` (``/ 255``); the 8-bit precision loss happens only when one of
them fires. Flip and erasing act on the float image directly.

AugMix (Hendrycks et al., "AugMix: A Simple Data Processing Method to Improve
Robustness and Uncertainty", ICLR 2020) follows torchvision 0.29.1
``transforms.AugMix``, not the authors' reference code (google-research/augmix
on GitHub): 13 ops with ``all_ops=True`` (Color is
the identity on one-channel images, as in torchvision), magnitude =
``bins[randint(severity)]`` of 10 bins, signed ops negated w.p. 1/2, depth
``U{1, 2, 3}`` when ``chain_depth <= 0``, ``m ~ Dir(alpha, alpha)``, chain
weights ``w ~ Dir(alpha * width)``, ``mix = m0 x + sum_i (m1 w_i) chain_i(x)``
in float32 and truncated to uint8. Geometric ops use torchvision's tensor
affine grid (bilinear, zero fill, outputs rounded). ``sample_augmix_params``
and ``apply_augmix`` separate the draws from the arithmetic, which is what the
tests use to replay torchvision's own random draws. The random stream itself
differs from torch's, so outputs match in distribution, not draw by draw.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

Array = Any

_NUM_BINS = 10  # torchvision AugMix._PARAMETER_MAX
OP_NAMES = (
    'ShearX', 'ShearY', 'TranslateX', 'TranslateY', 'Rotate', 'Posterize',
    'Solarize', 'AutoContrast', 'Equalize', 'Brightness', 'Color', 'Contrast',
    'Sharpness',
)
_NUM_BASE_OPS = 9  # the first 9 ops; all_ops adds the 4 colour ops.
_SIGNED = np.array(
    [True] * 5 + [False] * 4 + [True] * 4, dtype=bool
)


# ----------------------------------------------------------------------------
# uint8 conversion.


def to_uint8(image: Array) -> Array:
  """Quantises a float image in [0, 1] to uint8 (``round(x * 255)``)."""
  return jnp.round(jnp.clip(image, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def from_uint8(image: Array) -> Array:
  """uint8 -> float32 in [0, 1]."""
  return image.astype(jnp.float32) / 255.0


def _f32(image: Array) -> Array:
  return image.astype(jnp.float32)


def _trunc_u8(x: Array) -> Array:
  """torch's ``clamp(0, 255).to(uint8)``: clip then truncate."""
  return jnp.floor(jnp.clip(x, 0.0, 255.0)).astype(jnp.uint8)


# ----------------------------------------------------------------------------
# torchvision ops on uint8 ``[H, W]`` images (magnitudes may be traced).


def posterize(image: Array, bits: Array) -> Array:
  """Keeps the top ``bits`` bits (``F.posterize``; 0 bits gives black)."""
  shift = 8 - jnp.asarray(bits, jnp.int32)
  mask = jnp.left_shift(jnp.int32(255), shift) & 255
  return image & mask.astype(jnp.uint8)


def solarize(image: Array, threshold: Array) -> Array:
  """Inverts pixels ``>= threshold`` (``F.solarize``)."""
  return jnp.where(_f32(image) >= threshold, 255 - image, image)


def autocontrast(image: Array) -> Array:
  """Stretches [min, max] to [0, 255] (``F.autocontrast``)."""
  x = _f32(image)
  lo, hi = x.min(), x.max()
  flat = hi == lo
  scale = jnp.where(flat, 1.0, 255.0 / jnp.where(flat, 1.0, hi - lo))
  lo = jnp.where(flat, 0.0, lo)
  return _trunc_u8((x - lo) * scale)


def equalize(image: Array) -> Array:
  """Histogram equalisation with torchvision's exact LUT (``F.equalize``).

  ``step = (N - hist[last nonzero bin]) // 255``; unchanged if ``step == 0``;
  ``lut = (cumsum(hist) + step // 2) // step`` shifted right by one bin.
  """
  flat = image.reshape(-1).astype(jnp.int32)
  hist = jnp.bincount(flat, length=256)
  step = (flat.size - hist[flat.max()]) // 255
  lut = (jnp.cumsum(hist) + step // 2) // jnp.maximum(step, 1)
  lut = jnp.clip(jnp.concatenate([jnp.zeros(1, lut.dtype), lut[:-1]]), 0, 255)
  out = lut[flat].reshape(image.shape).astype(jnp.uint8)
  return jnp.where(step == 0, image, out)


def _unfused(*products: Array) -> tuple[Array, ...]:
  """Rounds each product to float32 before it is summed.

  torch evaluates ``a * b + c * d`` as separately rounded kernels; XLA's CPU
  backend contracts it into fused multiply-adds, which changes values that
  are then truncated or rounded to uint8 (3% of pixels for Sharpness). A
  select between the multiply and the add blocks the contraction
  (``optimization_barrier`` does not: XLA removes it); it is the identity.
  """
  return tuple(jnp.where(jnp.isnan(p), jnp.nan, p) for p in products)


def _blend(image: Array, other: Array, ratio: Array) -> Array:
  """torchvision ``_blend``: ``ratio * a + (1 - ratio) * b``, clip, truncate."""
  a, b = _unfused(ratio * _f32(image), (1.0 - ratio) * other)
  return _trunc_u8(a + b)


def adjust_brightness(image: Array, factor: Array) -> Array:
  """``F.adjust_brightness`` (blend with black)."""
  return _blend(image, 0.0, factor)


def adjust_contrast(image: Array, factor: Array) -> Array:
  """``F.adjust_contrast`` (blend with the mean grey level)."""
  return _blend(image, _f32(image).mean(), factor)


def adjust_sharpness(image: Array, factor: Array) -> Array:
  """``F.adjust_sharpness``: blend with a 3x3 smoothed copy (borders kept)."""
  h, w = image.shape
  if h <= 2 or w <= 2:
    return image
  kernel = np.ones((3, 3), np.float32)
  kernel[1, 1] = 5.0
  kernel /= kernel.sum()
  x = _f32(image)
  smooth = jax.lax.conv_general_dilated(
      x[None, None], jnp.asarray(kernel)[None, None], (1, 1), 'VALID'
  )[0, 0]
  blurred = x.at[1:-1, 1:-1].set(jnp.round(smooth))
  return _blend(image, blurred, factor)


def adjust_color(image: Array, factor: Array) -> Array:
  """``F.adjust_saturation``: the identity on one-channel images."""
  del factor
  return image


def affine_grid_sample(image: Array, matrix: Array) -> Array:
  """torchvision's tensor affine (bilinear, zero fill, rounded to uint8).

  Args:
    image: uint8 ``[H, W]``.
    matrix: ``[6]`` inverse affine ``(a, b, c, d, e, f)`` mapping output to
      input pixel coordinates centred on the image centre (torchvision's
      ``_get_inverse_affine_matrix`` convention).

  Returns:
    uint8 ``[H, W]``.
  """
  h, w = image.shape
  matrix = jnp.asarray(matrix, jnp.float32)
  xs = jnp.linspace(-w * 0.5 + 0.5, w * 0.5 - 0.5, w, dtype=jnp.float32)
  ys = jnp.linspace(-h * 0.5 + 0.5, h * 0.5 - 0.5, h, dtype=jnp.float32)
  theta_x = matrix[:3] / (0.5 * w)
  theta_y = matrix[3:] / (0.5 * h)
  x0s, y0s, x1s, y1s = _unfused(
      xs[None, :] * theta_x[0], ys[:, None] * theta_x[1],
      xs[None, :] * theta_y[0], ys[:, None] * theta_y[1],
  )
  gx = x0s + y0s + theta_x[2]
  gy = x1s + y1s + theta_y[2]
  # grid_sample, align_corners=False.
  ix = ((gx + 1.0) * w - 1.0) / 2.0
  iy = ((gy + 1.0) * h - 1.0) / 2.0
  x0, y0 = jnp.floor(ix), jnp.floor(iy)
  x1, y1 = x0 + 1.0, y0 + 1.0
  src = _f32(image)

  def corner(yc, xc, weight):
    inside = (xc >= 0) & (xc <= w - 1) & (yc >= 0) & (yc <= h - 1)
    yi = jnp.clip(yc, 0, h - 1).astype(jnp.int32)
    xi = jnp.clip(xc, 0, w - 1).astype(jnp.int32)
    return jnp.where(inside, src[yi, xi], 0.0) * weight

  nw, ne, sw, se = _unfused(
      corner(y0, x0, (x1 - ix) * (y1 - iy)),
      corner(y0, x1, (ix - x0) * (y1 - iy)),
      corner(y1, x0, (x1 - ix) * (iy - y0)),
      corner(y1, x1, (ix - x0) * (iy - y0)),
  )
  out = nw + ne + sw + se
  return jnp.round(out).astype(jnp.uint8)


def shear_x(image: Array, shear: Array) -> Array:
  """AugMix ShearX: ``F.affine(shear=[deg(atan(s)), 0], center=[0, 0])``."""
  h, _ = image.shape
  z = jnp.zeros_like(shear)
  return affine_grid_sample(
      image, jnp.stack([z + 1, shear, shear * h * 0.5, z, z + 1, z])
  )


def shear_y(image: Array, shear: Array) -> Array:
  """AugMix ShearY: ``F.affine(shear=[0, deg(atan(s))], center=[0, 0])``."""
  _, w = image.shape
  z = jnp.zeros_like(shear)
  return affine_grid_sample(
      image, jnp.stack([z + 1, z, z, shear, z + 1, shear * w * 0.5])
  )


def translate(image: Array, dx: Array, dy: Array) -> Array:
  """``F.affine(translate=[int(dx), int(dy)])`` (whole pixels)."""
  dx, dy = jnp.trunc(dx), jnp.trunc(dy)
  one, z = jnp.ones_like(dx), jnp.zeros_like(dx)
  return affine_grid_sample(image, jnp.stack([one, z, -dx, z, one, -dy]))


def rotate(image: Array, degrees: Array) -> Array:
  """``F.rotate(angle=degrees)`` about the centre, counter-clockwise."""
  r = jnp.deg2rad(-jnp.asarray(degrees, jnp.float32))
  c, s, z = jnp.cos(r), jnp.sin(r), jnp.zeros_like(r)
  return affine_grid_sample(image, jnp.stack([c, s, z, -s, c, z]))


_BRANCHES = (
    shear_x,
    shear_y,
    lambda x, m: translate(x, m, jnp.zeros_like(m)),
    lambda x, m: translate(x, jnp.zeros_like(m), m),
    rotate,
    lambda x, m: posterize(x, m.astype(jnp.int32)),
    solarize,
    lambda x, m: autocontrast(x),
    lambda x, m: equalize(x),
    lambda x, m: adjust_brightness(x, 1.0 + m),
    lambda x, m: adjust_color(x, 1.0 + m),
    lambda x, m: adjust_contrast(x, 1.0 + m),
    lambda x, m: adjust_sharpness(x, 1.0 + m),
)


def _switch(image: Array, op: Array, magnitude: Array) -> Array:
  """``_BRANCHES[op]``, or the identity for ``op == len(_BRANCHES)``."""
  return jax.lax.switch(
      op, _BRANCHES + (lambda x, m: x,), image,
      jnp.asarray(magnitude, jnp.float32),
  )


def apply_op(image: Array, op: Array, magnitude: Array) -> Array:
  """Applies AugMix op ``OP_NAMES[op]`` with a signed ``magnitude``."""
  return _switch(image, jnp.clip(op, 0, len(_BRANCHES) - 1), magnitude)


def magnitude_bins(height: int, width: int) -> np.ndarray:
  """torchvision's ``_augmentation_space(10, (H, W))`` as ``[13, 10]``."""
  lin = lambda hi: np.linspace(0.0, hi, _NUM_BINS, dtype=np.float32)
  zeros = np.zeros(_NUM_BINS, np.float32)
  posterize_bits = 4 - np.round(np.arange(_NUM_BINS) / 2.25)
  return np.stack([
      lin(0.3), lin(0.3), lin(width / 3.0), lin(height / 3.0), lin(30.0),
      posterize_bits.astype(np.float32), lin(255.0)[::-1], zeros, zeros,
      lin(0.9), lin(0.9), lin(0.9), lin(0.9),
  ])


# ----------------------------------------------------------------------------
# AugMix.


class AugMixParams(NamedTuple):
  """One AugMix draw.

  Attributes:
    mix: ``[2]`` ``(m0, m1)`` ~ Dirichlet(alpha, alpha).
    weights: ``[width]`` chain weights ~ Dirichlet(alpha, ...).
    depths: ``[width]`` int ops per chain.
    ops: ``[width, max_depth]`` int op indices into ``OP_NAMES``.
    magnitudes: ``[width, max_depth]`` signed magnitudes.
  """

  mix: Array
  weights: Array
  depths: Array
  ops: Array
  magnitudes: Array


def _uniform_int(key: jax.Array, count: Array, shape=()) -> Array:
  """Uniform integers in ``[0, count)``, ``count >= 1`` (may be traced).

  ``floor(U * count)``: ``jax.random.randint`` compiles far more slowly on
  CPU, and the float granularity bias is irrelevant for counts < 2^16.
  """
  u = jax.random.uniform(key, shape, jnp.float32)
  return jnp.minimum(jnp.floor(u * count).astype(jnp.int32), count - 1)


def _dirichlet(key: jax.Array, alpha: float, size: int) -> Array:
  """Dirichlet(alpha * size); alpha = 1 as normalised exponentials.

  Same distribution as ``jax.random.dirichlet`` but without the gamma
  rejection sampler, which costs ~10 s of CPU compile time.
  """
  if alpha == 1.0:
    e = jax.random.exponential(key, (size,), jnp.float32)
    return e / e.sum()
  return jax.random.dirichlet(key, jnp.full((size,), alpha, jnp.float32))


def sample_augmix_params(
    key: jax.Array,
    image_shape: tuple[int, int],
    *,
    severity: int = 3,
    mixture_width: int = 3,
    chain_depth: int = -1,
    alpha: float = 1.0,
    all_ops: bool = True,
) -> AugMixParams:
  """Draws AugMix's random choices as torchvision does (see module doc)."""
  if not 1 <= severity <= _NUM_BINS:
    raise ValueError(f'severity must be in [1, {_NUM_BINS}], got {severity}')
  k_m, k_w, k_depth, k_op, k_bin, k_sign = jax.random.split(key, 6)
  num_ops = len(OP_NAMES) if all_ops else _NUM_BASE_OPS
  max_depth = chain_depth if chain_depth > 0 else 3
  shape = (mixture_width, max_depth)
  mix = _dirichlet(k_m, alpha, 2)
  weights = _dirichlet(k_w, alpha, mixture_width)
  if chain_depth > 0:
    depths = jnp.full((mixture_width,), chain_depth, jnp.int32)
  else:
    depths = 1 + _uniform_int(k_depth, 3, (mixture_width,))
  ops = _uniform_int(k_op, num_ops, shape)
  bins = _uniform_int(k_bin, severity, shape)
  flip = jax.random.bernoulli(k_sign, 0.5, shape) & jnp.asarray(_SIGNED)[ops]
  mags = jnp.asarray(magnitude_bins(*image_shape))[ops, bins]
  return AugMixParams(mix, weights, depths, ops, jnp.where(flip, -mags, mags))


def apply_augmix(image: Array, params: AugMixParams) -> Array:
  """Runs the chains of ``params`` on a uint8 ``[H, W]`` image and mixes.

  Returns:
    uint8 ``[H, W]``: ``trunc(m0 x + sum_i (m1 w_i) chain_i(x))``.
  """
  combined = params.weights * params.mix[1]
  skip = len(_BRANCHES)  # index of the identity branch below

  def chain(mix, chain_params):
    ops, magnitudes, depth, weight = chain_params

    def step(aug, op_params):
      d, op, magnitude = op_params
      op = jnp.where(d < depth, op, skip)
      return _switch(aug, op, magnitude), None

    steps = (jnp.arange(ops.shape[0]), ops, magnitudes)
    aug, _ = jax.lax.scan(step, image, steps)
    (weighted,) = _unfused(weight * _f32(aug))
    return mix + weighted, None

  # Scans (not Python loops) keep one copy of the 13 ops in the compiled code.
  mix, _ = jax.lax.scan(
      chain,
      params.mix[0] * _f32(image),
      (params.ops, params.magnitudes, params.depths, combined),
  )
  return _trunc_u8(mix)


def augmix(image: Array, key: jax.Array, **kwargs) -> Array:
  """AugMix on a float ``[H, W]`` image in [0, 1] (quantised to uint8).

  Args:
    image: float ``[H, W]``.
    key: PRNG key.
    **kwargs: ``severity``, ``mixture_width``, ``chain_depth``, ``alpha``,
      ``all_ops`` (torchvision defaults 3, 3, -1, 1.0, True).

  Returns:
    float32 ``[H, W]`` in [0, 1], on the 1/255 grid.
  """
  params = sample_augmix_params(key, image.shape, **kwargs)
  return from_uint8(apply_augmix(to_uint8(image), params))


# ----------------------------------------------------------------------------
# Flip, equalise, erasing and the composition.


def random_flip(image: Array, key: jax.Array, p: float = 0.5) -> Array:
  """Mirrors ``[H, W]`` left-right with probability ``p``."""
  return jnp.where(jax.random.bernoulli(key, p), image[:, ::-1], image)


def random_equalize(image: Array, key: jax.Array, p: float = 0.4) -> Array:
  """torchvision ``RandomEqualize`` on a float image (via uint8)."""
  return jax.lax.cond(
      jax.random.bernoulli(key, p),
      lambda x: from_uint8(equalize(to_uint8(x))).astype(x.dtype),
      lambda x: x,
      image,
  )


class ErasingBox(NamedTuple):
  """A rectangle ``[top:top+height, left:left+width]``; ``found`` if valid."""

  top: Array
  left: Array
  height: Array
  width: Array
  found: Array


def sample_erasing_box(
    key: jax.Array,
    image_shape: tuple[int, int],
    *,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    max_tries: int = 10,
) -> ErasingBox:
  """torchvision ``RandomErasing.get_params``: first of ``max_tries`` that fits.

  Each try: ``area = U(scale) H W``, ``aspect = exp(U(log ratio))``,
  ``h = round(sqrt(area aspect))``, ``w = round(sqrt(area / aspect))``,
  accepted if ``h < H and w < W``; the corner is uniform over valid positions.
  """
  img_h, img_w = image_shape
  k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
  area = img_h * img_w * jax.random.uniform(
      k_area, (max_tries,), minval=scale[0], maxval=scale[1]
  )
  log_ratio = np.log(np.asarray(ratio, np.float32))
  aspect = jnp.exp(
      jax.random.uniform(
          k_ratio, (max_tries,), minval=log_ratio[0], maxval=log_ratio[1]
      )
  )
  hs = jnp.round(jnp.sqrt(area * aspect)).astype(jnp.int32)
  ws = jnp.round(jnp.sqrt(area / aspect)).astype(jnp.int32)
  ok = (hs < img_h) & (ws < img_w)
  first = jnp.argmax(ok)
  found = ok.any()
  h = jnp.where(found, hs[first], 0)
  w = jnp.where(found, ws[first], 0)
  top = _uniform_int(k_top, img_h - h + 1)
  left = _uniform_int(k_left, img_w - w + 1)
  return ErasingBox(top, left, h, w, found)


def erase(image: Array, box: ErasingBox, value: float = 0.0) -> Array:
  """Sets the box (if ``found``) of ``[H, W]`` to ``value``."""
  rows = jnp.arange(image.shape[0])[:, None]
  cols = jnp.arange(image.shape[1])[None, :]
  inside = (
      (rows >= box.top) & (rows < box.top + box.height)
      & (cols >= box.left) & (cols < box.left + box.width) & box.found
  )
  return jnp.where(inside, jnp.asarray(value, image.dtype), image)


def random_erasing(
    image: Array,
    key: jax.Array,
    p: float = 0.5,
    *,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
    max_tries: int = 10,
) -> Array:
  """torchvision ``RandomErasing`` on ``[H, W]``; value 0 is background black.

  torchvision applies it after normalisation; on our [0, 1] images value 0 is
  the (black) background, i.e. the erased patch looks like non-breast.
  """
  k_apply, k_box = jax.random.split(key)
  box = sample_erasing_box(
      k_box, image.shape, scale=scale, ratio=ratio, max_tries=max_tries
  )
  box = box._replace(found=box.found & jax.random.bernoulli(k_apply, p))
  return erase(image, box, value)


def mammography_augment(
    image: Array,
    key: jax.Array,
    *,
    p_flip: float = 0.5,
    p_augmix: float = 0.2,
    p_equalize: float = 0.4,
    p_erase: float = 0.1,
    augmix_kwargs: dict[str, Any] | None = None,
) -> Array:
  """The luminal paper's training augmentation on one ``[H, W]`` image.

  Horizontal flip, AugMix, histogram equalisation and random erasing, each
  with its own probability, in that order.

  Args:
    image: float32 ``[H, W]`` in [0, 1]. Batch with
      ``jax.vmap(mammography_augment)(images, jax.random.split(key, b))``.
    key: PRNG key (same key, same output).
    p_flip: probability of the left-right flip.
    p_augmix: probability of AugMix (torchvision defaults, ``augmix_kwargs``).
    p_equalize: probability of histogram equalisation.
    p_erase: probability of random erasing.
    augmix_kwargs: overrides for ``sample_augmix_params``.

  Returns:
    float32 ``[H, W]`` in [0, 1].
  """
  k_flip, k_mix_on, k_mix, k_eq, k_erase = jax.random.split(key, 5)
  kwargs = augmix_kwargs or {}
  image = jnp.asarray(image, jnp.float32)
  image = random_flip(image, k_flip, p_flip)
  image = jax.lax.cond(
      jax.random.bernoulli(k_mix_on, p_augmix),
      lambda x: augmix(x, k_mix, **kwargs),
      lambda x: x,
      image,
  )
  image = random_equalize(image, k_eq, p_equalize)
  return random_erasing(image, k_erase, p_erase)
