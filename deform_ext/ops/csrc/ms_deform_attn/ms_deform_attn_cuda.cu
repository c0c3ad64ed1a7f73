// CUDA launchers of multi-scale deformable attention: argument checks (the shared
// metadata checks, no host synchronisation), dtype dispatch (float32, float64,
// float16, bfloat16 values; locations / weights in float32 or value's dtype),
// vector-width choice, the current stream (c10::cuda::getCurrentCUDAStream, which
// at::cuda re-exports; c10/cuda/CUDAStream.h avoids the cuBLAS / cuSPARSE headers
// that ATen/cuda/CUDAContext.h pulls in) and device guard. Device code is in
// ms_deform_attn_kernel.cuh. Nothing here reads device memory back to the host, so
// the ops are CUDA-graph safe; spatial_shapes / level_start_index are validated on
// the device (a level that does not fit in value's keys is skipped, never read).
#include "ms_deform_attn/ms_deform_attn.h"
#include "ms_deform_attn/ms_deform_attn_kernel.cuh"

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <limits>
#include <tuple>

namespace deform_ext {

namespace {

using cuda::Dims;
using cuda::kThreads;
using cuda::LevelInfo;

constexpr int64_t kMaxLevels = 2048;  // shared-memory staging: 16 bytes per level

// Lanes per (b, q, head): enough to give each VEC-wide channel chunk a lane, as a
// power of two between 1 and 32.
int group_size(int64_t nvec) {
  int g = 1;
  while (g < 32 && g < nvec) g *= 2;
  return g;
}

bool aligned(const void* p, int64_t bytes) {
  return reinterpret_cast<std::uintptr_t>(p) % static_cast<std::uintptr_t>(bytes) == 0;
}

// Widest vector (16 bytes, else 2 elements, else 1) that divides head_dims and
// keeps every per-row pointer of the listed tensors aligned.
template <typename scalar_t>
int pick_vec(int64_t head_dims, std::initializer_list<const void*> ptrs) {
  constexpr int wide = 16 / static_cast<int>(sizeof(scalar_t));
  for (int v : {wide, 2, 1}) {
    if (v > wide || head_dims % v != 0) continue;
    bool ok = true;
    for (const void* p : ptrs) ok = ok && aligned(p, v * static_cast<int64_t>(sizeof(scalar_t)));
    if (ok) return v;
  }
  return 1;
}

// Calls f(std::integral_constant<int, VEC>) for the chosen width.
template <typename scalar_t, typename F>
void with_vec(int vec, F&& f) {
  constexpr int wide = 16 / static_cast<int>(sizeof(scalar_t));
  if (vec == wide) {
    f(std::integral_constant<int, wide>{});
  } else if (vec == 2) {
    f(std::integral_constant<int, 2>{});
  } else {
    f(std::integral_constant<int, 1>{});
  }
}

Dims make_dims(const at::Tensor& value, const at::Tensor& loc) {
  Dims d;
  d.bs = value.size(0);
  d.num_keys = value.size(1);
  d.num_heads = value.size(2);
  d.head_dims = value.size(3);
  d.num_queries = loc.size(1);
  d.num_levels = static_cast<int>(loc.size(3));
  d.num_points = static_cast<int>(loc.size(4));
  d.group = 1;
  return d;
}

void check_cuda_inputs(const at::Tensor& value, const at::Tensor& loc) {
  TORCH_CHECK(value.is_cuda(), "ms_deform_attn (CUDA): value must be a CUDA tensor, got ",
              value.device());
  TORCH_CHECK(loc.size(3) <= kMaxLevels, "ms_deform_attn (CUDA): at most ", kMaxLevels,
              " levels are supported, got ", loc.size(3));
  TORCH_CHECK(loc.size(3) * loc.size(4) <= std::numeric_limits<int>::max(),
              "ms_deform_attn (CUDA): num_levels * num_points too large: ", loc.sizes());
}

// Locations and weights in one dtype: value's dtype when both have it, else float32.
at::ScalarType loc_dtype(const at::Tensor& loc, const at::Tensor& attn) {
  return loc.scalar_type() == attn.scalar_type() ? loc.scalar_type() : at::kFloat;
}

// Blocks for rows * group threads; the launch configuration of both kernels.
dim3 grid_for(const Dims& d) {
  const int64_t threads = d.bs * d.num_queries * d.num_heads * d.group;
  const int64_t blocks = (threads + kThreads - 1) / kThreads;
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(),
              "ms_deform_attn (CUDA): too many (batch, query, head) rows: ", threads / d.group);
  return dim3(static_cast<unsigned>(blocks));
}

size_t shared_bytes(const Dims& d) { return static_cast<size_t>(d.num_levels) * sizeof(LevelInfo); }

}  // namespace

at::Tensor ms_deform_attn_forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                       const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations,
                                       const at::Tensor& attention_weights) {
  check_ms_deform_attn_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights);
  check_cuda_inputs(value, sampling_locations);
  const c10::cuda::CUDAGuard guard(value.device());
  Dims d = make_dims(value, sampling_locations);
  const auto ldt = loc_dtype(sampling_locations, attention_weights);
  const auto v = value.contiguous();
  const auto shapes = spatial_shapes.contiguous();
  const auto starts = level_start_index.contiguous();
  const auto loc = sampling_locations.to(ldt).contiguous();
  const auto attn = attention_weights.to(ldt).contiguous();
  auto out = at::empty({d.bs, d.num_queries, d.num_heads * d.head_dims}, v.options());
  if (out.numel() == 0) return out;
  if (v.numel() == 0 || d.num_levels == 0 || d.num_points == 0) return out.zero_();
  auto stream = c10::cuda::getCurrentCUDAStream();

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v.scalar_type(),
                                  "ms_deform_attn_forward_cuda", [&] {
    const int vec = pick_vec<scalar_t>(d.head_dims, {v.const_data_ptr(), out.const_data_ptr()});
    with_vec<scalar_t>(vec, [&](auto vec_c) {
      constexpr int VEC = decltype(vec_c)::value;
      d.group = group_size(d.head_dims / VEC);
      const dim3 grid = grid_for(d);
      auto launch = [&](auto* loc_ptr, auto* attn_ptr) {
        using loc_t = std::remove_const_t<std::remove_pointer_t<decltype(loc_ptr)>>;
        cuda::ms_deform_attn_forward_kernel<scalar_t, loc_t, VEC>
            <<<grid, kThreads, shared_bytes(d), stream>>>(
                d, v.const_data_ptr<scalar_t>(), shapes.const_data_ptr<int64_t>(),
                starts.const_data_ptr<int64_t>(), loc_ptr, attn_ptr, out.data_ptr<scalar_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (ldt == v.scalar_type()) {
        launch(loc.const_data_ptr<scalar_t>(), attn.const_data_ptr<scalar_t>());
      } else {
        launch(loc.const_data_ptr<float>(), attn.const_data_ptr<float>());
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cuda(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights) {
  check_ms_deform_attn_inputs(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights);
  check_cuda_inputs(value, sampling_locations);
  Dims d = make_dims(value, sampling_locations);
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({d.bs, d.num_queries,
                                                       d.num_heads * d.head_dims}),
              "ms_deform_attn_backward: grad_output must have shape (bs, num_queries, "
              "num_heads * head_dims) = (", d.bs, ", ", d.num_queries, ", ",
              d.num_heads * d.head_dims, "), got ", grad_output.sizes());
  TORCH_CHECK(grad_output.device() == value.device(),
              "ms_deform_attn_backward: grad_output is on ", grad_output.device(),
              " but value is on ", value.device());
  const c10::cuda::CUDAGuard guard(value.device());
  const auto ldt = loc_dtype(sampling_locations, attention_weights);
  const auto g = grad_output.to(value.scalar_type()).contiguous();
  const auto v = value.contiguous();
  const auto shapes = spatial_shapes.contiguous();
  const auto starts = level_start_index.contiguous();
  const auto loc = sampling_locations.to(ldt).contiguous();
  const auto attn = attention_weights.to(ldt).contiguous();
  const auto opmath = ms_deform_attn_opmath_type(value);
  const bool deterministic = at::globalContext().deterministicAlgorithms();

  auto grad_loc = at::zeros_like(loc);
  auto grad_attn = at::zeros_like(attn);
  auto finish = [&](const at::Tensor& gv) {
    return std::make_tuple(gv.to(value.scalar_type()),
                           grad_loc.to(sampling_locations.scalar_type()),
                           grad_attn.to(attention_weights.scalar_type()));
  };
  if (g.numel() == 0 || v.numel() == 0 || d.num_levels == 0 || d.num_points == 0) {
    return finish(at::zeros_like(v));
  }
  auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t num_samples = loc.numel() / 2;

  // grad_value's scatter buffer: the value tensor itself for float32 / float64, a
  // float32 one for float16 / bfloat16, int64 fixed point in the deterministic mode.
  at::Tensor gv_buf, gmax, amax;
  if (deterministic) {
    gv_buf = at::zeros(v.sizes(), v.options().dtype(at::kLong));
    const double inf = std::numeric_limits<double>::infinity();
    gmax = at::linalg_vector_norm(g, inf, std::nullopt, false, opmath).to(at::kDouble);
    amax = at::linalg_vector_norm(attn, inf, std::nullopt, false, opmath).to(at::kDouble);
  } else {
    gv_buf = at::zeros(v.sizes(), v.options().dtype(opmath));
  }

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v.scalar_type(),
                                  "ms_deform_attn_backward_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const int vec = pick_vec<scalar_t>(d.head_dims, {v.const_data_ptr(), g.const_data_ptr()});
    with_vec<scalar_t>(vec, [&](auto vec_c) {
      constexpr int VEC = decltype(vec_c)::value;
      d.group = group_size(d.head_dims / VEC);
      const dim3 grid = grid_for(d);
      auto launch = [&](auto sink, auto* loc_ptr, auto* attn_ptr) {
        using loc_t = std::remove_const_t<std::remove_pointer_t<decltype(loc_ptr)>>;
        cuda::ms_deform_attn_backward_kernel<scalar_t, loc_t, VEC, decltype(sink)>
            <<<grid, kThreads, shared_bytes(d), stream>>>(
                d, g.const_data_ptr<scalar_t>(), v.const_data_ptr<scalar_t>(),
                shapes.const_data_ptr<int64_t>(), starts.const_data_ptr<int64_t>(), loc_ptr,
                attn_ptr, sink, grad_loc.data_ptr<loc_t>(), grad_attn.data_ptr<loc_t>());
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      auto launch_sink = [&](auto sink) {
        if (ldt == v.scalar_type()) {
          launch(sink, loc.const_data_ptr<scalar_t>(), attn.const_data_ptr<scalar_t>());
        } else {
          launch(sink, loc.const_data_ptr<float>(), attn.const_data_ptr<float>());
        }
      };
      if (deterministic) {
        cuda::FixedPointSink sink{
            reinterpret_cast<unsigned long long*>(gv_buf.data_ptr<int64_t>()),
            gmax.const_data_ptr<double>(), amax.const_data_ptr<double>(),
            static_cast<double>(num_samples), 0.0};
        launch_sink(sink);
      } else {
        launch_sink(cuda::AtomicSink<acc_t>{gv_buf.data_ptr<acc_t>()});
      }
    });
  });

  if (!deterministic) return finish(gv_buf);
  auto grad_value = at::empty_like(v);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, v.scalar_type(),
                                  "ms_deform_attn_backward_cuda_fixed_point", [&] {
    const int64_t n = v.numel();
    const int64_t max_blocks = 4 * 1024;
    const int blocks = static_cast<int>(std::min<int64_t>((n + kThreads - 1) / kThreads,
                                                          max_blocks));
    cuda::fixed_point_to_value_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        reinterpret_cast<const unsigned long long*>(gv_buf.const_data_ptr<int64_t>()), n,
        gmax.const_data_ptr<double>(), amax.const_data_ptr<double>(),
        static_cast<double>(num_samples), grad_value.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return finish(grad_value);
}

}  // namespace deform_ext

TORCH_LIBRARY_IMPL(deform_ext, CUDA, m) {
  m.impl("ms_deform_attn", &deform_ext::ms_deform_attn_forward_cuda);
  m.impl("ms_deform_attn_backward", &deform_ext::ms_deform_attn_backward_cuda);
}
