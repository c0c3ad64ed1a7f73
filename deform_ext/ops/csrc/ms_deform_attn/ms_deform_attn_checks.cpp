// Device-agnostic argument checks for multi-scale deformable attention. They read
// tensor metadata only, so they are safe to run before a CUDA launch; the Python
// functional adds the data-dependent checks (spatial_shapes against num_keys).
#include "ms_deform_attn/ms_deform_attn.h"

#include <c10/util/Exception.h>

namespace deform_ext {

namespace {

void check_rank(const at::Tensor& t, const char* name, int64_t rank, const char* layout) {
  TORCH_CHECK(t.dim() == rank, "ms_deform_attn: ", name, " must have shape ", layout, ", got ",
              t.sizes());
}

void check_size(const at::Tensor& t, const char* name, int64_t dim, int64_t expected,
                const char* what) {
  TORCH_CHECK(t.size(dim) == expected, "ms_deform_attn: ", name, " has shape ", t.sizes(),
              " but its dim ", dim, " must equal ", what, " = ", expected);
}

void check_float_arg(const at::Tensor& t, const char* name, const at::Tensor& value) {
  const auto v = value.scalar_type();
  const auto s = t.scalar_type();
  const bool reduced = v == at::kBFloat16 || v == at::kHalf;
  TORCH_CHECK(s == v || (reduced && s == at::kFloat), "ms_deform_attn: ", name,
              " must have value's dtype ", v, (reduced ? " or float32" : ""), ", got ", s,
              " with shape ", t.sizes());
}

}  // namespace

void check_ms_deform_attn_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index,
                                 const at::Tensor& sampling_locations,
                                 const at::Tensor& attention_weights) {
  check_rank(value, "value", 4, "(bs, num_keys, num_heads, head_dims)");
  check_rank(spatial_shapes, "spatial_shapes", 2, "(num_levels, 2)");
  check_rank(level_start_index, "level_start_index", 1, "(num_levels,)");
  check_rank(sampling_locations, "sampling_locations", 6,
             "(bs, num_queries, num_heads, num_levels, num_points, 2)");
  check_rank(attention_weights, "attention_weights", 5,
             "(bs, num_queries, num_heads, num_levels, num_points)");
  const int64_t bs = value.size(0), num_heads = value.size(2);
  const int64_t num_levels = spatial_shapes.size(0);
  check_size(spatial_shapes, "spatial_shapes", 1, 2, "2");
  check_size(level_start_index, "level_start_index", 0, num_levels, "num_levels");
  check_size(sampling_locations, "sampling_locations", 0, bs, "bs");
  check_size(sampling_locations, "sampling_locations", 2, num_heads, "num_heads");
  check_size(sampling_locations, "sampling_locations", 3, num_levels, "num_levels");
  check_size(sampling_locations, "sampling_locations", 5, 2, "2");
  for (int64_t d = 0; d < 5; ++d) {
    check_size(attention_weights, "attention_weights", d, sampling_locations.size(d),
               "the same dim of sampling_locations");
  }
  for (const auto* t : {&spatial_shapes, &level_start_index, &sampling_locations,
                        &attention_weights}) {
    TORCH_CHECK(t->device() == value.device(),
                "ms_deform_attn: all inputs must be on value's device ", value.device(),
                ", got a tensor of shape ", t->sizes(), " on ", t->device());
  }
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong &&
                  level_start_index.scalar_type() == at::kLong,
              "ms_deform_attn: spatial_shapes and level_start_index must be int64, got ",
              spatial_shapes.scalar_type(), " and ", level_start_index.scalar_type());
  const auto v = value.scalar_type();
  TORCH_CHECK(v == at::kFloat || v == at::kDouble || v == at::kBFloat16 ||
                  (v == at::kHalf && value.is_cuda()),
              "ms_deform_attn: value must be float32, float64 or bfloat16 (float16 on CUDA "
              "only), got ", v, " on ", value.device(), " with shape ", value.sizes());
  check_float_arg(sampling_locations, "sampling_locations", value);
  check_float_arg(attention_weights, "attention_weights", value);
}

at::ScalarType ms_deform_attn_opmath_type(const at::Tensor& value) {
  return value.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace deform_ext
