// Multi-scale deformable attention (ms_deform_attn): declarations shared by the CPU
// kernels, the input checks and the CUDA launchers.
//
// Shapes (mmcv conventions):
//   value               (bs, num_keys, num_heads, head_dims)
//   spatial_shapes      (num_levels, 2) int64, rows (h, w)
//   level_start_index   (num_levels,) int64, exclusive cumsum of h * w
//   sampling_locations  (bs, num_queries, num_heads, num_levels, num_points, 2), (x, y) in [0, 1]
//   attention_weights   (bs, num_queries, num_heads, num_levels, num_points)
//   output              (bs, num_queries, num_heads * head_dims)
#pragma once

#include <ATen/core/Tensor.h>

#include <tuple>

namespace deform_ext {

// Checks ranks, matching sizes, devices and dtypes (host-side metadata only, no
// sync); throws c10::Error naming the offending tensor and its shape.
void check_ms_deform_attn_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index,
                                 const at::Tensor& sampling_locations,
                                 const at::Tensor& attention_weights);

// The dtype the kernels compute in: float64 for float64 values, float32 otherwise.
at::ScalarType ms_deform_attn_opmath_type(const at::Tensor& value);

at::Tensor ms_deform_attn_forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index,
                                      const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights);

// Returns (grad_value, grad_sampling_locations, grad_attention_weights) in the dtypes
// of value, sampling_locations and attention_weights.
std::tuple<at::Tensor, at::Tensor, at::Tensor> ms_deform_attn_backward_cpu(
    const at::Tensor& grad_output, const at::Tensor& value, const at::Tensor& spatial_shapes,
    const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
    const at::Tensor& attention_weights);

}  // namespace deform_ext
