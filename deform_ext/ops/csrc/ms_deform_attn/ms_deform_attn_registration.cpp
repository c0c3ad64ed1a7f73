// Schemas of the multi-scale deformable attention ops in the `deform_ext` library.
// Kernels are registered per dispatch key next to their code (CPU in
// ms_deform_attn_cpu.cpp; a CUDA file adds TORCH_LIBRARY_IMPL(deform_ext, CUDA, m)).
// Autograd and the fake (meta) kernels are registered from Python
// (deform_ext/ops/ms_deform_attn.py).
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(deform_ext, m) {
  m.def(
      "ms_deform_attn(Tensor value, Tensor spatial_shapes, Tensor level_start_index, "
      "Tensor sampling_locations, Tensor attention_weights) -> Tensor",
      {at::Tag::pt2_compliant_tag});
  m.def(
      "ms_deform_attn_backward(Tensor grad_output, Tensor value, Tensor spatial_shapes, "
      "Tensor level_start_index, Tensor sampling_locations, Tensor attention_weights) "
      "-> (Tensor, Tensor, Tensor)",
      {at::Tag::pt2_compliant_tag});
}
