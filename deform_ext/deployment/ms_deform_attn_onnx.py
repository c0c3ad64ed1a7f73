"""ONNX export of ``deform_ext::ms_deform_attn`` in two forms, chosen per export.

- ``plugin=True``: one node ``trt::MultiscaleDeformableAttnPlugin_TRT`` in the layout of
  TensorRT's multi-scale deformable attention plugin (TensorRT 8.x-10.x; the ONNX parser
  matches the op type to the plugin name and reads ``plugin_version`` and
  ``plugin_namespace``; the domain is not read): inputs value, spatial_shapes (int32),
  level_start_index (int32), sampling_locations, attention_weights, no other
  attributes; its output (bs, num_queries, num_heads, head_dims) is reshaped to ours.
  Only a runtime with that plugin runs it (TensorRT; not onnxruntime).
- ``plugin=False``: the same numbers from standard ONNX ops (GridSample-16 bilinear with
  zero padding, one per level, then a weighted sum), which any runtime runs.

The export goes through the TorchScript exporter (``torch.onnx.export(dynamo=False)``)
at opset :data:`OPSET`: torch.export cannot capture mmdet's Deformable DETR, which
builds its spatial shapes with ``torch._shape_as_tensor`` and reads them back on the
host (``linspace(..., H)``, ``.tolist()``); the tracer runs the model on real tensors.

Shapes, as :func:`deform_ext.ops.ms_deform_attn`:
    value               (bs, num_keys, num_heads, head_dims)
    spatial_shapes      (num_levels, 2) int64, rows (h, w)
    level_start_index   (num_levels,) int64
    sampling_locations  (bs, num_queries, num_heads, num_levels, num_points, 2) in [0, 1]
    attention_weights   (bs, num_queries, num_heads, num_levels, num_points)
    output              (bs, num_queries, num_heads * head_dims)
"""
import torch
from torch.onnx import symbolic_helper

from deform_ext.ops import _extension

OPSET = 17
PLUGIN_DOMAIN = 'trt'
PLUGIN_NAME = 'MultiscaleDeformableAttnPlugin_TRT'
PLUGIN_VERSION = '1'
_ONNX_INT32 = 6  # TensorProto.INT32


def _const(g, values, dtype=torch.int64):
    return g.op('Constant', value_t=torch.tensor(values, dtype=dtype))


def _output_type(value, sampling_locations, split_heads: bool = False):
    """The type of (bs, num_queries, num_heads * head_dims), or of (bs, num_queries,
    num_heads, head_dims) with ``split_heads``, in value's dtype."""
    bs, _, num_heads, head_dims = symbolic_helper._get_tensor_sizes(value)
    num_queries = symbolic_helper._get_tensor_sizes(sampling_locations)[1]
    if split_heads:
        return value.type().with_sizes([bs, num_queries, num_heads, head_dims])
    channels = None if None in (num_heads, head_dims) else num_heads * head_dims
    return value.type().with_sizes([bs, num_queries, channels])


def plugin_symbolic(g, value, spatial_shapes, level_start_index, sampling_locations,
                    attention_weights):
    """TensorRT's plugin node, then (bs, nq, heads, dims) -> (bs, nq, heads * dims)."""
    output = g.op(f'{PLUGIN_DOMAIN}::{PLUGIN_NAME}', value,
                  g.op('Cast', spatial_shapes, to_i=_ONNX_INT32),
                  g.op('Cast', level_start_index, to_i=_ONNX_INT32),
                  sampling_locations, attention_weights,
                  plugin_version_s=PLUGIN_VERSION, plugin_namespace_s='')
    output.setType(_output_type(value, sampling_locations, split_heads=True))
    output = g.op('Reshape', output, _const(g, [0, 0, -1]))
    output.setType(_output_type(value, sampling_locations))
    return output


def _num_levels(spatial_shapes, attention_weights) -> int:
    """num_levels from the traced types (the other sizes may be unknown after
    dynamic axes; the decomposition reads them at run time)."""
    for size in (symbolic_helper._get_tensor_sizes(spatial_shapes)[0],
                 symbolic_helper._get_tensor_sizes(attention_weights)[3]):
        if size is not None:
            return size
    raise RuntimeError('ms_deform_attn ONNX export: the number of levels is unknown '
                       '(neither spatial_shapes nor attention_weights has a static size)')


def grid_sample_symbolic(g, value, spatial_shapes, level_start_index, sampling_locations,
                         attention_weights):
    """Standard ONNX ops: the reference's algorithm, one GridSample per level (the
    number of levels is fixed by the traced shapes; every other size and the map
    sizes are read at run time). NaN locations go to -1 and all are clipped to
    [-1, 2], off every map, so they read zero as in the kernels."""
    def shape(tensor, start, end):  # Shape's start/end crash the static shape inference
        return g.op('Slice', g.op('Shape', tensor), _const(g, [start]), _const(g, [end]))

    locations = g.op('Where', g.op('IsNaN', sampling_locations),
                     _const(g, -1.0, torch.float32), sampling_locations)
    locations = g.op('Clip', locations, _const(g, -1.0, torch.float32),
                     _const(g, 2.0, torch.float32))
    grids = g.op('Sub', g.op('Mul', locations, _const(g, 2.0, torch.float32)),
                 _const(g, 1.0, torch.float32))
    # (bs, nq, heads, levels, points, 2) -> (bs, heads, levels, nq, points, 2)
    grids = g.op('Transpose', grids, perm_i=[0, 2, 3, 1, 4, 5])
    num_queries = shape(sampling_locations, 1, 2)
    grid_shape = g.op('Concat', _const(g, [-1]), num_queries,
                      shape(sampling_locations, 4, 6), axis_i=0)
    head_dims = shape(value, 3, 4)
    num_levels = _num_levels(spatial_shapes, attention_weights)
    sampled = []
    for level in range(num_levels):
        hw = g.op('Gather', spatial_shapes, _const(g, level), axis_i=0)  # (2,)
        start = g.op('Gather', level_start_index, _const(g, [level]), axis_i=0)  # (1,)
        end = g.op('Add', start, g.op('ReduceProd', hw, axes_i=[0], keepdims_i=1))
        # (bs, h * w, heads, dims) -> (bs * heads, dims, h, w)
        level_value = g.op('Slice', value, start, end, _const(g, [1]))
        level_value = g.op('Transpose', level_value, perm_i=[0, 2, 3, 1])
        level_value = g.op('Reshape', level_value,
                           g.op('Concat', _const(g, [-1]), head_dims, hw, axis_i=0))
        # (bs, heads, nq, points, 2) -> (bs * heads, nq, points, 2)
        level_grid = g.op('Reshape', g.op('Gather', grids, _const(g, level), axis_i=2),
                          grid_shape)
        sampled.append(g.op('GridSample', level_value, level_grid, mode_s='bilinear',
                            padding_mode_s='zeros', align_corners_i=0))
    sampled = g.op('Concat', *sampled, axis_i=3)  # (bs * heads, dims, nq, levels * points)
    # (bs, nq, heads, levels, points) -> (bs * heads, 1, nq, levels * points)
    weights = g.op('Transpose', attention_weights, perm_i=[0, 2, 1, 3, 4])
    level_points = g.op('Mul', _const(g, [num_levels]), shape(sampling_locations, 4, 5))
    weights = g.op('Reshape', weights, g.op('Concat', _const(g, [-1, 1]), num_queries,
                                            level_points, axis_i=0))
    output = g.op('ReduceSum', g.op('Mul', sampled, weights), _const(g, [-1]), keepdims_i=0)
    # (bs * heads, dims, nq) -> (bs, heads * dims, nq) -> (bs, nq, heads * dims)
    output = g.op('Reshape', output,
                  g.op('Concat', shape(value, 0, 1), _const(g, [-1]), num_queries, axis_i=0))
    output = g.op('Transpose', output, perm_i=[0, 2, 1])
    output.setType(_output_type(value, sampling_locations))
    return output


def register_ms_deform_attn_symbolic(plugin: bool) -> None:
    """Make the TorchScript exporter write ``deform_ext::ms_deform_attn`` as TensorRT's
    plugin (``plugin=True``) or as standard ONNX ops; the last call wins.

    Raises:
        RuntimeError: the compiled extension is missing; without it the models run
            the reference, which the tracer would bake into shape-specific ops.
    """
    if not _extension.has_kernel('ms_deform_attn', 'cpu'):
        raise RuntimeError('ONNX export needs the compiled op deform_ext::ms_deform_attn '
                           f'(CPU kernel); {_extension.BUILD_HINT}')
    torch.onnx.register_custom_op_symbolic(
        'deform_ext::ms_deform_attn', plugin_symbolic if plugin else grid_sample_symbolic,
        OPSET)
