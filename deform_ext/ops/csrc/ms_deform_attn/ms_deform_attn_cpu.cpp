// CPU kernels of multi-scale deformable attention (forward and backward).
//
// Every kernel computes in float32 (float64 for float64 values); bfloat16 inputs
// are widened first, so sums accumulate in float. Inner loops run over the
// contiguous head_dims channels of one (key, head) row and are vectorised with
// `omp simd`. Parallel work is split so that no two threads write the same output
// element and each element's sum has a fixed order: results are bitwise
// reproducible for any thread count.
#include "ms_deform_attn/ms_deform_attn.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

// Hot loops get an AVX2 + FMA clone next to the baseline one, picked at load time
// (GCC on x86-64); other compilers and targets build the baseline only.
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define DEFORM_EXT_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define DEFORM_EXT_SIMD_CLONES
#endif

namespace deform_ext {

namespace {

struct Level {
  int64_t h, w, start;
};

// Reads spatial_shapes / level_start_index and refuses any level that would index
// outside value's num_keys rows, so the kernels below never read out of bounds.
std::vector<Level> read_levels(const at::Tensor& spatial_shapes,
                               const at::Tensor& level_start_index, int64_t num_keys) {
  const auto shapes = spatial_shapes.contiguous();
  const auto starts = level_start_index.contiguous();
  const int64_t* s = shapes.data_ptr<int64_t>();
  const int64_t* st = starts.data_ptr<int64_t>();
  std::vector<Level> levels(shapes.size(0));
  for (size_t l = 0; l < levels.size(); ++l) {
    const Level lv{s[2 * l], s[2 * l + 1], st[l]};
    const bool fits = lv.h > 0 && lv.w > 0 && lv.h <= num_keys && lv.w <= num_keys &&
                      lv.start >= 0 && lv.start + lv.h * lv.w <= num_keys;
    TORCH_CHECK(fits, "ms_deform_attn: level ", l, " of spatial_shapes ", spatial_shapes.sizes(),
                " is (h=", lv.h, ", w=", lv.w, ") starting at key ", lv.start,
                ", which does not fit in value's ", num_keys, " keys");
    levels[l] = lv;
  }
  return levels;
}

// Bilinear footprint of one sampling location on one level. Corners are ordered
// (y0, x0), (y0, x1), (y1, x0), (y1, x1); index is the pixel's flat position in the
// level, or -1 when that corner lies outside the map (zero padding).
template <typename T>
struct Corners {
  int64_t index[4];
  T weight[4];
  T fx, fy;  // position inside the cell, in [0, 1)
};

// grid_sample's convention with align_corners=False: pixel = loc * size - 0.5.
// Returns false when no corner is inside the map; NaN and inf fail the test too.
template <typename T>
inline bool bilinear_corners(T loc_x, T loc_y, const Level& lv, Corners<T>& c) {
  const T x = loc_x * static_cast<T>(lv.w) - T(0.5);
  const T y = loc_y * static_cast<T>(lv.h) - T(0.5);
  if (!(x > T(-1) && y > T(-1) && x < static_cast<T>(lv.w) && y < static_cast<T>(lv.h))) {
    return false;
  }
  const T xf = std::floor(x), yf = std::floor(y);
  const int64_t x0 = static_cast<int64_t>(xf), y0 = static_cast<int64_t>(yf);
  c.fx = x - xf;
  c.fy = y - yf;
  const bool x0_in = x0 >= 0, x1_in = x0 + 1 < lv.w, y0_in = y0 >= 0, y1_in = y0 + 1 < lv.h;
  c.index[0] = (y0_in && x0_in) ? y0 * lv.w + x0 : -1;
  c.index[1] = (y0_in && x1_in) ? y0 * lv.w + x0 + 1 : -1;
  c.index[2] = (y1_in && x0_in) ? (y0 + 1) * lv.w + x0 : -1;
  c.index[3] = (y1_in && x1_in) ? (y0 + 1) * lv.w + x0 + 1 : -1;
  c.weight[0] = (1 - c.fy) * (1 - c.fx);
  c.weight[1] = (1 - c.fy) * c.fx;
  c.weight[2] = c.fy * (1 - c.fx);
  c.weight[3] = c.fy * c.fx;
  return true;
}

// Sizes of one call; value rows are (key, head) pairs of head_dims channels.
struct Dims {
  int64_t bs, num_keys, num_heads, head_dims, num_queries, num_levels, num_points;
  int64_t key_stride() const { return num_heads * head_dims; }
  int64_t samples_per_head() const { return num_levels * num_points; }
};

Dims make_dims(const at::Tensor& value, const at::Tensor& sampling_locations) {
  return {value.size(0),
          value.size(1),
          value.size(2),
          value.size(3),
          sampling_locations.size(1),
          sampling_locations.size(3),
          sampling_locations.size(4)};
}

// Rows (b, q) per parallel chunk so that each chunk has roughly GRAIN_SIZE work.
int64_t row_grain(const Dims& d) {
  const int64_t work = std::max<int64_t>(1, d.num_heads * d.samples_per_head() * 4 * d.head_dims);
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / work);
}

// out[b, q, h, :] = sum_{l, p} attn * bilinear(value[b, level l, h, :], loc), for the
// (b, q) rows in [begin, end).
template <typename T>
DEFORM_EXT_SIMD_CLONES void forward_rows(const Dims& d, const std::vector<Level>& levels,
                                         const T* value, const T* loc, const T* attn, T* out,
                                         int64_t begin, int64_t end) {
  const int64_t hd = d.head_dims, ks = d.key_stride();
  const std::vector<T> zeros(hd, T(0));  // stands in for corners outside the map
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / d.num_queries;
    for (int64_t head = 0; head < d.num_heads; ++head) {
      T* o = out + (row * d.num_heads + head) * hd;
      std::fill(o, o + hd, T(0));
      const T* v_head = value + b * d.num_keys * ks + head * hd;
      const int64_t first = (row * d.num_heads + head) * d.samples_per_head();
      for (int64_t l = 0; l < d.num_levels; ++l) {
        const Level& lv = levels[l];
        for (int64_t p = 0; p < d.num_points; ++p) {
          const int64_t i = first + l * d.num_points + p;
          Corners<T> c;
          if (!bilinear_corners(loc[2 * i], loc[2 * i + 1], lv, c)) continue;
          const T* v[4];
          T w[4];
          for (int k = 0; k < 4; ++k) {
            v[k] = c.index[k] < 0 ? zeros.data() : v_head + (lv.start + c.index[k]) * ks;
            w[k] = attn[i] * c.weight[k];
          }
#pragma omp simd
          for (int64_t ch = 0; ch < hd; ++ch) {
            o[ch] += w[0] * v[0][ch] + w[1] * v[1][ch] + w[2] * v[2][ch] + w[3] * v[3][ch];
          }
        }
      }
    }
  }
}

// Gradients of sampling_locations and attention_weights for the (b, q) rows in
// [begin, end); each row owns its samples, so rows run in parallel without conflicts.
template <typename T>
DEFORM_EXT_SIMD_CLONES void backward_sample_rows(const Dims& d, const std::vector<Level>& levels,
                                                 const T* grad_out, const T* value, const T* loc,
                                                 const T* attn, T* grad_loc, T* grad_attn,
                                                 int64_t begin, int64_t end) {
  const int64_t hd = d.head_dims, ks = d.key_stride();
  const std::vector<T> zeros(hd, T(0));
  for (int64_t row = begin; row < end; ++row) {
    const int64_t b = row / d.num_queries;
    for (int64_t head = 0; head < d.num_heads; ++head) {
      const T* g = grad_out + (row * d.num_heads + head) * hd;
      const T* v_head = value + b * d.num_keys * ks + head * hd;
      const int64_t first = (row * d.num_heads + head) * d.samples_per_head();
      for (int64_t l = 0; l < d.num_levels; ++l) {
        const Level& lv = levels[l];
        for (int64_t p = 0; p < d.num_points; ++p) {
          const int64_t i = first + l * d.num_points + p;
          Corners<T> c;
          if (!bilinear_corners(loc[2 * i], loc[2 * i + 1], lv, c)) {
            grad_loc[2 * i] = grad_loc[2 * i + 1] = grad_attn[i] = T(0);
            continue;
          }
          const T* v[4];
          for (int k = 0; k < 4; ++k) {
            v[k] = c.index[k] < 0 ? zeros.data() : v_head + (lv.start + c.index[k]) * ks;
          }
          T d0 = 0, d1 = 0, d2 = 0, d3 = 0;  // <grad_out, corner k's value row>
#pragma omp simd reduction(+ : d0, d1, d2, d3)
          for (int64_t ch = 0; ch < hd; ++ch) {
            d0 += g[ch] * v[0][ch];
            d1 += g[ch] * v[1][ch];
            d2 += g[ch] * v[2][ch];
            d3 += g[ch] * v[3][ch];
          }
          grad_attn[i] = c.weight[0] * d0 + c.weight[1] * d1 + c.weight[2] * d2 + c.weight[3] * d3;
          const T a = attn[i];
          grad_loc[2 * i] = a * static_cast<T>(lv.w) * ((1 - c.fy) * (d1 - d0) + c.fy * (d3 - d2));
          grad_loc[2 * i + 1] =
              a * static_cast<T>(lv.h) * ((1 - c.fx) * (d2 - d0) + c.fx * (d3 - d1));
        }
      }
    }
  }
}

// How the grad_value scatter is split: (b, head) pairs, and channel slices of
// `width` channels when there are too few pairs to keep every thread busy.
struct ValueTasks {
  int64_t slices, width;
};

ValueTasks value_tasks(const Dims& d) {
  const int64_t pairs = d.bs * d.num_heads, hd = std::max<int64_t>(d.head_dims, 1);
  const int64_t want = 2 * static_cast<int64_t>(at::get_num_threads());
  const int64_t slices = pairs >= want ? 1 : std::min((want + pairs - 1) / pairs, (hd + 15) / 16);
  const int64_t width = ((hd + slices - 1) / slices + 15) / 16 * 16;  // whole vectors
  return {(hd + width - 1) / width, width};
}

// Gradient of value, a scatter, for tasks [begin, end) of value_tasks(d). A task is
// a (b, head, channel slice) triple that owns a disjoint slice of grad_value and
// visits (q, l, p, corner) in a fixed order, so the sums are deterministic. It sums
// into a dense (num_keys, width) buffer, then copies that out: grad_value's own rows
// of one head lie num_heads * head_dims apart, a power-of-two stride that would
// map them onto a few cache sets.
template <typename T>
DEFORM_EXT_SIMD_CLONES void backward_value_tasks(const Dims& d, const std::vector<Level>& levels,
                                                 const ValueTasks& tasks, const T* grad_out,
                                                 const T* loc, const T* attn, T* grad_value,
                                                 int64_t begin, int64_t end) {
  const int64_t hd = d.head_dims, ks = d.key_stride();
  std::vector<T> acc(d.num_keys * tasks.width);
  for (int64_t task = begin; task < end; ++task) {
    const int64_t pair = task / tasks.slices, c0 = (task % tasks.slices) * tasks.width;
    const int64_t n = std::min(tasks.width, hd - c0);
    const int64_t b = pair / d.num_heads, head = pair % d.num_heads;
    std::fill(acc.begin(), acc.end(), T(0));
    for (int64_t q = 0; q < d.num_queries; ++q) {
      const int64_t row = b * d.num_queries + q;
      const T* g = grad_out + (row * d.num_heads + head) * hd + c0;
      const int64_t first = (row * d.num_heads + head) * d.samples_per_head();
      for (int64_t l = 0; l < d.num_levels; ++l) {
        const Level& lv = levels[l];
        for (int64_t p = 0; p < d.num_points; ++p) {
          const int64_t i = first + l * d.num_points + p;
          Corners<T> c;
          if (!bilinear_corners(loc[2 * i], loc[2 * i + 1], lv, c)) continue;
          for (int k = 0; k < 4; ++k) {
            if (c.index[k] < 0) continue;
            const T w = attn[i] * c.weight[k];
            T* dst = acc.data() + (lv.start + c.index[k]) * n;
#pragma omp simd
            for (int64_t ch = 0; ch < n; ++ch) dst[ch] += w * g[ch];
          }
        }
      }
    }
    T* gv_head = grad_value + b * d.num_keys * ks + head * hd + c0;
    for (int64_t key = 0; key < d.num_keys; ++key) {
      std::copy_n(acc.data() + key * n, n, gv_head + key * ks);
    }
  }
}

}  // namespace

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights) {
  check_ms_deform_attn_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights);
  const auto opmath = ms_deform_attn_opmath_type(value);
  const auto v = value.to(opmath).contiguous();
  const auto loc = sampling_locations.to(opmath).contiguous();
  const auto attn = attention_weights.to(opmath).contiguous();
  const Dims d = make_dims(value, sampling_locations);
  const auto levels = read_levels(spatial_shapes, level_start_index, d.num_keys);
  auto out = at::empty({d.bs, d.num_queries, d.key_stride()}, v.options());
  AT_DISPATCH_FLOATING_TYPES(opmath, "ms_deform_attn_forward_cpu", [&] {
    at::parallel_for(0, d.bs * d.num_queries, row_grain(d), [&](int64_t begin, int64_t end) {
      forward_rows<scalar_t>(d, levels, v.const_data_ptr<scalar_t>(),
                             loc.const_data_ptr<scalar_t>(), attn.const_data_ptr<scalar_t>(),
                             out.data_ptr<scalar_t>(), begin, end);
    });
  });
  return out.to(value.scalar_type());
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_ms_deform_attn_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights);
  const Dims d = make_dims(value, sampling_locations);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({d.bs, d.num_queries, d.key_stride()}),
              "ms_deform_attn_backward: grad_output must have shape (bs, num_queries, "
              "num_heads * head_dims) = (", d.bs, ", ", d.num_queries, ", ", d.key_stride(),
              "), got ", grad_output.sizes());
  TORCH_CHECK(grad_output.device() == value.device(),
              "ms_deform_attn_backward: grad_output is on ", grad_output.device(),
              " but value is on ", value.device());
  const auto opmath = ms_deform_attn_opmath_type(value);
  const auto g = grad_output.to(opmath).contiguous();
  const auto v = value.to(opmath).contiguous();
  const auto loc = sampling_locations.to(opmath).contiguous();
  const auto attn = attention_weights.to(opmath).contiguous();
  const auto levels = read_levels(spatial_shapes, level_start_index, d.num_keys);
  auto grad_value = at::empty_like(v);  // every element is written once
  auto grad_loc = at::empty_like(loc);
  auto grad_attn = at::empty_like(attn);
  const ValueTasks tasks = value_tasks(d);
  AT_DISPATCH_FLOATING_TYPES(opmath, "ms_deform_attn_backward_cpu", [&] {
    const auto* gp = g.const_data_ptr<scalar_t>();
    const auto* vp = v.const_data_ptr<scalar_t>();
    const auto* lp = loc.const_data_ptr<scalar_t>();
    const auto* ap = attn.const_data_ptr<scalar_t>();
    auto* gl = grad_loc.data_ptr<scalar_t>();
    auto* ga = grad_attn.data_ptr<scalar_t>();
    auto* gv = grad_value.data_ptr<scalar_t>();
    at::parallel_for(0, d.bs * d.num_queries, row_grain(d), [&](int64_t begin, int64_t end) {
      backward_sample_rows<scalar_t>(d, levels, gp, vp, lp, ap, gl, ga, begin, end);
    });
    const int64_t num_tasks = d.bs * d.num_heads * tasks.slices;
    at::parallel_for(0, num_tasks, 1, [&](int64_t begin, int64_t end) {
      backward_value_tasks<scalar_t>(d, levels, tasks, gp, lp, ap, gv, begin, end);
    });
  });
  return {grad_value.to(value.scalar_type()), grad_loc.to(sampling_locations.scalar_type()),
          grad_attn.to(attention_weights.scalar_type())};
}

}  // namespace deform_ext

TORCH_LIBRARY_IMPL(deform_ext, CPU, m) {
  m.impl("ms_deform_attn", &deform_ext::ms_deform_attn_forward_cpu);
  m.impl("ms_deform_attn_backward", &deform_ext::ms_deform_attn_backward_cpu);
}
