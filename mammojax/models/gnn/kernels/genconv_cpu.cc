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
// recomputes m and the weights:
//   ag = exp(t m - mx) inv g_i;  q = ag (m - out_i)
//   dm = ag + t q   (semi_grad: ag);  dpre = dm [pre > 0]
//   d_emb[k] = dpre;  dx[j] += dpre;  dt_c += m q
// The edge embedding is either a dense [E, C] array (the backward writes
// d_emb, its only [E, C] output) or "affine": raw [E, K] @ kernel [K, C] +
// bias [C] (gnn.AffineEdges, MT-GCN's edge encoder), formed per edge in
// registers and never stored; the backward then accumulates d_kernel and
// d_bias and, when asked, d_raw, and writes no [E, C] array at all.
//
// Two paths. Receiver-sorted edges (what the graph builders emit) run the
// register-blocked path: a receiver's edges are one contiguous segment, and
// a group of 64 channels of its max / sums / gradient accumulators stays in
// vector registers (GCC vector extensions: 16 lanes, one zmm with AVX-512,
// two ymm with AVX2) for the whole segment. Any other order runs the general
// path, which keeps [N, C] accumulators in memory. Both compute the same
// sums in edge order.
// Channels (groups) are split across `threads` std::threads: each owns a
// channel range of every accumulator, so there are no races and no atomics.
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
    body(0, 0, channels);
    return;
  }
  std::vector<std::thread> pool;
  const int64_t chunk = (channels + threads - 1) / threads;
  for (int64_t w = 1; w < threads; ++w) {
    const int64_t lo = w * chunk, hi = std::min(channels, lo + chunk);
    if (lo < hi) pool.emplace_back([&body, w, lo, hi] { body(w, lo, hi); });
  }
  body(0, 0, std::min(channels, chunk));
  for (auto& th : pool) th.join();
}

// Where an edge's [C] embedding comes from. Dense: row k of emb [E, C].
// Affine: raw [E, K] times kernel [K, C] plus bias [C], formed per edge in
// a small buffer (L1) for the thread's channel range, never stored.
struct EdgeSource {
  const float* emb = nullptr;     // Dense.
  const float* raw = nullptr;     // Affine: [E, K].
  const float* kernel = nullptr;  // Affine: [K, C].
  const float* bias = nullptr;    // Affine: [C].
  int64_t k = 0, c = 0;

  // Pointer p with p[ch] = embedding of edge e at channel ch, ch in [lo, hi).
  __attribute__((always_inline)) inline const float* Row(
      int64_t e, int64_t lo, int64_t hi, float* buf) const {
    if (emb != nullptr) return emb + e * c;
    // Summed in the order of gnn.ops.AffineEdges.materialize: the K
    // products, then the bias.
    float* b = buf - lo;
    const float* a = raw + e * k;
    const float a0 = a[0];
#pragma GCC ivdep
    for (int64_t ch = lo; ch < hi; ++ch) b[ch] = a0 * kernel[ch];
    for (int64_t q = 1; q < k; ++q) {
      const float aq = a[q];
      const float* wq = kernel + q * c;
#pragma GCC ivdep
      for (int64_t ch = lo; ch < hi; ++ch) b[ch] += aq * wq[ch];
    }
#pragma GCC ivdep
    for (int64_t ch = lo; ch < hi; ++ch) b[ch] += bias[ch];
    return b;
  }
};

// Gradients of the edge embedding: Dense writes d_emb [E, C]; Affine
// accumulates d_kernel [K, C] and d_bias [C] (per thread's channel range)
// and, with d_raw != nullptr, d_raw [E, K] (partial sums per thread, added).
struct EdgeGrads {
  float* demb = nullptr;
  float* dkernel = nullptr;
  float* dbias = nullptr;
  float* draw = nullptr;
};

// ---------------------------------------------------------------------------
// Receiver-sorted fast path. Edges sorted by receiver (as graphs.knn_graph,
// radius_graph and batching.pad_batch emit them) form one contiguous segment
// per receiver; a block of kBlock channels of one receiver's max, sums and
// gradient accumulators then lives in registers instead of being read and
// written back for every edge. Same arithmetic in the same order as the
// general path (the per-receiver sums run over the edges in edge order).

constexpr int kBlock = 16;
constexpr int kMaxAffineK = 4;  // Raw edge widths the fast path holds.

// seg[i] .. seg[i + 1] = the edges of receiver i; false if not sorted.
bool SortedSegments(const int32_t* r, int64_t e, int64_t n,
                    std::vector<int64_t>* seg) {
  for (int64_t k = 1; k < e; ++k)
    if (r[k] < r[k - 1]) return false;
  seg->assign(n + 1, 0);
  int64_t below = 0;
  for (int64_t k = 0; k < e; ++k) {
    if (r[k] < 0) ++below;
    else if (r[k] < n) ++(*seg)[r[k] + 1];
  }
  (*seg)[0] = below;
  for (int64_t i = 0; i < n; ++i) (*seg)[i + 1] += (*seg)[i];
  return true;
}

// Lanes: a block of kBlock channels as one GCC vector (vector extensions:
// one zmm with AVX-512, two ymm with AVX2), or one float for a tail
// channel. The same templates run both, through these overloads.
typedef float VF __attribute__((vector_size(kBlock * sizeof(float))));
typedef int32_t VI __attribute__((vector_size(kBlock * sizeof(int32_t))));

template <typename T> struct Lanes;
template <> struct Lanes<float> {
  static float Splat(float v) { return v; }
  static float Load(const float* p) { return *p; }
  static void Store(float* p, float v) { *p = v; }
  static float Max(float a, float b) { return std::max(a, b); }
  static float Relu(float a) { return std::max(a, 0.0f); }
  static float IfPositive(float pre, float v) { return pre > 0.0f ? v : 0.0f; }
  static float Exp(float x) { return FastExp(x); }
  static float Sum(float v) { return v; }
};
template <> struct Lanes<VF> {
  static VF Splat(float v) { return VF{} + v; }
  static VF Load(const float* p) {
    VF v;
    std::memcpy(&v, p, sizeof(v));
    return v;
  }
  static void Store(float* p, VF v) { std::memcpy(p, &v, sizeof(v)); }
  static VF Max(VF a, VF b) { return a > b ? a : b; }
  static VF Relu(VF a) { return a > 0.0f ? a : Splat(0.0f); }
  static VF IfPositive(VF pre, VF v) { return pre > 0.0f ? v : Splat(0.0f); }
  // FastExp, lane by lane in vector registers, for x <= 0 (the softmax
  // exponents t m - max): no upper clamp; below -87 the result is
  // exp(-87) ~ 1.6e-38 instead of 0, against a denominator >= 1.
  static VF Exp(VF x) {
    x = Max(x, Splat(-87.0f));
    const VF k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    VF r = x - k * 0.693359375f;
    r = r - k * -2.12194440e-4f;
    VF p = Splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const VI bits = (__builtin_convertvector(k, VI) + 127) << 23;
    return p * reinterpret_cast<const VF&>(bits);
  }
  static float Sum(VF v) {
    float acc = 0.0f;
    for (int l = 0; l < kBlock; ++l) acc += v[l];
    return acc;
  }
};

#define MJ_UNROLL _Pragma("GCC unroll 8")

// NB lane groups of an edge's embedding (channels ch0 .. ch0 + NB lanes).
template <typename T, int NB>
struct BlockEdges {
  using L = Lanes<T>;
  static constexpr int64_t kW = sizeof(T) / sizeof(float);
  const EdgeSource& src;
  int64_t ch0;
  T kern[kMaxAffineK][NB];
  T bias[NB];

  BlockEdges(const EdgeSource& s, int64_t c0) : src(s), ch0(c0) {
    if (src.emb != nullptr) return;
    for (int64_t q = 0; q < src.k; ++q)
      for (int u = 0; u < NB; ++u)
        kern[q][u] = L::Load(src.kernel + q * src.c + ch0 + u * kW);
    for (int u = 0; u < NB; ++u) bias[u] = L::Load(src.bias + ch0 + u * kW);
  }

  __attribute__((always_inline)) inline void Row(int64_t e, T* ev) const {
    if (src.emb != nullptr) {
      MJ_UNROLL for (int u = 0; u < NB; ++u)
        ev[u] = L::Load(src.emb + e * src.c + ch0 + u * kW);
      return;
    }
    const float* a = src.raw + e * src.k;
    MJ_UNROLL for (int u = 0; u < NB; ++u) ev[u] = a[0] * kern[0][u];
    for (int64_t q = 1; q < src.k; ++q) {
      const float aq = a[q];
      MJ_UNROLL for (int u = 0; u < NB; ++u) ev[u] = ev[u] + aq * kern[q][u];
    }
    MJ_UNROLL for (int u = 0; u < NB; ++u) ev[u] = ev[u] + bias[u];
  }
};

template <typename T, int NB>
void SortedForwardBlock(const float* xs, const EdgeSource& src,
                        const int32_t* s, const int64_t* seg,
                        const float* tv, int64_t n, int64_t c, float eps,
                        int64_t ch0, float* o, float* mx, float* inv) {
  using L = Lanes<T>;
  constexpr int64_t kW = sizeof(T) / sizeof(float);
  const BlockEdges<T, NB> edges(src, ch0);
  T t[NB];
  for (int u = 0; u < NB; ++u) t[u] = L::Load(tv + ch0 + u * kW);
  for (int64_t i = 0; i < n; ++i) {
    T mv[NB], den[NB], num[NB], ev[NB];
    MJ_UNROLL for (int u = 0; u < NB; ++u) {
      mv[u] = L::Splat(-std::numeric_limits<float>::infinity());
      den[u] = L::Splat(0.0f);
      num[u] = L::Splat(0.0f);
    }
    bool any = false;
    for (int64_t k = seg[i]; k < seg[i + 1]; ++k) {
      const int32_t j = s[k];
      if (j < 0 || j >= n) continue;
      any = true;
      edges.Row(k, ev);
      const float* xr = xs + j * c + ch0;
      MJ_UNROLL for (int u = 0; u < NB; ++u) {
        const T m = L::Relu(L::Load(xr + u * kW) + ev[u]) + eps;
        mv[u] = L::Max(mv[u], t[u] * m);
      }
    }
    if (!any) {
      MJ_UNROLL for (int u = 0; u < NB; ++u) mv[u] = L::Splat(0.0f);
    } else {
      for (int64_t k = seg[i]; k < seg[i + 1]; ++k) {
        const int32_t j = s[k];
        if (j < 0 || j >= n) continue;
        edges.Row(k, ev);
        const float* xr = xs + j * c + ch0;
        MJ_UNROLL for (int u = 0; u < NB; ++u) {
          const T m = L::Relu(L::Load(xr + u * kW) + ev[u]) + eps;
          const T ex = L::Exp(t[u] * m - mv[u]);
          den[u] = den[u] + ex;
          num[u] = num[u] + ex * m;
        }
      }
    }
    MJ_UNROLL for (int u = 0; u < NB; ++u) {
      const int64_t off = i * c + ch0 + u * kW;
      const T iv = L::Splat(1.0f) / (den[u] + kDenEps);
      L::Store(mx + off, mv[u]);
      L::Store(inv + off, iv);
      L::Store(o + off, num[u] * iv);
    }
  }
}

template <typename T, int NB>
void SortedBackwardBlock(const float* xs, const EdgeSource& src,
                         const int32_t* s, const int64_t* seg,
                         const float* tv, const float* mx, const float* inv,
                         const float* ou, const float* g, int64_t n,
                         int64_t c, int64_t e, float eps, bool semi_grad,
                         int64_t ch0, float* dx, float* dt,
                         const EdgeGrads& eg, float* draw) {
  using L = Lanes<T>;
  constexpr int64_t kW = sizeof(T) / sizeof(float);
  const BlockEdges<T, NB> edges(src, ch0);
  const bool affine = src.emb == nullptr;
  const int64_t kk = src.k;
  const T zero = L::Splat(0.0f);
  T t[NB], dtv[NB], dbv[NB], dkv[kMaxAffineK][NB];
  for (int u = 0; u < NB; ++u) {
    t[u] = L::Load(tv + ch0 + u * kW);
    dtv[u] = dbv[u] = zero;
    for (int64_t q = 0; q < kMaxAffineK; ++q) dkv[q][u] = zero;
  }
  for (int64_t i = 0; i < n; ++i)
    for (int u = 0; u < NB; ++u) L::Store(dx + i * c + ch0 + u * kW, zero);
  auto zero_demb = [&](int64_t k) {
    for (int u = 0; u < NB; ++u)
      L::Store(eg.demb + k * c + ch0 + u * kW, zero);
  };
  if (!affine) {  // Edges outside every segment (receiver id out of range).
    for (int64_t k = 0; k < e; ++k) {
      if (k == seg[0]) k = seg[n];
      if (k >= e) break;
      zero_demb(k);
    }
  }
  for (int64_t i = 0; i < n; ++i) {
    if (seg[i] == seg[i + 1]) continue;
    T mv[NB], ov[NB], gv[NB], ev[NB], dp[NB];
    for (int u = 0; u < NB; ++u) {
      const int64_t off = i * c + ch0 + u * kW;
      mv[u] = L::Load(mx + off);
      ov[u] = L::Load(ou + off);
      gv[u] = L::Load(g + off) * L::Load(inv + off);
    }
    for (int64_t k = seg[i]; k < seg[i + 1]; ++k) {
      const int32_t j = s[k];
      if (j < 0 || j >= n) {
        if (!affine) zero_demb(k);
        continue;
      }
      edges.Row(k, ev);
      const float* xr = xs + j * c + ch0;
      if (semi_grad) {
        MJ_UNROLL for (int u = 0; u < NB; ++u) {
          const T pre = L::Load(xr + u * kW) + ev[u];
          const T m = L::Relu(pre) + eps;
          dp[u] = L::IfPositive(pre, L::Exp(t[u] * m - mv[u]) * gv[u]);
        }
      } else {
        MJ_UNROLL for (int u = 0; u < NB; ++u) {
          const T pre = L::Load(xr + u * kW) + ev[u];
          const T m = L::Relu(pre) + eps;
          const T ag = L::Exp(t[u] * m - mv[u]) * gv[u];
          const T q = ag * (m - ov[u]);
          dp[u] = L::IfPositive(pre, ag + t[u] * q);
          dtv[u] = dtv[u] + m * q;
        }
      }
      float* dxr = dx + j * c + ch0;
      MJ_UNROLL for (int u = 0; u < NB; ++u)
        L::Store(dxr + u * kW, L::Load(dxr + u * kW) + dp[u]);
      if (!affine) {
        MJ_UNROLL for (int u = 0; u < NB; ++u)
          L::Store(eg.demb + k * c + ch0 + u * kW, dp[u]);
        continue;
      }
      const float* a = src.raw + k * kk;
      MJ_UNROLL for (int u = 0; u < NB; ++u) dbv[u] = dbv[u] + dp[u];
      for (int64_t q = 0; q < kk; ++q) {
        const float aq = a[q];
        MJ_UNROLL for (int u = 0; u < NB; ++u) dkv[q][u] = dkv[q][u] + aq * dp[u];
      }
      if (draw != nullptr) {
        for (int64_t q = 0; q < kk; ++q) {
          T acc = dp[0] * edges.kern[q][0];
          for (int u = 1; u < NB; ++u) acc = acc + dp[u] * edges.kern[q][u];
          draw[k * kk + q] += L::Sum(acc);
        }
      }
    }
  }
  for (int u = 0; u < NB; ++u) {
    float tmp[kW];
    L::Store(tmp, dtv[u]);
    for (int64_t l = 0; l < kW; ++l) dt[ch0 + u * kW + l] = tmp[l];
    if (affine) {
      L::Store(eg.dbias + ch0 + u * kW, dbv[u]);
      for (int64_t q = 0; q < kk; ++q)
        L::Store(eg.dkernel + q * c + ch0 + u * kW, dkv[q][u]);
    }
  }
}

// Channel groups [ch0, ch0 + width) split over `threads` (whole groups):
// kGroup vectors of kBlock lanes, then single vectors, then single floats.
constexpr int kGroup = 4;

template <typename F>
void ParallelBlocks(int64_t c, int64_t threads, F&& body) {
  std::vector<std::pair<int64_t, int64_t>> blocks;
  int64_t ch = 0;
  for (; ch + kGroup * kBlock <= c; ch += kGroup * kBlock)
    blocks.emplace_back(ch, kGroup * kBlock);
  for (; ch + kBlock <= c; ch += kBlock) blocks.emplace_back(ch, kBlock);
  for (; ch < c; ++ch) blocks.emplace_back(ch, 1);
  const int64_t nb = static_cast<int64_t>(blocks.size());
  threads = std::max<int64_t>(1, std::min<int64_t>(threads, nb));
  auto run = [&](int64_t tid) {
    for (int64_t b = tid; b < nb; b += threads)
      body(tid, blocks[b].first, blocks[b].second);
  };
  std::vector<std::thread> pool;
  for (int64_t w = 1; w < threads; ++w) pool.emplace_back(run, w);
  run(0);
  for (auto& th : pool) th.join();
}

int64_t BlockThreads(int64_t c, int64_t threads) {
  const int64_t nb = c / (kGroup * kBlock) + (c % (kGroup * kBlock)) / kBlock
                     + c % kBlock;
  return std::max<int64_t>(1, std::min<int64_t>(threads, nb));
}

// Runs fn.template operator()<T, NB>() for the group width.
#define MJ_DISPATCH_WIDTH(width, CALL)      \
  if ((width) == kGroup * kBlock) {         \
    CALL(VF, kGroup);                       \
  } else if ((width) == kBlock) {           \
    CALL(VF, 1);                            \
  } else {                                  \
    CALL(float, 1);                         \
  }

void ForwardImpl(const float* xs, const EdgeSource& src, const int32_t* s,
                 const int32_t* r, const float* tv, int64_t n, int64_t c,
                 int64_t e, float eps, int64_t threads, float* o, float* mx,
                 float* inv) {
  std::vector<int64_t> seg;
  if (src.k <= kMaxAffineK && SortedSegments(r, e, n, &seg)) {
    ParallelBlocks(c, threads, [&](int64_t, int64_t ch0, int64_t width) {
#define MJ_FWD(T, NB)                                                   \
  SortedForwardBlock<T, NB>(xs, src, s, seg.data(), tv, n, c, eps, ch0, o, \
                            mx, inv)
      MJ_DISPATCH_WIDTH(width, MJ_FWD)
#undef MJ_FWD
    });
    return;
  }
  std::vector<uint8_t> has_edge(n, 0);
  for (int64_t k = 0; k < e; ++k) {
    if (s[k] >= 0 && s[k] < n && r[k] >= 0 && r[k] < n) has_edge[r[k]] = 1;
  }
  ParallelChannels(c, threads, [&](int64_t, int64_t lo, int64_t hi) {
    const int64_t w = hi - lo;
    std::vector<float> den(n * w, 0.0f), buf(w);
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
      const float* er = src.Row(k, lo, hi, buf.data());
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
      const float* er = src.Row(k, lo, hi, buf.data());
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
}

// d_raw [E, K] of a backward pass split over `threads` channel blocks:
// thread 0 writes d_raw itself, threads 1.. write partials that Reduce()
// adds to it. Without d_raw (null) every thread gets null.
class RawGradPartials {
 public:
  RawGradPartials(float* draw, int64_t threads, int64_t size)
      : draw_(draw), size_(size),
        parts_(draw != nullptr ? (threads - 1) * size : 0, 0.0f) {}
  float* For(int64_t tid) {
    if (draw_ == nullptr) return nullptr;
    return tid == 0 ? draw_ : parts_.data() + (tid - 1) * size_;
  }
  void Reduce() {
    for (size_t off = 0; off < parts_.size(); off += size_)
      for (int64_t idx = 0; idx < size_; ++idx) draw_[idx] += parts_[off + idx];
  }

 private:
  float* draw_;
  int64_t size_;
  std::vector<float> parts_;
};

void BackwardImpl(const float* xs, const EdgeSource& src, const int32_t* s,
                  const int32_t* r, const float* tv, const float* mx,
                  const float* inv, const float* ou, const float* g,
                  int64_t n, int64_t c, int64_t e, float eps,
                  bool semi_grad, int64_t threads, float* dx, float* dt,
                  const EdgeGrads& eg) {
  const bool affine = src.emb == nullptr;
  const int64_t kk = src.k;
  std::vector<int64_t> seg;
  if (kk <= kMaxAffineK && SortedSegments(r, e, n, &seg)) {
    RawGradPartials parts(affine ? eg.draw : nullptr,
                          BlockThreads(c, threads), e * kk);
    if (affine && eg.draw != nullptr) std::fill(eg.draw, eg.draw + e * kk, 0.0f);
    ParallelBlocks(c, threads, [&](int64_t tid, int64_t ch0, int64_t width) {
      float* draw = parts.For(tid);
#define MJ_BWD(T, NB)                                                       \
  SortedBackwardBlock<T, NB>(xs, src, s, seg.data(), tv, mx, inv, ou, g, n, c, \
                             e, eps, semi_grad, ch0, dx, dt, eg, draw)
      MJ_DISPATCH_WIDTH(width, MJ_BWD)
#undef MJ_BWD
    });
    parts.Reduce();
    return;
  }
  RawGradPartials parts(affine ? eg.draw : nullptr,
                        std::max<int64_t>(1, std::min<int64_t>(threads, c / 8)),
                        e * kk);
  ParallelChannels(c, threads, [&](int64_t tid, int64_t lo, int64_t hi) {
    const int64_t w = hi - lo;
    // g * inv per receiver, precomputed once ([N, w]).
    std::vector<float> gi(n * w), buf(w), dbuf(w);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t ch = lo; ch < hi; ++ch)
        gi[i * w + ch - lo] = g[i * c + ch] * inv[i * c + ch];
    for (int64_t i = 0; i < n; ++i)
      std::fill(dx + i * c + lo, dx + i * c + hi, 0.0f);
    std::vector<float> dtl(w, 0.0f), dkl(affine ? kk * w : 0, 0.0f),
        dbl(affine ? w : 0, 0.0f);
    float* dtp = dtl.data() - lo;
    float* draw = parts.For(tid);
    for (int64_t k = 0; k < e; ++k) {
      const int32_t j = s[k], i = r[k];
      float* dr = affine ? dbuf.data() - lo : eg.demb + k * c;
      if (j < 0 || j >= n || i < 0 || i >= n) {
        if (!affine) std::fill(dr + lo, dr + hi, 0.0f);
        if (draw != nullptr) std::fill(draw + k * kk, draw + (k + 1) * kk, 0.0f);
        continue;
      }
      const float* xr = xs + j * c;
      const float* er = src.Row(k, lo, hi, buf.data());
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
      if (affine) {
        const float* a = src.raw + k * kk;
        float* dbp = dbl.data() - lo;
#pragma GCC ivdep
        for (int64_t ch = lo; ch < hi; ++ch) dbp[ch] += dr[ch];
        for (int64_t q = 0; q < kk; ++q) {
          const float aq = a[q];
          float* dkq = dkl.data() + q * w - lo;
#pragma GCC ivdep
          for (int64_t ch = lo; ch < hi; ++ch) dkq[ch] += aq * dr[ch];
        }
        if (draw != nullptr) {
          for (int64_t q = 0; q < kk; ++q) {
            const float* wq = src.kernel + q * c;
            float acc = 0.0f;
            for (int64_t ch = lo; ch < hi; ++ch) acc += dr[ch] * wq[ch];
            draw[k * kk + q] = acc;
          }
        }
      }
    }
    for (int64_t ch = lo; ch < hi; ++ch) dt[ch] = dtl[ch - lo];
    if (affine) {
      for (int64_t ch = lo; ch < hi; ++ch) eg.dbias[ch] = dbl[ch - lo];
      for (int64_t q = 0; q < kk; ++q)
        for (int64_t ch = lo; ch < hi; ++ch)
          eg.dkernel[q * c + ch] = dkl[q * w + ch - lo];
    }
  });
  parts.Reduce();
}

ffi::Error CheckX(ffi::Buffer<ffi::F32>& x) {
  if (x.dimensions().size() != 2)
    return ffi::Error::InvalidArgument("x: expected [N, C]");
  return ffi::Error::Success();
}

ffi::Error Forward(ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> emb,
                   ffi::Buffer<ffi::S32> senders,
                   ffi::Buffer<ffi::S32> receivers, ffi::Buffer<ffi::F32> t,
                   ffi::ResultBuffer<ffi::F32> out,
                   ffi::ResultBuffer<ffi::F32> mx_out,
                   ffi::ResultBuffer<ffi::F32> inv_out, float eps,
                   int64_t threads) {
  if (auto err = CheckX(x); err.failure()) return err;
  const int64_t n = x.dimensions()[0], c = x.dimensions()[1];
  EdgeSource src;
  src.emb = emb.typed_data();
  src.c = c;
  ForwardImpl(x.typed_data(), src, senders.typed_data(),
              receivers.typed_data(), t.typed_data(), n, c,
              senders.element_count(), eps, threads, out->typed_data(),
              mx_out->typed_data(), inv_out->typed_data());
  return ffi::Error::Success();
}

ffi::Error AffineForward(
    ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> raw,
    ffi::Buffer<ffi::F32> kernel, ffi::Buffer<ffi::F32> bias,
    ffi::Buffer<ffi::S32> senders, ffi::Buffer<ffi::S32> receivers,
    ffi::Buffer<ffi::F32> t, ffi::ResultBuffer<ffi::F32> out,
    ffi::ResultBuffer<ffi::F32> mx_out, ffi::ResultBuffer<ffi::F32> inv_out,
    float eps, int64_t threads) {
  if (auto err = CheckX(x); err.failure()) return err;
  const int64_t n = x.dimensions()[0], c = x.dimensions()[1];
  EdgeSource src;
  src.raw = raw.typed_data();
  src.kernel = kernel.typed_data();
  src.bias = bias.typed_data();
  src.k = kernel.dimensions()[0];
  src.c = c;
  ForwardImpl(x.typed_data(), src, senders.typed_data(),
              receivers.typed_data(), t.typed_data(), n, c,
              senders.element_count(), eps, threads, out->typed_data(),
              mx_out->typed_data(), inv_out->typed_data());
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
  if (auto err = CheckX(x); err.failure()) return err;
  const int64_t n = x.dimensions()[0], c = x.dimensions()[1];
  EdgeSource src;
  src.emb = emb.typed_data();
  src.c = c;
  EdgeGrads eg;
  eg.demb = demb_out->typed_data();
  BackwardImpl(x.typed_data(), src, senders.typed_data(),
               receivers.typed_data(), t.typed_data(), mx_in.typed_data(),
               inv_in.typed_data(), out_in.typed_data(), g_in.typed_data(),
               n, c, senders.element_count(), eps, semi_grad != 0, threads,
               dx_out->typed_data(), dt_out->typed_data(), eg);
  return ffi::Error::Success();
}

ffi::Error AffineBackward(
    ffi::Buffer<ffi::F32> x, ffi::Buffer<ffi::F32> raw,
    ffi::Buffer<ffi::F32> kernel, ffi::Buffer<ffi::F32> bias,
    ffi::Buffer<ffi::S32> senders, ffi::Buffer<ffi::S32> receivers,
    ffi::Buffer<ffi::F32> t, ffi::Buffer<ffi::F32> mx_in,
    ffi::Buffer<ffi::F32> inv_in, ffi::Buffer<ffi::F32> out_in,
    ffi::Buffer<ffi::F32> g_in, ffi::ResultBuffer<ffi::F32> dx_out,
    ffi::ResultBuffer<ffi::F32> draw_out,
    ffi::ResultBuffer<ffi::F32> dkernel_out,
    ffi::ResultBuffer<ffi::F32> dbias_out, ffi::ResultBuffer<ffi::F32> dt_out,
    float eps, int64_t semi_grad, int64_t raw_grad, int64_t threads) {
  if (auto err = CheckX(x); err.failure()) return err;
  const int64_t n = x.dimensions()[0], c = x.dimensions()[1];
  EdgeSource src;
  src.raw = raw.typed_data();
  src.kernel = kernel.typed_data();
  src.bias = bias.typed_data();
  src.k = kernel.dimensions()[0];
  src.c = c;
  EdgeGrads eg;
  eg.dkernel = dkernel_out->typed_data();
  eg.dbias = dbias_out->typed_data();
  if (raw_grad) {
    eg.draw = draw_out->typed_data();
  } else {
    std::fill(draw_out->typed_data(),
              draw_out->typed_data() + draw_out->element_count(), 0.0f);
  }
  BackwardImpl(x.typed_data(), src, senders.typed_data(),
               receivers.typed_data(), t.typed_data(), mx_in.typed_data(),
               inv_in.typed_data(), out_in.typed_data(), g_in.typed_data(),
               n, c, senders.element_count(), eps, semi_grad != 0, threads,
               dx_out->typed_data(), dt_out->typed_data(), eg);
  return ffi::Error::Success();
}

// Threefry-2x32 (20 rounds; Salmon et al. 2011, as jax.extend.random.
// threefry_2x32) of the counts 0 .. n-1, n even: counts i and i + n/2 form
// one block, whose two output words land at i and i + n/2, exactly as
// threefry_2x32(key, arange(n)) does. Dropout masks (gnn.dropout) draw their
// bits here on the CPU; XLA's elementwise threefry costs ~10 ns a word.
typedef uint32_t VU __attribute__((vector_size(64)));

template <typename T>
__attribute__((always_inline)) inline T Rotl(T v, int r) {
  return (v << r) | (v >> (32 - r));
}

template <typename T>
__attribute__((always_inline)) inline void ThreefryBlock(T& x0, T& x1,
                                                       uint32_t k0,
                                                       uint32_t k1) {
  const uint32_t k2 = k0 ^ k1 ^ 0x1BD11BDAu;
  const uint32_t ks[3] = {k0, k1, k2};
  static constexpr int kRot[2][4] = {{13, 15, 26, 6}, {17, 29, 16, 24}};
  x0 += k0;
  x1 += k1;
  for (int i = 0; i < 5; ++i) {
    const int* rot = kRot[i % 2];
    for (int j = 0; j < 4; ++j) {
      x0 += x1;
      x1 = Rotl(x1, rot[j]);
      x1 ^= x0;
    }
    x0 += ks[(i + 1) % 3];
    x1 += ks[(i + 2) % 3] + static_cast<uint32_t>(i + 1);
  }
}

ffi::Error ThreefryBits(ffi::Buffer<ffi::U32> key,
                        ffi::ResultBuffer<ffi::U32> out) {
  if (key.element_count() != 2)
    return ffi::Error::InvalidArgument("key: expected 2 uint32 words");
  const int64_t n = out->element_count();
  if (n % 2 != 0)
    return ffi::Error::InvalidArgument("out: expected an even word count");
  const uint32_t k0 = key.typed_data()[0], k1 = key.typed_data()[1];
  const int64_t h = n / 2;
  uint32_t* o = out->typed_data();
  constexpr int64_t kL = sizeof(VU) / sizeof(uint32_t);
  VU lane;
  for (int64_t l = 0; l < kL; ++l) lane[l] = static_cast<uint32_t>(l);
  int64_t i = 0;
  for (; i + kL <= h; i += kL) {
    VU x0 = lane + static_cast<uint32_t>(i);
    VU x1 = lane + static_cast<uint32_t>(i + h);
    ThreefryBlock(x0, x1, k0, k1);
    std::memcpy(o + i, &x0, sizeof(VU));
    std::memcpy(o + i + h, &x1, sizeof(VU));
  }
  for (; i < h; ++i) {
    uint32_t x0 = static_cast<uint32_t>(i), x1 = static_cast<uint32_t>(i + h);
    ThreefryBlock(x0, x1, k0, k1);
    o[i] = x0;
    o[i + h] = x1;
  }
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

XLA_FFI_DEFINE_HANDLER_SYMBOL(MammojaxGenconvAffineFwd, AffineForward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
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

XLA_FFI_DEFINE_HANDLER_SYMBOL(MammojaxGenconvAffineBwd, AffineBackward,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
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
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>()
                                  .Attr<float>("eps")
                                  .Attr<int64_t>("semi_grad")
                                  .Attr<int64_t>("raw_grad")
                                  .Attr<int64_t>("threads"));

XLA_FFI_DEFINE_HANDLER_SYMBOL(MammojaxThreefryBits, ThreefryBits,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Ret<ffi::Buffer<ffi::U32>>());
