"""ms_deform_attn under torch.compile (fullgraph, dynamic shapes), torch.export and
torch.library.opcheck."""
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from deform_ext.ops import ms_deform_attn, ms_deform_attn_reference
from ms_deform_attn_helpers import random_op_inputs, requires_extension

pytestmark = requires_extension

# Batch, queries and level sizes vary between steps. In the first step no size is 0
# or 1 (specialised) nor equal to another one: duck sizing would tie the two and
# recompile when they differ (heads 2, points 3, head_dims 8 and levels 2 are fixed).
STEPS = [dict(bs=4, num_queries=5, shapes=((6, 5), (3, 4))),
         dict(bs=5, num_queries=9, shapes=((8, 7), (4, 3))),
         dict(bs=3, num_queries=3, shapes=((5, 5), (3, 3))),
         dict(bs=6, num_queries=11, shapes=((9, 4), (5, 3)))]


def test_compile_fullgraph_dynamic_forward_backward_no_recompile():
    counter = CompileCounterWithBackend('aot_eager')
    compiled = torch.compile(ms_deform_attn, backend=counter, fullgraph=True, dynamic=True)
    for step in STEPS:
        inputs = random_op_inputs(**step, dtype=torch.float32, requires_grad=True)
        out = compiled(*inputs)
        grads = torch.autograd.grad(out.square().sum(), [inputs[0], inputs[3], inputs[4]])
        ref = ms_deform_attn(*inputs)
        ref_grads = torch.autograd.grad(ref.square().sum(), [inputs[0], inputs[3], inputs[4]])
        torch.testing.assert_close(out, ref, atol=0, rtol=0)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert counter.frame_count == 1


def test_compile_inductor_dynamic_no_recompile():
    counter = CompileCounterWithBackend('inductor')
    compiled = torch.compile(ms_deform_attn, backend=counter, fullgraph=True, dynamic=True)
    for step in STEPS[:3]:
        inputs = random_op_inputs(**step, dtype=torch.float32)
        torch.testing.assert_close(compiled(*inputs), ms_deform_attn_reference(*inputs),
                                   atol=1e-5, rtol=1e-5)
    assert counter.frame_count == 1


class OpAsModule(torch.nn.Module):
    def forward(self, value, spatial_shapes, level_start_index, sampling_locations,
                attention_weights):
        return ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations,
                              attention_weights)


def test_export_dynamic_shapes():
    batch, keys, queries = (torch.export.Dim(n, min=3, max=4096) for n in ('bs', 'keys', 'q'))
    inputs = random_op_inputs(**STEPS[0], dtype=torch.float32)
    dynamic = ({0: batch, 1: keys}, None, None, {0: batch, 1: queries}, {0: batch, 1: queries})
    exported = torch.export.export(OpAsModule(), inputs, dynamic_shapes=dynamic)
    targets = [n.target for n in exported.graph.nodes if n.op == 'call_function']
    assert torch.ops.deform_ext.ms_deform_attn.default in targets
    for step in STEPS[1:]:
        inputs = random_op_inputs(**step, dtype=torch.float32)
        torch.testing.assert_close(exported.module()(*inputs), ms_deform_attn(*inputs),
                                   atol=0, rtol=0)


def test_opcheck():
    # Schema, fake kernel, autograd registration and AOT dispatch of the raw op.
    for dtype in (torch.float64, torch.float32, torch.bfloat16):
        inputs = random_op_inputs(**STEPS[0], dtype=dtype, loc_dtype=torch.float32 if
                                  dtype == torch.bfloat16 else dtype, requires_grad=True)
        torch.library.opcheck(torch.ops.deform_ext.ms_deform_attn.default, inputs)
