// Fused GENConv edge step for XLA's CPU backend (jax.ffi custom calls).
//
// Per edge k (sender j = s[k], receiver i = r[k]) and channel c:
//   pre = x[j, c] + emb[k, c];  m = max(pre, 0) + eps
// and per receiver i the softmax aggregation with inverse temperature t_c:
//   mx[i, c]  = max_k t_c m               (0 for a node without edges)
//   inv[i, c] = 1 / (sum_k exp(t_c m - mx) + 1e-16)
//   out[i, c] = inv * sum_k exp(t_c m - mx) m
// (PyG's GENConv message + SoftmaxAggregation, as gnn.ops.softmax_aggregation
// normalises it). No [E, C] intermediate is written: the forward makes two
// passes over the edges (max, then the sums), the backward one pass that
// recomputes m and the weights and writes d_emb (the only [E, C] output):
//   ag = exp(t m - mx) inv g_i;  q = ag (m - out_i)
//   dm = ag + t q   (semi_grad: ag);  dpre = dm [pre > 0]
//   d_emb[k] = dpre;  dx[j] += dpre;  dt_c += m q
// Channels are split across `threads` std::threads: each owns a channel
// range of every accumulator, so there are no races and no atomics.
// Edges whose ids fall outside [0, N) are skipped (the jnp path drops such
// scatters; gathers clip them, but valid graphs never hold them).
//
// Built by mammojax/models/gnn/fused.py with the system C++ compiler and the
// FFI headers of jaxlib (jax.ffi.include_dir()).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <thread>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr float kDenEps = 1e-16f;

// exp(x) for float, vectorisable by the compiler (no libm call): Cody-Waite
// range reduction and a degree-6 polynomial; max relative error ~2 ulp on
// the range used here; x below -87 gives 0 (as expf's underflow does).
__attribute__((always_inline)) inline float FastExp(float x) {
  const float lo = static_cast<float>(x >= -87.0f);
  x = std::min(std::max(x, -87.0f), 88.0f);
  const float kLog2e = 1.44269504088896341f;
  const float kRound = 12582912.0f;  // 1.5 * 2^23: round to nearest.
  const float k = (x * kLog2e + kRound) - kRound;
  float r = x - k * 0.693359375f;
  r = r - k * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(k) + 127) << 23;
  return p * __builtin_bit_cast(float, bits) * lo;
}

template <typename F>
void ParallelChannels(int64_t channels, int64_t threads, F&& body) {
  threads = std::max<int64_t>(1, std::min<int64_t>(threads, channels / 8));
  if (threads == 1) {
    body(0, channels);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t chunk = (channels + threads - 1) / threads;
  for (int64_t w = 1; w < threads; ++w) {
    const int64_t lo = w * chunk, hi = std::min(channels, lo + chunk);
    if (lo < hi) pool.emplace_back([&body, lo, hi] { body(lo, hi); });
  }
  body(0, std::min(channels, chunk));
  for (auto& th : pool) th.join();
}

ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> emb,
                   ffi::Buffer<ffi::S32> senders,
                   ffi::Buffer<ffi::S32> receivers, ffi::Buffer<ffi::F32> t,
                   ffi::ResultBuffer<ffi::F32> out,
                   ffi::ResultBuffer<ffi::F32> mx_out,
                   ffi::ResultBuffer<ffi::F32> inv_out, float eps,
                   int64_t threads) {
  const auto xd = x.dimensions();
  if (xd.size() != 2) return ffi::Error::InvalidArgument("x: expected [N, C]");
  const int64_t n = xd[0], c = xd[1];
  const int64_t e = senders.element_count();
  const float* xs = x.typed_data();
  const float* em = emb.typed_data();
  const int32_t* s = senders.typed_data();
  const int32_t* r = receivers.typed_data();
  const float* tv = t.typed_data();
  float* o = out->typed_data();
  float* mx = mx_out->typed_data();
  float* inv = inv_out->typed_data();
  std::vector<uint8_t> has_edge(n, 0);
  for (int64_t k = 0; k < e; ++k) {
    if (s[k] >= 0 && s[k] < n && r[k] >= 0 && r[k] < n) has_edge[r[k]] = 1;
  }
  ParallelChannels(c, threads, [&](int64_t lo, int64_t hi) {
    const int64_t w = hi - lo;
    std::vector<float> den(n * w, 0.0f);
    for (int64_t i = 0; i < n; ++i) {
      float* row = mx + i * c;
      for (int64_t ch = lo; ch < hi; ++ch)
        row[ch] = -std::numeric_limits<float>::infinity();
      std::fill(o + i * c + lo, o + i * c + hi, 0.0f);
    }
    for (int64_t k = 0; k < e; ++k) {
      const int32_t j = s[k], i = r[k];
      if (j < 0 || j >= n || i < 0 || i >= n) continue;
      const float* xr = xs + j * c;
      const float* er = em + k * c;
      float* mr = mx + i * c;
#pragma GCC ivdep
      for (int64_t ch = lo; ch < hi; ++ch) {
        const float m = std::max(xr[ch] + er[ch], 0.0f) + eps;
        mr[ch] = std::max(mr[ch], tv[ch] * m);
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      if (!has_edge[i]) std::fill(mx + i * c + lo, mx + i * c + hi, 0.0f);
    }
    for (int64_t k = 0; k < e; ++k) {
      const int32_t j = s[k], i = r[k];
      if (j < 0 || j >= n || i < 0 || i >= n) continue;
      const float* xr = xs + j * c;
      const float* er = em + k * c;
      const float* mr = mx + i * c;
      float* dr = den.data() + i * w - lo;
      float* nr = o + i * c;
#pragma GCC ivdep
      for (int64_t ch = lo; ch < hi; ++ch) {
        const float m = std::max(xr[ch] + er[ch], 0.0f) + eps;
        const float ex = FastExp(tv[ch] * m - mr[ch]);
        dr[ch] += ex;
        nr[ch] += ex * m;
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      const float* dr = den.data() + i * w - lo;
      for (int64_t ch = lo; ch < hi; ++ch) {
        const float iv = 1.0f / (dr[ch] + kDenEps);
        inv[i * c + ch] = iv;
        o[i * c + ch] *= iv;
      }
    }
  });
  return ffi::Error::Success();
}

ffi::Error Backward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> emb,
                    ffi::Buffer<ffi::S32> senders,
                    ffi::Buffer<ffi::S32> receivers, ffi::Buffer<ffi::F32> t,
                    ffi::Buffer<ffi::F32> mx_in, ffi::Buffer<ffi::F32> inv_in,
                    ffi::Buffer<ffi::F32> out_in, ffi::Buffer<ffi::F32> g_in,
                    ffi::ResultBuffer<ffi::F32> dx_out,
                    ffi::ResultBuffer<ffi::F32> demb_out,
                    ffi::ResultBuffer<ffi::F32> dt_out, float eps,
                    int64_t semi_grad, int64_t threads) {
  const auto xd = x.dimensions();
  if (xd.size() != 2) return ffi::Error::InvalidArgument("x: expected [N, C]");
  const int64_t n = xd[0], c = xd[1];
  const int64_t e = senders.element_count();
  const float* xs = x.typed_data();
  const float* em = emb.typed_data();
  const int32_t* s = senders.typed_data();
  const int32_t* r = receivers.typed_data();
  const float* tv = t.typed_data();
  const float* mx = mx_in.typed_data();
  const float* inv = inv_in.typed_data();
  const float* ou = out_in.typed_data();
  const float* g = g_in.typed_data();
  float* dx = dx_out->typed_data();
  float* de = demb_out->typed_data();
  float* dt = dt_out->typed_data();
  ParallelChannels(c, threads, [&](int64_t lo, int64_t hi) {
    const int64_t w = hi - lo;
    // g * inv per receiver, precomputed once ([N, w]).
    std::vector<float> gi(n * w);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = lo; ch < hi; ++ch)
        gi[i * w + ch - lo] = g[i * c + ch] * inv[i * c + ch];
    for (int64_t i = 0; i < n; ++i)
      std::fill(dx + i * c + lo, dx + i * c + hi, 0.0f);
    std::vector<float> dtl(w, 0.0f);
    float* dtp = dtl.data() - lo;
    for (int64_t k = 0; k < e; ++k) {
      const int32_t j = s[k], i = r[k];
      float* dr = de + k * c;
      if (j < 0 || j >= n || i < 0 || i >= n) {
        std::fill(dr + lo, dr + hi, 0.0f);
        continue;
      }
      const float* xr = xs + j * c;
      const float* er = em + k * c;
      const float* mr = mx + i * c;
      const float* orow = ou + i * c;
      const float* gr = gi.data() + i * w - lo;
      float* dxr = dx + j * c;
      if (semi_grad) {
#pragma GCC ivdep
        for (int64_t ch = lo; ch < hi; ++ch) {
          const float pre = xr[ch] + er[ch];
          const float m = std::max(pre, 0.0f) + eps;
          const float ag = FastExp(tv[ch] * m - mr[ch]) * gr[ch];
          const float dp = pre > 0.0f ? ag : 0.0f;
          dr[ch] = dp;
          dxr[ch] += dp;
        }
      } else {
#pragma GCC ivdep
        for (int64_t ch = lo; ch < hi; ++ch) {
          const float pre = xr[ch] + er[ch];
          const float m = std::max(pre, 0.0f) + eps;
          const float ag = FastExp(tv[ch] * m - mr[ch]) * gr[ch];
          const float q = ag * (m - orow[ch]);
          const float dp = pre > 0.0f ? ag + tv[ch] * q : 0.0f;
          dr[ch] = dp;
          dxr[ch] += dp;
          dtp[ch] += m * q;
        }
      }
    }
    for (int64_t ch = lo; ch < hi; ++ch) dt[ch] = dtl[ch - lo];
  });
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(MammojaxGenconvFwd, Forward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps")
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MammojaxGenconvBwd, Backward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::S32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps")
                                  .Attr<int64_t>("semi_grad")
                                  .Attr<int64_t>("threads"));
