"""ONNX export of ms_deform_attn: the standard-ops form against the op under
onnxruntime (out-of-map, NaN and infinite locations included; other sizes than the
traced ones), and the TensorRT plugin form's node, input order and attributes."""
import numpy as np
import onnx
import pytest
import torch

from deform_ext.deployment import (PLUGIN_DOMAIN, PLUGIN_NAME, PLUGIN_VERSION, export_onnx,
                                   run_onnxruntime)
from deform_ext.ops import _extension, ms_deform_attn
from tests.test_ops.ms_deform_attn_helpers import random_op_inputs, requires_extension

pytestmark = requires_extension

NAMES = ('value', 'spatial_shapes', 'level_start_index', 'sampling_locations',
         'attention_weights')
FREE_AXES = {'value': {0: 'bs', 1: 'keys'}, 'sampling_locations': {0: 'bs', 1: 'queries'},
             'attention_weights': {0: 'bs', 1: 'queries'}, 'output': {0: 'bs', 1: 'queries'}}


class MSDeformAttnCall(torch.nn.Module):
    def forward(self, *inputs):
        return ms_deform_attn(*inputs)


def float_inputs(**kwargs):
    return random_op_inputs(dtype=torch.float32, **kwargs)


def export(path, inputs, plugin, dynamic_axes=FREE_AXES):
    export_onnx(MSDeformAttnCall(), inputs, str(path), plugin=plugin, input_names=NAMES,
                output_names=['output'], dynamic_axes=dynamic_axes)


def onnxruntime_output(path, inputs):
    return run_onnxruntime(str(path), {n: t.numpy() for n, t in zip(NAMES, inputs)})['output']


def test_standard_ops_form_equals_the_op_with_locations_off_the_maps(tmp_path):
    inputs = float_inputs(shapes=((6, 5), (3, 3), (1, 2)), num_heads=3, head_dims=5,
                          num_points=4, loc_range=(-0.5, 1.5))
    locations = inputs[3]
    locations[0, 0, 0, 0, 0] = float('nan')
    locations[0, 1, 1, 1, 1, 0] = 1e9
    locations[1, 2, 2, 2, 2, 1] = -float('inf')
    export(tmp_path / 'op.onnx', inputs, plugin=False)
    out = onnxruntime_output(tmp_path / 'op.onnx', inputs)
    np.testing.assert_allclose(out, ms_deform_attn(*inputs).numpy(), rtol=0, atol=1e-5)


def test_standard_ops_form_reads_sizes_at_run_time(tmp_path):
    """Traced at one batch, key and query count and map sizes, run at others (the
    number of levels is fixed)."""
    export(tmp_path / 'op.onnx', float_inputs(), plugin=False)
    other = float_inputs(bs=3, shapes=((4, 9), (2, 5)), num_queries=11, seed=1)
    out = onnxruntime_output(tmp_path / 'op.onnx', other)
    np.testing.assert_allclose(out, ms_deform_attn(*other).numpy(), rtol=0, atol=1e-5)


def test_standard_ops_form_exports_with_every_size_fixed(tmp_path):
    inputs = float_inputs(num_queries=5)
    export(tmp_path / 'op.onnx', inputs, plugin=False, dynamic_axes=None)
    out = onnxruntime_output(tmp_path / 'op.onnx', inputs)
    np.testing.assert_allclose(out, ms_deform_attn(*inputs).numpy(), rtol=0, atol=1e-5)


def test_plugin_form_has_tensorrts_name_input_order_and_attributes(tmp_path):
    export(tmp_path / 'op.onnx', float_inputs(), plugin=True)
    model = onnx.load(str(tmp_path / 'op.onnx'))
    producers = {output: node for node in model.graph.node for output in node.output}
    (plugin,) = [node for node in model.graph.node if node.op_type == PLUGIN_NAME]
    assert plugin.domain == PLUGIN_DOMAIN
    assert {o.domain for o in model.opset_import} >= {'', PLUGIN_DOMAIN}

    def source(name):  # the graph input behind a Cast
        node = producers.get(name)
        return source(node.input[0]) if node is not None and node.op_type == 'Cast' else name

    assert [source(name) for name in plugin.input] == list(NAMES)
    casts = [producers[name] for name in plugin.input[1:3]]
    assert all(c.op_type == 'Cast' and c.attribute[0].i == onnx.TensorProto.INT32
               for c in casts)
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in plugin.attribute}
    assert attributes == {'plugin_version': PLUGIN_VERSION.encode(), 'plugin_namespace': b''}
    (reshape,) = [node for node in model.graph.node if plugin.output[0] in node.input]
    assert reshape.op_type == 'Reshape' and reshape.output[0] == 'output'


def test_export_without_the_compiled_op_says_how_to_build_it(tmp_path, monkeypatch):
    monkeypatch.setattr(_extension, 'has_kernel', lambda *args: False)
    with pytest.raises(RuntimeError, match='pip install --no-build-isolation'):
        export(tmp_path / 'op.onnx', float_inputs(), plugin=False)
