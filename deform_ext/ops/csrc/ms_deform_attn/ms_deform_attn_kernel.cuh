// CUDA device code of multi-scale deformable attention (forward and backward).
//
// Semantics mirror ms_deform_attn_cpu.cpp exactly: bilinear sampling with
// grid_sample's align_corners=False convention (pixel = loc * size - 0.5), zeros
// outside the map, NaN / inf / far-away locations contribute zero with zero
// gradient, accumulation in float32 (float64 for float64 values).
//
// Work layout (forward and the sample part of the backward): one *thread group* of
// G lanes (G a power of two <= 32, so a group never straddles a warp) per
// (batch, query, head). Each lane owns VEC consecutive channels of head_dims and
// loads them with one 16-byte (or narrower) vector load per bilinear corner; when
// head_dims > G * VEC the lanes loop over channel chunks. Sampling locations and
// attention weights are read coalesced: lane j of the group loads sample s0 + j,
// then the group walks the G samples by warp shuffles (3 shuffles per sample).
// Level metadata (h, w, first key) is staged in shared memory per block and
// validated on the device: a level that would index outside value's keys is
// skipped, so bad spatial_shapes / level_start_index never read or write out of
// bounds, without a host synchronisation.
//
// Backward: grad_sampling_locations and grad_attention_weights are linear in the
// four corner dot products <grad_out, value_corner>, so each lane forms its
// partial (grad_attn, grad_x, grad_y) over its channels and the group reduces the
// three numbers with xor shuffles; the lane that loaded the sample keeps the
// result and the group stores them coalesced, with no global atomics.
// grad_value is a scatter:
//   * default: atomicAdd into a float32 (float64 for float64) buffer;
//   * deterministic (at::globalContext().deterministicAlgorithms()): every
//     contribution is rounded to a 64-bit fixed-point integer with a power-of-two
//     scale derived on the device from max|grad_out| * max|attn| * num_samples
//     (an upper bound of any key's sum), accumulated with integer atomics (which
//     are associative, so the result does not depend on the order), then converted
//     back. Headroom: the scale keeps every partial sum below 2^61; the quantum is
//     bound * 2^-62, e.g. ~1e-12 * max|grad_out| for the N=2 encoder, far below
//     float32 rounding. A non-finite grad_output or attention weight anywhere
//     makes the whole deterministic grad_value NaN (the default path propagates it
//     only to the touched keys).
#pragma once

#include <ATen/OpMathType.h>
#include <c10/macros/Macros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

namespace deform_ext {
namespace cuda {

constexpr int kThreads = 256;
// Minimum resident blocks per SM (register caps of 64 / 128 per thread): the gathers
// are latency bound, so occupancy matters more than keeping every corner in flight.
constexpr int kForwardMinBlocks = 4;
constexpr int kBackwardMinBlocks = 2;
constexpr unsigned kFullMask = 0xffffffffu;

// One level of the flattened multi-scale map; h == 0 marks a level to skip.
struct LevelInfo {
  int64_t start;
  int h, w;
};

// N consecutive elements moved with one aligned load / store.
template <typename T, int N>
struct alignas(sizeof(T) * N) Pack {
  T v[N];
};

template <typename T, int N>
__device__ __forceinline__ Pack<T, N> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, N>*>(p);
}

template <typename T, int N>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, N>& v) {
  *reinterpret_cast<Pack<T, N>*>(p) = v;
}

template <typename acc_t, typename T>
__device__ __forceinline__ acc_t to_acc(T x) {
  return static_cast<acc_t>(x);
}

// Loads spatial_shapes / level_start_index of the num_levels levels into shared
// memory, refusing (h = 0) any level that does not fit in num_keys.
__device__ __forceinline__ void stage_levels(LevelInfo* levels, const int64_t* spatial_shapes,
                                             const int64_t* level_start_index, int num_levels,
                                             int64_t num_keys) {
  for (int l = threadIdx.x; l < num_levels; l += blockDim.x) {
    const int64_t h = spatial_shapes[2 * l], w = spatial_shapes[2 * l + 1];
    const int64_t start = level_start_index[l];
    const bool fits = h > 0 && w > 0 && h <= num_keys && w <= num_keys && start >= 0 &&
                      start <= num_keys && h * w <= num_keys - start && h < (1 << 30) &&
                      w < (1 << 30);
    LevelInfo lv;
    lv.start = fits ? start : 0;
    lv.h = fits ? static_cast<int>(h) : 0;
    lv.w = fits ? static_cast<int>(w) : 0;
    levels[l] = lv;
  }
  __syncthreads();
}

// Bilinear footprint of one location on one level (see bilinear_corners in the CPU
// file). Corner k's key is level.start + idx[k], or idx[k] = -1 outside the map.
template <typename acc_t>
struct Corners {
  int64_t idx[4];
  acc_t wt[4];
  acc_t fx, fy;
};

template <typename acc_t>
__device__ __forceinline__ bool bilinear_corners(acc_t loc_x, acc_t loc_y, const LevelInfo& lv,
                                                 Corners<acc_t>& c) {
  if (lv.h == 0) return false;
  const acc_t x = loc_x * static_cast<acc_t>(lv.w) - acc_t(0.5);
  const acc_t y = loc_y * static_cast<acc_t>(lv.h) - acc_t(0.5);
  if (!(x > acc_t(-1) && y > acc_t(-1) && x < static_cast<acc_t>(lv.w) &&
        y < static_cast<acc_t>(lv.h))) {
    return false;  // also NaN and inf
  }
  const acc_t xf = floor(x), yf = floor(y);
  const int x0 = static_cast<int>(xf), y0 = static_cast<int>(yf);
  c.fx = x - xf;
  c.fy = y - yf;
  const bool x0_in = x0 >= 0, x1_in = x0 + 1 < lv.w, y0_in = y0 >= 0, y1_in = y0 + 1 < lv.h;
  const int64_t r0 = static_cast<int64_t>(y0) * lv.w, r1 = r0 + lv.w;
  c.idx[0] = (y0_in && x0_in) ? r0 + x0 : -1;
  c.idx[1] = (y0_in && x1_in) ? r0 + x0 + 1 : -1;
  c.idx[2] = (y1_in && x0_in) ? r1 + x0 : -1;
  c.idx[3] = (y1_in && x1_in) ? r1 + x0 + 1 : -1;
  c.wt[0] = (1 - c.fy) * (1 - c.fx);
  c.wt[1] = (1 - c.fy) * c.fx;
  c.wt[2] = c.fy * (1 - c.fx);
  c.wt[3] = c.fy * c.fx;
  return true;
}

// Sizes of one call.
struct Dims {
  int64_t bs, num_keys, num_heads, head_dims, num_queries;
  int num_levels, num_points;
  int group;  // lanes per (b, q, head), power of two <= 32
};

// The group of this thread: its (b, q, head) row index (clamped to the last row so
// that spare lanes of the last warp still join every shuffle), its lane, and
// whether it owns real work.
struct GroupPos {
  int64_t row;  // (b * num_queries + q) * num_heads + head
  int lane;
  bool active;
  unsigned mask;  // the group's lanes in its warp, for the shuffles
};

__device__ __forceinline__ GroupPos group_pos(const Dims& d) {
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  const int64_t rows = d.bs * d.num_queries * d.num_heads;
  GroupPos g;
  g.row = tid / d.group;
  g.lane = static_cast<int>(tid % d.group);
  g.active = g.row < rows;
  if (!g.active) g.row = rows - 1;
  const int warp_lane = static_cast<int>(threadIdx.x & 31);
  g.mask = d.group == 32 ? kFullMask
                         : ((1u << d.group) - 1u) << (warp_lane & ~(d.group - 1));
  return g;
}

// ---------------------------------------------------------------------------------
// Forward
// ---------------------------------------------------------------------------------

template <typename scalar_t, typename loc_t, int VEC>
__global__ void __launch_bounds__(kThreads, kForwardMinBlocks)
    ms_deform_attn_forward_kernel(Dims d, const scalar_t* __restrict__ value,
                                  const int64_t* __restrict__ spatial_shapes,
                                  const int64_t* __restrict__ level_start_index,
                                  const loc_t* __restrict__ loc, const loc_t* __restrict__ attn,
                                  scalar_t* __restrict__ out) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ int64_t shared_levels_raw[];
  LevelInfo* levels = reinterpret_cast<LevelInfo*>(shared_levels_raw);
  stage_levels(levels, spatial_shapes, level_start_index, d.num_levels, d.num_keys);

  const GroupPos gp = group_pos(d);
  const int G = d.group;
  const int samples = d.num_levels * d.num_points;
  const int64_t head = gp.row % d.num_heads;
  const int64_t b = gp.row / (d.num_queries * d.num_heads);
  const int64_t hd = d.head_dims, ks = d.num_heads * hd;
  const int64_t nvec = hd / VEC;
  const scalar_t* v_head = value + b * d.num_keys * ks + head * hd;
  const int64_t first = gp.row * samples;

  for (int64_t c0 = 0; c0 < nvec; c0 += G) {  // channel chunks (one for head_dims <= G*VEC)
    const int64_t ch = (c0 + gp.lane) * VEC;
    const bool ch_ok = c0 + gp.lane < nvec;
    acc_t acc[VEC];
#pragma unroll
    for (int k = 0; k < VEC; ++k) acc[k] = acc_t(0);

    for (int s0 = 0; s0 < samples; s0 += G) {
      // Lane j loads sample s0 + j (coalesced), the group walks them by shuffles.
      acc_t my_x = acc_t(0), my_y = acc_t(0), my_a = acc_t(0);
      if (s0 + gp.lane < samples) {
        const int64_t i = first + s0 + gp.lane;
        my_x = to_acc<acc_t>(loc[2 * i]);
        my_y = to_acc<acc_t>(loc[2 * i + 1]);
        my_a = to_acc<acc_t>(attn[i]);
      }
      const int n = min(G, samples - s0);
      for (int j = 0; j < n; ++j) {
        const acc_t lx = __shfl_sync(gp.mask, my_x, j, G);
        const acc_t ly = __shfl_sync(gp.mask, my_y, j, G);
        const acc_t a = __shfl_sync(gp.mask, my_a, j, G);
        const LevelInfo lv = levels[(s0 + j) / d.num_points];
        Corners<acc_t> c;
        if (!ch_ok || !bilinear_corners(lx, ly, lv, c)) continue;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (c.idx[k] < 0) continue;
          const acc_t w = a * c.wt[k];
          const auto v = load_pack<scalar_t, VEC>(v_head + (lv.start + c.idx[k]) * ks + ch);
#pragma unroll
          for (int e = 0; e < VEC; ++e) acc[e] += w * to_acc<acc_t>(v.v[e]);
        }
      }
    }
    if (gp.active && ch_ok) {
      Pack<scalar_t, VEC> o;
#pragma unroll
      for (int e = 0; e < VEC; ++e) o.v[e] = static_cast<scalar_t>(acc[e]);
      store_pack<scalar_t, VEC>(out + gp.row * hd + ch, o);
    }
  }
}

// ---------------------------------------------------------------------------------
// Backward
// ---------------------------------------------------------------------------------

// Power-of-two scale so that num_samples * gmax * amax * scale <= 2^61; 0 when a
// bound is not finite (NaN result); 1 when everything is zero.
__device__ __forceinline__ double fixed_point_scale(double gmax, double amax, double count) {
  if (!(isfinite(gmax) && isfinite(amax))) return 0.0;
  if (gmax == 0.0 || amax == 0.0) return 1.0;
  int eg, ea, ec;
  frexp(gmax, &eg);  // gmax < 2^eg
  frexp(amax, &ea);
  frexp(count, &ec);
  int e = 61 - (eg + ea + ec);
  e = max(-1000, min(1000, e));
  return ldexp(1.0, e);
}

// Scatter targets of grad_value: a float / double buffer (atomicAdd) or, in the
// deterministic mode, 64-bit fixed point. prepare() runs once per thread.
template <typename acc_t>
struct AtomicSink {
  acc_t* buf;
  __device__ __forceinline__ void prepare() {}
  __device__ __forceinline__ void add(int64_t offset, acc_t x) const { atomicAdd(buf + offset, x); }
};

struct FixedPointSink {
  unsigned long long* buf;
  const double* gmax;  // max |grad_output|, on the device
  const double* amax;  // max |attention_weights|, on the device
  double count;        // number of samples
  double scale;        // set by prepare(): a power of two, 0 when a bound is not finite
  __device__ __forceinline__ void prepare() { scale = fixed_point_scale(*gmax, *amax, count); }
  __device__ __forceinline__ void add(int64_t offset, double x) const {
    const long long q = __double2ll_rn(x * scale);
    if (q != 0) atomicAdd(buf + offset, static_cast<unsigned long long>(q));
  }
};

// Adds w * g[0:VEC] at offset. On sm_90+ a float32 buffer takes float4 / float2
// atomics (one instruction per 4 / 2 channels); offset is a multiple of VEC and the
// buffer is freshly allocated, so the vector address is aligned.
template <typename Sink, typename acc_t, int VEC>
__device__ __forceinline__ void scatter_vec(const Sink& sink, int64_t offset, acc_t w,
                                            const acc_t* g) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  constexpr bool kFloatBuf = std::is_same<Sink, AtomicSink<float>>::value;
  if constexpr (kFloatBuf && VEC % 4 == 0) {
#pragma unroll
    for (int e = 0; e < VEC; e += 4) {
      atomicAdd(reinterpret_cast<float4*>(sink.buf + offset + e),
                make_float4(w * g[e], w * g[e + 1], w * g[e + 2], w * g[e + 3]));
    }
  } else if constexpr (kFloatBuf && VEC % 2 == 0) {
#pragma unroll
    for (int e = 0; e < VEC; e += 2) {
      atomicAdd(reinterpret_cast<float2*>(sink.buf + offset + e),
                make_float2(w * g[e], w * g[e + 1]));
    }
  } else
#endif
  {
#pragma unroll
    for (int e = 0; e < VEC; ++e) sink.add(offset + e, w * g[e]);
  }
}

template <typename scalar_t, typename loc_t, int VEC, typename Sink>
__global__ void __launch_bounds__(kThreads, kBackwardMinBlocks)
    ms_deform_attn_backward_kernel(Dims d, const scalar_t* __restrict__ grad_out,
                                   const scalar_t* __restrict__ value,
                                   const int64_t* __restrict__ spatial_shapes,
                                   const int64_t* __restrict__ level_start_index,
                                   const loc_t* __restrict__ loc, const loc_t* __restrict__ attn,
                                   Sink sink, loc_t* __restrict__ grad_loc,
                                   loc_t* __restrict__ grad_attn) {
  using acc_t = at::opmath_type<scalar_t>;
  sink.prepare();
  extern __shared__ int64_t shared_levels_raw[];
  LevelInfo* levels = reinterpret_cast<LevelInfo*>(shared_levels_raw);
  stage_levels(levels, spatial_shapes, level_start_index, d.num_levels, d.num_keys);

  const GroupPos gp = group_pos(d);
  const int G = d.group;
  const int samples = d.num_levels * d.num_points;
  const int64_t head = gp.row % d.num_heads;
  const int64_t b = gp.row / (d.num_queries * d.num_heads);
  const int64_t hd = d.head_dims, ks = d.num_heads * hd;
  const int64_t nvec = hd / VEC;
  const int64_t v_base = b * d.num_keys * ks + head * hd;
  const scalar_t* v_head = value + v_base;
  const scalar_t* g_row = grad_out + gp.row * hd;
  const int64_t first = gp.row * samples;

  // The first channel chunk of grad_out stays in registers (the only one when
  // head_dims <= G * VEC); further chunks are re-read per sample (L1 hits).
  const bool ch0_ok = gp.active && gp.lane < nvec;
  acc_t g0[VEC];
  {
    Pack<scalar_t, VEC> p;
    if (ch0_ok) p = load_pack<scalar_t, VEC>(g_row + gp.lane * VEC);
#pragma unroll
    for (int e = 0; e < VEC; ++e) g0[e] = ch0_ok ? to_acc<acc_t>(p.v[e]) : acc_t(0);
  }

  for (int s0 = 0; s0 < samples; s0 += G) {
    acc_t my_x = acc_t(0), my_y = acc_t(0), my_a = acc_t(0);
    const bool my_ok = s0 + gp.lane < samples;
    if (my_ok) {
      const int64_t i = first + s0 + gp.lane;
      my_x = to_acc<acc_t>(loc[2 * i]);
      my_y = to_acc<acc_t>(loc[2 * i + 1]);
      my_a = to_acc<acc_t>(attn[i]);
    }
    acc_t my_ga = acc_t(0), my_gx = acc_t(0), my_gy = acc_t(0);
    const int n = min(G, samples - s0);
    for (int j = 0; j < n; ++j) {
      const acc_t lx = __shfl_sync(gp.mask, my_x, j, G);
      const acc_t ly = __shfl_sync(gp.mask, my_y, j, G);
      const acc_t a = __shfl_sync(gp.mask, my_a, j, G);
      const LevelInfo lv = levels[(s0 + j) / d.num_points];
      Corners<acc_t> c;
      // Uniform across the group: every lane sees the same location.
      if (!bilinear_corners(lx, ly, lv, c)) continue;
      acc_t dot[4] = {acc_t(0), acc_t(0), acc_t(0), acc_t(0)};
      const scalar_t* v_level = v_head + lv.start * ks;
      for (int64_t cv = gp.lane; cv < nvec; cv += G) {
        const int64_t ch = cv * VEC;
        acc_t g[VEC];
        if (cv == gp.lane) {
#pragma unroll
          for (int e = 0; e < VEC; ++e) g[e] = g0[e];
        } else {
          const auto p = load_pack<scalar_t, VEC>(g_row + ch);
#pragma unroll
          for (int e = 0; e < VEC; ++e) g[e] = to_acc<acc_t>(p.v[e]);
        }
#pragma unroll
        for (int k = 0; k < 4; ++k) {
          if (c.idx[k] < 0) continue;
          const auto v = load_pack<scalar_t, VEC>(v_level + c.idx[k] * ks + ch);
          acc_t s = acc_t(0);
#pragma unroll
          for (int e = 0; e < VEC; ++e) s += g[e] * to_acc<acc_t>(v.v[e]);
          dot[k] += s;
          if (gp.active) {
            scatter_vec<Sink, acc_t, VEC>(sink, v_base + (lv.start + c.idx[k]) * ks + ch,
                                          a * c.wt[k], g);
          }
        }
      }
      // Partial gradients over this lane's channels; linear in the dots.
      acc_t ga = c.wt[0] * dot[0] + c.wt[1] * dot[1] + c.wt[2] * dot[2] + c.wt[3] * dot[3];
      acc_t gx = a * static_cast<acc_t>(lv.w) *
                 ((1 - c.fy) * (dot[1] - dot[0]) + c.fy * (dot[3] - dot[2]));
      acc_t gy = a * static_cast<acc_t>(lv.h) *
                 ((1 - c.fx) * (dot[2] - dot[0]) + c.fx * (dot[3] - dot[1]));
      for (int m = G / 2; m > 0; m /= 2) {
        ga += __shfl_xor_sync(gp.mask, ga, m, G);
        gx += __shfl_xor_sync(gp.mask, gx, m, G);
        gy += __shfl_xor_sync(gp.mask, gy, m, G);
      }
      if (gp.lane == j) {
        my_ga = ga;
        my_gx = gx;
        my_gy = gy;
      }
    }
    if (gp.active && my_ok) {  // invalid samples keep their zeros
      const int64_t i = first + s0 + gp.lane;
      grad_attn[i] = static_cast<loc_t>(my_ga);
      grad_loc[2 * i] = static_cast<loc_t>(my_gx);
      grad_loc[2 * i + 1] = static_cast<loc_t>(my_gy);
    }
  }
}

// Deterministic mode: int64 fixed point -> value dtype.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads)
    fixed_point_to_value_kernel(const unsigned long long* __restrict__ buf, int64_t n,
                                const double* __restrict__ gmax, const double* __restrict__ amax,
                                double count, scalar_t* __restrict__ out) {
  const double scale = fixed_point_scale(*gmax, *amax, count);
  const double inv = scale == 0.0 ? __longlong_as_double(0x7ff8000000000000LL) : 1.0 / scale;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += stride) {
    out[i] = static_cast<scalar_t>(static_cast<double>(static_cast<long long>(buf[i])) * inv);
  }
}

}  // namespace cuda
}  // namespace deform_ext
