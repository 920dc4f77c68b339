"""Optional fused GENConv edge kernel for the CPU (C++ through ``jax.ffi``).

``genconv_message_softmax(x_src, emb, senders, receivers, num_nodes, t)``
computes GENConv's message ``m = relu(x_src[senders] + emb) + eps`` and its
softmax aggregation at ``receivers`` (``gnn.ops.softmax_aggregation``: max
under ``stop_gradient``, ``1e-16`` in the denominator, PyG's numerics) in
one custom call, with a hand-written backward in a second one. The kernels
(``kernels/genconv_cpu.cc``) never write an ``[E, C]`` intermediate: the
forward makes two passes over the edges (the per-receiver max, then the
sums), the backward one pass that recomputes the message and its softmax
weight and writes only ``d emb``. With ``emb`` a ``gnn.AffineEdges``
(``raw [E, K] @ kernel [K, C] + bias``, MT-GCN's edge encoder) the edge
embedding is formed per edge inside the kernel and neither it nor its
gradient is ever stored. Receiver-sorted edges (what the graph builders
emit) take a register-blocked path. On this CPU that removes most of the
per-edge memory traffic of the pure-jnp path (docs/performance.md).

The pure-jnp path (``GENConv`` without the kernel) stays the reference and
the fallback. The kernel is used only when all hold:

* ``MAMMOJAX_GENCONV_KERNEL`` is not ``0`` (``1`` makes a failed build an
  error instead of a silent fallback);
* the default backend is the CPU (GPU / TPU use the jnp path);
* the shared library could be loaded or built: it is compiled once, at the
  first use, with the system C++ compiler (``$CXX``, else ``g++`` / ``c++``)
  against the FFI headers shipped with jaxlib (``jax.ffi.include_dir()``),
  into ``$MAMMOJAX_KERNEL_DIR`` (default ``~/.cache/mammojax/kernels``),
  keyed by a hash of the source, flags, compiler, jax version and the host
  CPU's feature flags (it is built ``-march=native``). Nothing is built
  at ``pip install`` time, so installation never needs a compiler
  (``build_kernel()`` / ``python -m mammojax.models.gnn.fused`` builds it
  ahead of time).

The kernel's channels are split over ``MAMMOJAX_GENCONV_KERNEL_THREADS``
std::threads (default 1; 2 was slower on the loaded 2-core development
machine, docs/performance.md).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import pathlib
import platform
import shutil
import subprocess
import sys
import tempfile
import threading

import jax
import jax.numpy as jnp
import numpy as np

from mammojax.models.gnn import ops

Array = jax.Array

_SOURCE = pathlib.Path(__file__).with_name('kernels') / 'genconv_cpu.cc'
_FLAGS = ('-O3', '-march=native', '-mprefer-vector-width=512',
          '-fno-trapping-math', '-std=c++17', '-shared', '-fPIC', '-pthread',
          '-w')
_FWD = 'mammojax_genconv_fwd'
_BWD = 'mammojax_genconv_bwd'
_AFFINE_FWD = 'mammojax_genconv_affine_fwd'
_AFFINE_BWD = 'mammojax_genconv_affine_bwd'
_THREEFRY = 'mammojax_threefry_bits'
_TARGETS = ((_FWD, 'MammojaxGenconvFwd'), (_BWD, 'MammojaxGenconvBwd'),
            (_AFFINE_FWD, 'MammojaxGenconvAffineFwd'),
            (_AFFINE_BWD, 'MammojaxGenconvAffineBwd'),
            (_THREEFRY, 'MammojaxThreefryBits'))
_lock = threading.Lock()
_state: dict[str, object] = {}
# FFI target name -> the library whose handler XLA registered (never
# cleared: XLA's registry lives as long as the process).
_registered: dict[str, object] = {}


def _mode() -> str:
  mode = os.environ.get('MAMMOJAX_GENCONV_KERNEL', 'auto').strip().lower()
  if mode not in ('0', '1', 'auto'):
    raise ValueError(
        f'MAMMOJAX_GENCONV_KERNEL={mode!r}: expected 0, 1 or auto'
    )
  return mode


def _threads() -> int:
  value = os.environ.get('MAMMOJAX_GENCONV_KERNEL_THREADS', '1')
  try:
    threads = int(value)
  except ValueError:
    threads = 0
  if threads < 1:
    raise ValueError(
        f'MAMMOJAX_GENCONV_KERNEL_THREADS={value!r}: expected an int >= 1'
    )
  return threads


def _compiler() -> str | None:
  for name in (os.environ.get('CXX'), 'g++', 'c++', 'clang++'):
    if name and shutil.which(name):
      return name
  return None


def _cpu_signature() -> bytes:
  """The host CPU's feature flags (the library is built -march=native)."""
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if line.startswith(('flags', 'Features')):
          return line.encode()
  except OSError:
    pass
  return platform.processor().encode() or platform.machine().encode()


def build_kernel(force: bool = False) -> pathlib.Path:
  """Compiles ``kernels/genconv_cpu.cc`` (once) and returns the library path.

  Raises:
    RuntimeError: no C++ compiler, or the compilation failed (its output
      is in the message).
  """
  cxx = _compiler()
  if cxx is None:
    raise RuntimeError(
        'fused GENConv kernel: no C++ compiler ($CXX, g++, c++, clang++)'
    )
  include = jax.ffi.include_dir()
  key = hashlib.sha256(
      b'\0'.join([
          _SOURCE.read_bytes(), ' '.join(_FLAGS).encode(), cxx.encode(),
          jax.__version__.encode(), str(include).encode(), _cpu_signature(),
      ])
  ).hexdigest()[:16]
  cache = pathlib.Path(os.environ.get(
      'MAMMOJAX_KERNEL_DIR', pathlib.Path.home() / '.cache/mammojax/kernels'
  ))
  lib = cache / f'genconv_cpu_{key}.so'
  if lib.exists() and not force:
    return lib
  cache.mkdir(parents=True, exist_ok=True)
  with tempfile.TemporaryDirectory(dir=cache) as tmp:
    tmp_lib = pathlib.Path(tmp) / lib.name
    cmd = [cxx, *_FLAGS, f'-I{include}', str(_SOURCE), '-o', str(tmp_lib)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
      raise RuntimeError(
          f'fused GENConv kernel: {" ".join(cmd)} failed:\n{proc.stderr}'
      )
    os.replace(tmp_lib, lib)  # Atomic: concurrent builders do not clash.
  return lib


def kernel_available() -> bool:
  """Whether the CPU kernel is enabled and loaded (building it if needed)."""
  mode = _mode()
  if mode == '0':
    return False
  with _lock:
    if 'ok' not in _state:
      try:
        lib = ctypes.cdll.LoadLibrary(str(build_kernel()))
        for name, symbol in _TARGETS:
          # XLA keeps one handler per target name for the whole process and
          # rejects a second registration from another copy of the library
          # (a rebuild into another $MAMMOJAX_KERNEL_DIR after
          # `_state.clear()`): the first one, built from the same source,
          # stays in use.
          if name not in _registered:
            jax.ffi.register_ffi_target(
                name, jax.ffi.pycapsule(getattr(lib, symbol)), platform='cpu'
            )
            _registered[name] = lib
        _state['lib'] = lib
        _state['ok'] = True
      except Exception as err:  # pylint: disable=broad-except
        if mode == '1':
          raise
        logging.warning(
            'fused GENConv kernel unavailable, using the jnp path: %s', err
        )
        _state['ok'] = False
  return bool(_state['ok'])


def use_kernel(*arrays: Array) -> bool:
  """True where the kernels should run: CPU, ``arrays`` float32, built."""
  if jax.default_backend() != 'cpu':
    return False
  if any(jnp.result_type(a) != jnp.float32 for a in arrays):
    return False
  return kernel_available()


def _zero_cotangent(a):
  return np.zeros(a.shape, jax.dtypes.float0)


def _fwd_call(x, emb, senders, receivers, t, eps):
  n, c = x.shape
  shape = jax.ShapeDtypeStruct((n, c), jnp.float32)
  return jax.ffi.ffi_call(
      _FWD, (shape, shape, shape), vmap_method='sequential'
  )(
      x, emb, senders, receivers, t, eps=np.float32(eps),
      threads=np.int64(_threads()),
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6))
def _fused(x, emb, senders, receivers, t, eps, semi_grad):
  return _fwd_call(x, emb, senders, receivers, t, eps)[0]


def _fused_fwd(x, emb, senders, receivers, t, eps, semi_grad):
  out, mx, inv = _fwd_call(x, emb, senders, receivers, t, eps)
  return out, (x, emb, senders, receivers, t, mx, inv, out)


def _fused_bwd(eps, semi_grad, res, g):
  x, emb, senders, receivers, t, mx, inv, out = res
  dx, demb, dt = jax.ffi.ffi_call(
      _BWD,
      (jax.ShapeDtypeStruct(x.shape, jnp.float32),
       jax.ShapeDtypeStruct(emb.shape, jnp.float32),
       jax.ShapeDtypeStruct(t.shape, jnp.float32)),
      vmap_method='sequential',  # GradNorm vmaps the VJP over its tasks.
  )(x, emb, senders, receivers, t, mx, inv, out, g.astype(jnp.float32),
    eps=np.float32(eps), semi_grad=np.int64(bool(semi_grad)),
    threads=np.int64(_threads()))
  return (dx, demb, _zero_cotangent(senders), _zero_cotangent(receivers),
          dt)


_fused.defvjp(_fused_fwd, _fused_bwd)


def _fwd_affine_call(x, raw, kernel, bias, senders, receivers, t, eps):
  n, c = x.shape
  shape = jax.ShapeDtypeStruct((n, c), jnp.float32)
  return jax.ffi.ffi_call(
      _AFFINE_FWD, (shape, shape, shape), vmap_method='sequential'
  )(
      x, raw, kernel, bias, senders, receivers, t, eps=np.float32(eps),
      threads=np.int64(_threads()),
  )


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8))
def _fused_affine(x, raw, kernel, bias, senders, receivers, t, eps,
                  semi_grad):
  return _fwd_affine_call(x, raw, kernel, bias, senders, receivers, t, eps)[0]


def _fused_affine_fwd(x, raw, kernel, bias, senders, receivers, t, eps,
                      semi_grad):
  # symbolic_zeros: the primals arrive wrapped with `.perturbed`; the raw
  # edge features are usually data, and their gradient (a reduction over
  # channels per edge) is only computed where something needs it.
  args = [a.value for a in (x, raw, kernel, bias, senders, receivers, t)]
  out, mx, inv = _fwd_affine_call(*args, eps)
  raw_grad = bool(raw.perturbed)
  return out, (*args, mx, inv, out, raw_grad)


def _fused_affine_bwd(eps, semi_grad, res, g):
  x, raw, kernel, bias, senders, receivers, t, mx, inv, out, raw_grad = res
  if isinstance(g, jax.custom_derivatives.SymbolicZero):
    g = jnp.zeros(out.shape, jnp.float32)
  f32 = lambda a: jax.ShapeDtypeStruct(a.shape, jnp.float32)
  dx, draw, dkernel, dbias, dt = jax.ffi.ffi_call(
      _AFFINE_BWD,
      (f32(x), f32(raw), f32(kernel), f32(bias), f32(t)),
      vmap_method='sequential',  # GradNorm vmaps the VJP over its tasks.
  )(x, raw, kernel, bias, senders, receivers, t, mx, inv, out,
    g.astype(jnp.float32), eps=np.float32(eps),
    semi_grad=np.int64(bool(semi_grad)), raw_grad=np.int64(raw_grad),
    threads=np.int64(_threads()))
  return (dx, draw, dkernel, dbias, _zero_cotangent(senders),
          _zero_cotangent(receivers), dt)


_fused_affine.defvjp(_fused_affine_fwd, _fused_affine_bwd,
                     symbolic_zeros=True)


def genconv_message_softmax(
    x_src: Array,
    emb: Array | ops.AffineEdges | None,
    senders: Array,
    receivers: Array,
    num_nodes: int,
    t: float | Array = 1.0,
    *,
    eps: float = 1e-7,
    semi_grad: bool = False,
) -> Array:
  """Fused ``softmax_aggregation(relu(x_src[senders] + emb) + eps)``.

  Args:
    x_src: ``[N, C]`` float32 sender features (N = ``num_nodes``).
    emb: ``[E, C]`` float32 edge embedding; or ``gnn.AffineEdges`` (``raw
      [E, K] @ kernel [K, C] + bias``, formed per edge inside the kernel and
      never stored: the kernel returns the gradients of ``kernel``, ``bias``
      and, where differentiated, ``raw``); or None (no edge term).
    senders: ``[E]`` int source of each edge.
    receivers: ``[E]`` int target of each edge (any order).
    num_nodes: static number of nodes; must equal ``x_src.shape[0]``.
    t: inverse temperature: a float or an array broadcastable to ``[C]``
      (its gradient is summed back to its shape).
    eps: added to the ReLU message (GENConv's ``eps``).
    semi_grad: softmax weights under ``stop_gradient`` (``t`` gets no grad).

  Returns:
    ``[N, C]``, the same values and gradients as the jnp path, which runs
    instead where the kernel is not used (``use_kernel``).
  """
  n, c = x_src.shape
  if n != num_nodes:
    raise ValueError(
        f'genconv_message_softmax: x_src has {n} rows, num_nodes={num_nodes}'
    )
  t_arr = jnp.asarray(t, jnp.float32)
  t_vec = jnp.broadcast_to(t_arr.reshape(-1) if t_arr.ndim else t_arr, (c,))
  if semi_grad:
    t_vec = jax.lax.stop_gradient(t_vec)
  senders = senders.astype(jnp.int32)
  receivers = receivers.astype(jnp.int32)
  if not use_kernel(x_src, *jax.tree.leaves(emb)):
    # Not built / disabled / not the CPU / not float32: the jnp reference.
    return ops.softmax_aggregation(
        ops.genconv_messages(x_src, emb, senders, eps), receivers, num_nodes,
        t_vec,
        semi_grad=semi_grad,
    )
  if isinstance(emb, ops.AffineEdges):
    raw, kernel = emb.raw, emb.kernel
    if (raw.ndim != 2 or kernel.ndim != 2 or kernel.shape[0] != raw.shape[1]
        or kernel.shape[0] < 1 or kernel.shape[1] != c
        or raw.shape[0] != senders.shape[0]):
      raise ValueError(
          'genconv_message_softmax: AffineEdges expects raw [E, K] and '
          f'kernel [K, {c}] with E = {senders.shape[0]}, K >= 1; got raw '
          f'{raw.shape}, kernel {kernel.shape}'
      )
    bias = (jnp.zeros((c,), jnp.float32) if emb.bias is None
            else jnp.broadcast_to(emb.bias, (c,)))
    return _fused_affine(
        x_src, raw, kernel, bias, senders, receivers, t_vec, float(eps),
        bool(semi_grad),
    )
  if emb is None:
    emb = jnp.zeros((senders.shape[0], c), jnp.float32)
  return _fused(
      x_src, emb, senders, receivers, t_vec, float(eps), bool(semi_grad),
  )


def threefry_words(key: Array, num_words: int) -> Array:
  """``jax.extend.random.threefry_2x32(key, arange(num_words))``, fast.

  On the CPU with the kernel built, one custom call (vectorised C++, ~2x
  XLA's elementwise threefry on the development machine); elsewhere the jnp
  function itself. Both give the same words, so results do not depend on
  where the kernel is available.

  Args:
    key: ``[2]`` uint32 threefry key words.
    num_words: how many uint32 words.

  Returns:
    ``[num_words]`` uint32.
  """
  key = jnp.asarray(key, jnp.uint32)
  if key.shape != (2,):
    raise ValueError(f'threefry_words: key must be [2] uint32, got {key.shape}')
  even = num_words + num_words % 2
  if use_kernel():  # CPU and built (no float operands to check).
    words = jax.ffi.ffi_call(
        _THREEFRY, jax.ShapeDtypeStruct((even,), jnp.uint32),
        vmap_method='sequential',
    )(key)
  else:
    from jax.extend.random import threefry_2x32  # pylint: disable=g-import-not-at-top
    words = threefry_2x32(key, jnp.arange(even, dtype=jnp.uint32))
  return words[:num_words]


def main() -> None:
  path = build_kernel(force='--force' in sys.argv)
  print(path)


if __name__ == '__main__':
  main()
