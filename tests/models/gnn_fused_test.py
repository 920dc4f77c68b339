"""The fused GENConv CPU kernel (gnn.fused) against the jnp path.

The kernel is C++ (``mammojax/models/gnn/kernels/genconv_cpu.cc``) compiled
on its first use with the system C++ compiler (g++ on the CI machine)
against jaxlib's FFI headers (``jax.ffi.include_dir()``), cached under
``$MAMMOJAX_KERNEL_DIR``; these tests build it into a temporary directory,
so they also check the build. PyG parity of GENConv on both paths is in
``gnn_test.PyGParityTest.test_gen_conv``.
"""

import os
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import jax
import jax.numpy as jnp
import numpy as np

from mammojax.models import gnn
from mammojax.models.gnn import fused
from mammojax.models.gnn import ops

_ENV = ('MAMMOJAX_GENCONV_KERNEL', 'MAMMOJAX_KERNEL_DIR')


def setUpModule():
  global _SAVED, _TMP
  _SAVED = {k: os.environ.get(k) for k in _ENV}
  _TMP = tempfile.TemporaryDirectory()
  os.environ['MAMMOJAX_KERNEL_DIR'] = _TMP.name
  os.environ['MAMMOJAX_GENCONV_KERNEL'] = '1'  # A failed build is an error.
  fused._state.clear()


def tearDownModule():
  for k, v in _SAVED.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  fused._state.clear()
  _TMP.cleanup()


def _graph(rng, n=9, c=16):
  """Unsorted receivers, duplicates, a self-loop, an isolated node (7), a
  node that only sends (8), padding self-loops on node 6, large values."""
  s = np.array([0, 0, 1, 2, 3, 4, 0, 8, 2, 4, 5, 1, 6, 6], np.int32)
  r = np.array([1, 1, 2, 1, 3, 0, 4, 2, 0, 3, 5, 5, 6, 6], np.int32)
  x = (rng.normal(size=(n, c)) * 4).astype(np.float32)
  emb = (rng.normal(size=(len(s), c)) * 4).astype(np.float32)
  g = rng.normal(size=(n, c)).astype(np.float32)
  return x, emb, s, r, g


def _reference(x, emb, s, r, n, t, semi_grad, eps=1e-7):
  m = jax.nn.relu(x[s] + emb) + eps
  return ops.softmax_aggregation(m, r, n, t, semi_grad=semi_grad)


def _close(a, b, what, rtol=1e-5):
  a, b = np.asarray(a), np.asarray(b)
  scale = max(1.0, float(np.max(np.abs(b), initial=0.0)))
  np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-6 * scale,
                             err_msg=what)


class FusedKernelTest(parameterized.TestCase):

  def test_builds_and_loads(self):
    self.assertTrue(fused.kernel_available())
    self.assertTrue(fused.use_kernel(jnp.zeros((2, 2), jnp.float32)))
    self.assertFalse(fused.use_kernel(jnp.zeros((2, 2), jnp.bfloat16)))
    libs = os.listdir(os.environ['MAMMOJAX_KERNEL_DIR'])
    self.assertLen([f for f in libs if f.endswith('.so')], 1)

  @parameterized.named_parameters(
      dict(testcase_name='t_param', t='param', semi_grad=False),
      dict(testcase_name='t_channels', t='channels', semi_grad=False),
      dict(testcase_name='t_negative', t='negative', semi_grad=False),
      dict(testcase_name='t_one_float', t=1.0, semi_grad=False),
      dict(testcase_name='semi_grad_t_float', t=0.5, semi_grad=True),
      dict(testcase_name='no_edge_emb', t='param', semi_grad=False),
  )
  def test_matches_jnp(self, t, semi_grad):
    rng = np.random.default_rng(3)
    x, emb, s, r, g = _graph(rng)
    n, c = x.shape
    no_emb = self._testMethodName.endswith('no_edge_emb')
    t_value = {
        'param': np.array([1.3], np.float32),
        'channels': rng.uniform(0.5, 2.0, c).astype(np.float32),
        'negative': np.array([-0.7], np.float32),
    }.get(t, t)

    def run(fn):
      def loss(x, emb, tt):
        out = fn(x, None if no_emb else emb, s, r, n, tt, semi_grad)
        return jnp.sum(out * g), out
      argnums = (0, 1) if isinstance(t_value, float) else (0, 1, 2)
      (_, out), grads = jax.jit(jax.value_and_grad(
          loss, argnums=argnums, has_aux=True))(x, emb, t_value)
      return (out,) + tuple(grads)

    kernel = run(lambda x, e, s, r, n, t, sg: fused.genconv_message_softmax(
        x, e, s, r, n, t, semi_grad=sg))
    ref = run(lambda x, e, s, r, n, t, sg: _reference(
        x, jnp.zeros_like(emb) if e is None else e, s, r, n, t, sg))
    for a, b, what in zip(kernel, ref, ('out', 'dx', 'demb', 'dt')):
      self.assertEqual(np.shape(a), np.shape(b), what)
      if no_emb and what == 'demb':
        np.testing.assert_array_equal(a, 0.0)
        continue
      _close(a, b, what, rtol=1e-4 if what == 'dt' else 1e-5)
    np.testing.assert_array_equal(kernel[0][7], 0.0)  # Isolated node.
    self.assertTrue(np.all(np.isfinite(kernel[0])))

  @parameterized.named_parameters(
      dict(testcase_name='raw_grad', raw_grad=True, semi_grad=False, k=2),
      dict(testcase_name='no_raw_grad', raw_grad=False, semi_grad=False, k=3),
      dict(testcase_name='semi_grad', raw_grad=True, semi_grad=True, k=1),
      # 16 channels over 2 threads: thread 1's d_raw partial is added.
      dict(testcase_name='raw_grad_2_threads', raw_grad=True,
           semi_grad=False, k=2, threads=2),
  )
  def test_affine_edges_match_jnp(self, raw_grad, semi_grad, k, threads=1):
    """AffineEdges: raw @ kernel + bias formed in the kernel, never stored."""
    self.enter_context(mock.patch.dict(
        os.environ, {'MAMMOJAX_GENCONV_KERNEL_THREADS': str(threads)}))
    rng = np.random.default_rng(6)
    x, _, s, r, g = _graph(rng)
    n, c = x.shape
    raw = rng.normal(size=(len(s), k)).astype(np.float32)
    kern = (rng.normal(size=(k, c)) * 2).astype(np.float32)
    bias = rng.normal(size=(c,)).astype(np.float32)
    t = np.array([1.2], np.float32)

    def run(fn):
      def loss(x, raw, kern, bias, tt):
        edges = ops.AffineEdges(raw, kern, bias)
        out = fn(x, edges, s, r, n, tt, semi_grad=semi_grad)
        return jnp.sum(out * g), out
      argnums = (0, 1, 2, 3, 4) if raw_grad else (0, 2, 3, 4)
      (_, out), grads = jax.jit(jax.value_and_grad(
          loss, argnums=argnums, has_aux=True))(x, raw, kern, bias, t)
      return (out,) + tuple(grads)

    def reference(x, edges, s, r, n, t, semi_grad):
      return _reference(x, edges.materialize(), s, r, n, t, semi_grad)

    kernel = run(fused.genconv_message_softmax)
    ref = run(reference)
    names = ('out', 'dx') + (('draw',) if raw_grad else ()) + (
        'dkernel', 'dbias', 'dt')
    self.assertLen(kernel, len(names))
    for a, b, what in zip(kernel, ref, names):
      self.assertEqual(np.shape(a), np.shape(b), what)
      _close(a, b, what, rtol=1e-4 if what in ('dt', 'dkernel') else 1e-5)
      if not (semi_grad and what == 'dt'):
        self.assertGreater(float(np.max(np.abs(a))), 0.0, what)
    # The product [E, C] is never materialised on the kernel path.
    hlo = jax.jit(lambda x, kern: fused.genconv_message_softmax(
        x, ops.AffineEdges(raw, kern, bias), s, r, n, t)).lower(
            x, kern).as_text()
    self.assertIn(fused._AFFINE_FWD, hlo)
    self.assertNotIn(f'{len(s)}x{c}', hlo)

  def test_affine_edges_vmap_of_vjp_and_errors(self):
    rng = np.random.default_rng(7)
    x, _, s, r, _ = _graph(rng)
    n, c = x.shape
    raw = rng.normal(size=(len(s), 2)).astype(np.float32)
    kern = rng.normal(size=(2, c)).astype(np.float32)
    bias = np.zeros((c,), np.float32)
    cots = rng.normal(size=(2, n, c)).astype(np.float32)

    def grads(fn):
      _, vjp = jax.vjp(lambda x, kern: fn(
          x, ops.AffineEdges(raw, kern, bias), s, r, n, 0.8), x, kern)
      return jax.jit(jax.vmap(vjp))(cots)

    kernel = grads(fused.genconv_message_softmax)
    ref = grads(lambda x, e, s, r, n, t: _reference(
        x, e.materialize(), s, r, n, t, False))
    for a, b, what in zip(kernel, ref, ('dx', 'dkernel')):
      self.assertEqual(a.shape[0], 2, what)
      _close(a, b, what, rtol=1e-4)
    with self.assertRaisesRegex(ValueError, r'AffineEdges expects raw \[E, K\]'):
      fused.genconv_message_softmax(
          x, ops.AffineEdges(raw[:, :1], kern, bias), s, r, n)

  @parameterized.named_parameters(
      dict(testcase_name='dense_c16', c=16, affine=False),
      dict(testcase_name='affine_c20', c=20, affine=True),
      dict(testcase_name='affine_c80', c=80, affine=True),
      dict(testcase_name='dense_c80', c=80, affine=False),
      # A 64-channel group and a 16-channel block on 2 threads.
      dict(testcase_name='affine_c80_2_threads', c=80, affine=True,
           threads=2),
  )
  def test_receiver_sorted_path_matches_jnp(self, c, affine, threads=1):
    """Receiver-sorted edges (as the graph builders emit them) take the
    register-blocked path: groups of 64 channels, blocks of 16, tail
    channels one by one; a long segment (a padding node's self-loops), an
    isolated node, duplicates."""
    self.enter_context(mock.patch.dict(
        os.environ, {'MAMMOJAX_GENCONV_KERNEL_THREADS': str(threads)}))
    rng = np.random.default_rng(8)
    n = 40
    r = np.sort(np.concatenate([
        rng.integers(0, n - 2, 300), np.full(60, n - 1)])).astype(np.int32)
    r = r[r != 5]  # Node 5 receives nothing.
    s = np.where(r == n - 1, n - 1, rng.integers(0, n - 1, len(r)))
    s = s.astype(np.int32)
    x = (rng.normal(size=(n, c)) * 3).astype(np.float32)
    g = rng.normal(size=(n, c)).astype(np.float32)
    raw = rng.normal(size=(len(r), 2)).astype(np.float32)
    kern = rng.normal(size=(2, c)).astype(np.float32)
    bias = rng.normal(size=(c,)).astype(np.float32)
    emb = (rng.normal(size=(len(r), c)) * 2).astype(np.float32)
    t = rng.uniform(0.5, 2.0, c).astype(np.float32)

    def run(fn):
      def loss(x, raw, kern, bias, emb, tt):
        edges = ops.AffineEdges(raw, kern, bias) if affine else emb
        out = fn(x, edges, s, r, n, tt)
        return jnp.sum(out * g), out
      (_, out), grads = jax.jit(jax.value_and_grad(
          loss, argnums=(0, 1, 2, 3, 4, 5), has_aux=True))(
              x, raw, kern, bias, emb, t)
      return (out,) + tuple(grads)

    def reference(x, edges, s, r, n, t):
      e = edges.materialize() if affine else edges
      return _reference(x, e, s, r, n, t, False)

    kernel = run(lambda *a: fused.genconv_message_softmax(*a))
    ref = run(reference)
    for a, b, what in zip(kernel, ref, (
        'out', 'dx', 'draw', 'dkernel', 'dbias', 'demb', 'dt')):
      _close(a, b, what, rtol=1e-4 if what in ('dt', 'dkernel') else 1e-5)
    np.testing.assert_array_equal(kernel[0][5], 0.0)

  def test_threefry_words_equal_jax_threefry(self):
    from jax.extend.random import threefry_2x32
    key = jnp.array([123456789, 987654321], jnp.uint32)
    for n in (1, 2, 31, 64, 1001):  # Odd, below and above a vector.
      got = np.asarray(jax.jit(lambda k, n=n: fused.threefry_words(k, n))(key))
      want = np.asarray(threefry_2x32(
          key, jnp.arange(n + n % 2, dtype=jnp.uint32)))[:n]
      np.testing.assert_array_equal(got, want, err_msg=str(n))
    hlo = jax.jit(lambda k: fused.threefry_words(k, 64)).lower(key).as_text()
    self.assertIn(fused._THREEFRY, hlo)
    with self.assertRaisesRegex(ValueError, r'key must be \[2\] uint32'):
      fused.threefry_words(jnp.zeros((4,), jnp.uint32), 8)
    # The fallback (kernel off) draws the same words.
    os.environ['MAMMOJAX_GENCONV_KERNEL'] = '0'
    try:
      off = np.asarray(jax.jit(lambda k: fused.threefry_words(k, 1001))(key))
    finally:
      os.environ['MAMMOJAX_GENCONV_KERNEL'] = '1'
    np.testing.assert_array_equal(off, got)

  def test_vmap_of_vjp(self):
    """GradNorm vmaps the VJP over its task cotangents."""
    rng = np.random.default_rng(4)
    x, emb, s, r, _ = _graph(rng)
    n, c = x.shape
    cots = rng.normal(size=(2, n, c)).astype(np.float32)
    t = np.array([0.9], np.float32)

    def grads(fn):
      _, vjp = jax.vjp(lambda x, e, tt: fn(x, e, s, r, n, tt), x, emb, t)
      return jax.jit(jax.vmap(vjp))(cots)

    kernel = grads(fused.genconv_message_softmax)
    ref = grads(lambda x, e, s, r, n, tt: _reference(x, e, s, r, n, tt, False))
    for a, b, what in zip(kernel, ref, ('dx', 'demb', 'dt')):
      _close(a, b, what, rtol=1e-4 if what == 'dt' else 1e-5)
    # One gradient per cotangent, and the two differ.
    self.assertEqual(kernel[0].shape, (2, n, c))
    self.assertEqual(kernel[1].shape, (2,) + emb.shape)
    self.assertFalse(np.allclose(kernel[1][0], kernel[1][1]))

  def test_genconv_paths_agree_and_hlo(self):
    rng = np.random.default_rng(5)
    x, emb, s, r, _ = _graph(rng, c=8)
    ea = rng.normal(size=(len(s), 3)).astype(np.float32)
    kw = dict(aggr='softmax', learn_t=True, msg_norm=True,
              learn_msg_scale=True, norm='layer')
    on, off = gnn.GENConv(8, **kw), gnn.GENConv(8, use_kernel=False, **kw)
    variables = on.init(jax.random.key(0), x, s, r, ea)
    self.assertEqual(
        jax.tree_util.tree_structure(variables),
        jax.tree_util.tree_structure(off.init(jax.random.key(0), x, s, r, ea)))

    def fwd_grad(mod):
      fn = jax.jit(jax.value_and_grad(
          lambda v, x: jnp.sum(mod.apply(v, x, s, r, ea) ** 2),
          argnums=(0, 1)))
      return fn, fn(variables, x)

    fn_on, res_on = fwd_grad(on)
    fn_off, res_off = fwd_grad(off)
    for a, b in zip(jax.tree_util.tree_leaves(res_on),
                    jax.tree_util.tree_leaves(res_off)):
      _close(a, b, 'GENConv kernel vs jnp', rtol=1e-4)
    hlo_on = fn_on.lower(variables, x).as_text()
    self.assertIn(fused._FWD, hlo_on)
    self.assertIn(fused._BWD, hlo_on)
    self.assertNotIn(fused._FWD, fn_off.lower(variables, x).as_text())

  def test_disabled_falls_back(self):
    os.environ['MAMMOJAX_GENCONV_KERNEL'] = '0'
    try:
      self.assertFalse(fused.use_kernel(jnp.zeros((2, 2), jnp.float32)))
      mod = gnn.GENConv(4, aggr='softmax', learn_t=True)
      x = np.ones((3, 4), np.float32)
      s = r = np.array([0, 1, 2], np.int32)
      hlo = jax.jit(lambda v: mod.apply(v, x, s, r)).lower(
          mod.init(jax.random.key(0), x, s, r)).as_text()
      self.assertNotIn(fused._FWD, hlo)
      os.environ['MAMMOJAX_GENCONV_KERNEL'] = 'yes'
      with self.assertRaisesRegex(ValueError, 'MAMMOJAX_GENCONV_KERNEL'):
        fused.use_kernel(jnp.zeros((2, 2), jnp.float32))
    finally:
      os.environ['MAMMOJAX_GENCONV_KERNEL'] = '1'

  def test_build_error_names_the_compiler(self):
    saved = os.environ.get('CXX')
    os.environ['CXX'] = 'false'  # Exists, but "compiles" nothing.
    try:
      with self.assertRaisesRegex(RuntimeError, 'false .* failed'):
        fused.build_kernel(force=True)
    finally:
      if saved is None:
        os.environ.pop('CXX')
      else:
        os.environ['CXX'] = saved


if __name__ == '__main__':
  absltest.main()
