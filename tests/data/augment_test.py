"""Tests for mammojax.data.augment against definitions and torchvision."""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mammojax.data import augment as A

_H, _W = 40, 48


def _tv():
  pytest.importorskip('torchvision')
  import torch  # pylint: disable=g-import-not-at-top
  from torchvision.transforms import autoaugment  # pylint: disable=g-import-not-at-top
  from torchvision.transforms import functional as F  # pylint: disable=g-import-not-at-top
  from torchvision.transforms.v2 import functional as F2  # pylint: disable=g-import-not-at-top

  return torch, F, F2, autoaugment


def _images(n=4, seed=0):
  """uint8 test images: noise, a smooth ramp, few levels, a constant."""
  rng = np.random.RandomState(seed)
  out = [rng.randint(0, 256, (_H, _W)).astype(np.uint8)]
  ramp = np.add.outer(np.arange(_H) * 2, np.arange(_W) * 3) + 20
  out.append(np.clip(ramp + rng.randint(0, 8, (_H, _W)), 0, 255).astype(np.uint8))
  out.append(rng.choice([3, 90, 91, 200], (_H, _W)).astype(np.uint8))
  out.append(np.full((_H, _W), 77, np.uint8))
  return out[:n]


_jit_op = jax.jit(A.apply_op)


class TorchvisionOpsTest(parameterized.TestCase):

  def _torch_op(self, image, name, magnitude):
    torch, _, _, autoaugment = _tv()
    t = torch.from_numpy(image)[None]
    out = autoaugment._apply_op(
        t, name, magnitude, interpolation=autoaugment.InterpolationMode.BILINEAR,
        fill=None,
    )
    return out[0].numpy()

  def test_equalize_equals_torchvision_v2_exactly(self):
    torch, _, F2, _ = _tv()
    rng = np.random.RandomState(1)
    images = _images() + [
        np.clip(rng.normal(60, 10, (_H, _W)), 0, 255).astype(np.uint8),
        rng.randint(250, 256, (_H, _W)).astype(np.uint8),
    ]
    eq = jax.jit(A.equalize)
    for image in images:
      expected = F2.equalize(torch.from_numpy(image)[None])[0].numpy()
      np.testing.assert_array_equal(eq(image), expected)

  @parameterized.parameters(
      ('Posterize', [0.0, 1.0, 2.0, 3.0, 4.0]),
      ('Solarize', list(np.linspace(255.0, 0.0, 10, dtype=np.float32))),
      ('AutoContrast', [0.0]),
      ('Equalize', [0.0]),
      ('Color', [0.5]),
  )
  def test_exact_ops(self, name, magnitudes):
    op = A.OP_NAMES.index(name)
    for image in _images():
      for m in magnitudes:
        np.testing.assert_array_equal(
            _jit_op(image, op, m), self._torch_op(image, name, float(m)),
            err_msg=f'{name}({m})',
        )

  @parameterized.parameters(
      ('Brightness', [-0.9, -0.3, 0.2, 0.9]),
      ('Contrast', [-0.9, -0.3, 0.2, 0.9]),
      ('Sharpness', [-0.9, -0.3, 0.2, 0.9]),
      ('ShearX', [-0.3, -0.1, 0.0667, 0.3]),
      ('ShearY', [-0.3, 0.0667, 0.3]),
      ('TranslateX', [-16.0, 5.33, 15.9]),
      ('TranslateY', [-13.3, 4.44]),
      ('Rotate', [-30.0, -3.33, 6.67, 30.0]),
  )
  def test_float_ops_within_one_level(self, name, magnitudes):
    # torch's grid (an sgemm) and some blends round intermediate float32 sums
    # differently from XLA, flipping a few roundings / truncations by one.
    op = A.OP_NAMES.index(name)
    for image in _images(3):
      for m in magnitudes:
        m = np.float32(m)  # AugMix magnitudes come from float32 tables.
        got = np.asarray(_jit_op(image, op, m)).astype(int)
        want = self._torch_op(image, name, float(m)).astype(int)
        diff = np.abs(got - want)
        self.assertLessEqual(diff.max(), 1, f'{name}({m})')
        self.assertGreaterEqual((diff == 0).mean(), 0.95, f'{name}({m})')

  def test_magnitude_bins_match_torchvision(self):
    _, _, _, autoaugment = _tv()
    space = autoaugment.AugMix()._augmentation_space(10, (_H, _W))
    self.assertEqual(tuple(space), A.OP_NAMES)
    bins = A.magnitude_bins(_H, _W)
    for i, (mags, signed) in enumerate(space.values()):
      self.assertEqual(signed, bool(A._SIGNED[i]))
      if mags.ndim:
        np.testing.assert_allclose(bins[i], mags.numpy(), rtol=1e-6, atol=1e-5)


def _torch_augmix_draws(seed, shape, severity=3, width=3, alpha=1.0):
  """Replays torchvision AugMix's RNG calls for one image -> AugMixParams."""
  torch, _, _, autoaugment = _tv()
  aug = autoaugment.AugMix(severity=severity, mixture_width=width, alpha=alpha)
  space = aug._augmentation_space(10, shape)
  names = list(space)
  torch.manual_seed(seed)
  m = aug._sample_dirichlet(torch.tensor([[alpha, alpha]]))
  w = aug._sample_dirichlet(torch.tensor([[alpha] * width]))
  ops = np.full((width, 3), A.OP_NAMES.index('Color'), np.int32)
  mags = np.zeros((width, 3), np.float32)
  depths = np.zeros(width, np.int32)
  for i in range(width):
    depths[i] = int(torch.randint(low=1, high=4, size=(1,)).item())
    for d in range(depths[i]):
      ops[i, d] = int(torch.randint(len(names), (1,)).item())
      table, signed = space[names[ops[i, d]]]
      mag = 0.0
      if table.ndim > 0:
        mag = float(table[torch.randint(severity, (1,), dtype=torch.long)].item())
      if signed and torch.randint(2, (1,)):
        mag *= -1.0
      mags[i, d] = mag
  params = A.AugMixParams(m[0].numpy(), w[0].numpy(), depths, ops, mags)
  return aug, params


class AugMixTest(parameterized.TestCase):

  def test_replayed_torchvision_draws_give_torchvision_output(self):
    torch, _, _, _ = _tv()
    image = _images(2)[1]
    apply = jax.jit(A.apply_augmix)
    close = []
    for seed in range(6):
      aug, params = _torch_augmix_draws(seed, (_H, _W))
      torch.manual_seed(seed)
      want = aug(torch.from_numpy(image)[None])[0].numpy().astype(int)
      got = np.asarray(apply(image, params)).astype(int)
      close.append((np.abs(got - want) <= 1).mean())
    self.assertGreaterEqual(min(close), 0.98)

  def test_mixing_arithmetic_matches_torch(self):
    torch, F, _, _ = _tv()
    image = _images(2)[1]
    ops = np.full((3, 3), A.OP_NAMES.index('Color'), np.int32)
    ops[:, 0] = [A.OP_NAMES.index(n) for n in ('Posterize', 'Solarize', 'Equalize')]
    mags = np.zeros((3, 3), np.float32)
    mags[:, 0] = [2.0, 100.0, 0.0]
    params = A.AugMixParams(
        np.float32([0.37, 0.63]), np.float32([0.2, 0.5, 0.3]),
        np.int32([1, 1, 1]), ops, mags,
    )
    t = torch.from_numpy(image)[None]
    chains = [F.posterize(t, 2), F.solarize(t, 100.0), F.equalize(t)]
    m = torch.tensor(params.mix)
    cw = torch.tensor(params.weights) * m[1]
    mix = m[0] * t
    for i, c in enumerate(chains):
      mix.add_(cw[i] * c)
    want = mix.to(torch.uint8)[0].numpy()
    np.testing.assert_array_equal(jax.jit(A.apply_augmix)(image, params), want)

  def test_identity_when_m0_is_one(self):
    image = _images(1)[0]
    def run(key):
      params = A.sample_augmix_params(key, image.shape)
      return A.apply_augmix(image, params._replace(mix=jnp.array([1.0, 0.0])))

    np.testing.assert_array_equal(jax.jit(run)(jax.random.key(0)), image)

  def test_float_wrapper_range_dtype_and_determinism(self):
    image = jnp.asarray(_images(2)[1], jnp.float32) / 255.0
    run = jax.jit(A.augmix)
    a = run(image, jax.random.key(3))
    b = run(image, jax.random.key(3))
    c = run(image, jax.random.key(4))
    self.assertEqual(a.dtype, jnp.float32)
    self.assertEqual(a.shape, image.shape)
    np.testing.assert_array_equal(a, b)
    self.assertFalse(np.array_equal(a, c))
    self.assertBetween(float(a.min()), 0.0, 1.0)
    self.assertBetween(float(a.max()), 0.0, 1.0)
    np.testing.assert_allclose(a * 255, np.round(a * 255), atol=1e-3)

  def test_sampled_params_follow_torchvision_space(self):
    keys = jax.random.split(jax.random.key(0), 64)
    p = jax.jit(jax.vmap(lambda k: A.sample_augmix_params(k, (_H, _W))))(keys)
    self.assertTrue(np.all((p.depths >= 1) & (p.depths <= 3)))
    self.assertTrue(np.all((p.ops >= 0) & (p.ops < 13)))
    np.testing.assert_allclose(p.mix.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(p.weights.sum(-1), 1.0, rtol=1e-5)
    bins = np.abs(A.magnitude_bins(_H, _W)[:, :3])  # severity 3
    for op, mag in zip(np.ravel(p.ops), np.ravel(p.magnitudes)):
      self.assertIn(np.float32(abs(mag)), bins[op])
    rotations = np.ravel(p.magnitudes)[np.ravel(p.ops) == 4]
    self.assertTrue((rotations < 0).any() and (rotations > 0).any())


class ErasingFlipEqualizeTest(parameterized.TestCase):

  def test_erasing_box_geometry(self):
    keys = jax.random.split(jax.random.key(0), 300)
    boxes = jax.jit(jax.vmap(lambda k: A.sample_erasing_box(k, (_H, _W))))(
        keys
    )
    top, left, h, w, found = (np.asarray(v) for v in boxes)
    self.assertGreater(found.mean(), 0.9)
    top, left, h, w = top[found], left[found], h[found], w[found]
    self.assertTrue(np.all((h < _H) & (w < _W) & (h >= 1) & (w >= 1)))
    self.assertTrue(np.all((top >= 0) & (top + h <= _H)))
    self.assertTrue(np.all((left >= 0) & (left + w <= _W)))
    # Rounding h and w moves the area by at most (h + w) / 2 + 1/4.
    slack = (h + w) / 2 + 0.25
    area = h * w
    self.assertTrue(np.all(area >= 0.02 * _H * _W - slack))
    self.assertTrue(np.all(area <= 0.33 * _H * _W + slack))
    aspect = h / w
    self.assertTrue(np.all(aspect >= 0.3 * (1 - 1 / w) / (1 + 1 / h) - 1e-6))
    self.assertTrue(np.all(aspect <= 3.3 * (1 + 1 / w) / (1 - 1 / h) + 1e-6))
    self.assertGreater(len(set(top.tolist())), 10)

  def test_erasing_fills_exactly_the_box(self):
    image = jnp.full((_H, _W), 0.5)
    key = jax.random.key(7)

    @jax.jit
    def run(p):
      box = A.sample_erasing_box(jax.random.split(key)[1], image.shape)
      return A.random_erasing(image, key, p), box

    out, box = run(1.0)
    expected = np.full((_H, _W), 0.5, np.float32)
    t, l, h, w = (int(v) for v in box[:4])
    expected[t:t + h, l:l + w] = 0.0
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(run(0.0)[0], image)

  def test_erasing_gives_up_when_nothing_fits(self):
    image = jnp.full((8, 8), 0.5)
    for seed in range(5):
      out = A.random_erasing(image, jax.random.key(seed), 1.0, scale=(0.9, 1.0))
      np.testing.assert_array_equal(out, image)

  def test_flip_and_equalize_probabilities(self):
    image = jnp.asarray(_images(2)[1], jnp.float32) / 255.0
    key = jax.random.key(0)
    np.testing.assert_array_equal(A.random_flip(image, key, 1.0), image[:, ::-1])
    np.testing.assert_array_equal(A.random_flip(image, key, 0.0), image)
    np.testing.assert_array_equal(
        A.random_equalize(image, key, 1.0),
        A.from_uint8(A.equalize(A.to_uint8(image))),
    )
    np.testing.assert_array_equal(A.random_equalize(image, key, 0.0), image)

  def test_mammography_augment(self):
    images = jnp.asarray(np.stack(_images(3)), jnp.float32) / 255.0
    keys = jax.random.split(jax.random.key(0), 3)

    @jax.jit
    def run(image, key, p):
      return A.mammography_augment(
          image, key, p_flip=p[0], p_augmix=p[1], p_equalize=p[2],
          p_erase=p[3],
      )

    on = jnp.ones(4)
    a = [run(x, k, on) for x, k in zip(images, keys)]
    np.testing.assert_array_equal(a[0], run(images[0], keys[0], on))
    self.assertFalse(np.array_equal(a[1], run(images[1], keys[0], on)))
    for out in a:
      self.assertEqual(out.shape, images.shape[1:])
      self.assertEqual(out.dtype, jnp.float32)
      self.assertTrue(np.all((out >= 0) & (out <= 1)))
    np.testing.assert_array_equal(run(images[1], keys[1], 0 * on), images[1])
    flip_only = jnp.array([1.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(
        run(images[1], keys[1], flip_only), images[1][:, ::-1]
    )


if __name__ == '__main__':
  absltest.main()
