"""Fixes of the TorchScript exporter's symbolic functions that our detectors meet."""
import torch
from torch.onnx import symbolic_helper, symbolic_opset9


def linspace_symbolic(g, start, end, steps, dtype, layout, device, pin_memory):
    """``aten::linspace`` as torch's own, except that ``steps=1`` gives ``[start]``:
    torch's divides by ``steps - 1`` and yields NaN there, which Deformable DETR's
    encoder meets on a level one cell high or wide (its reference points are
    ``linspace(0.5, H - 0.5, H)``)."""
    one = g.op('Constant', value_t=torch.tensor(1, dtype=torch.int64))
    intervals = g.op('Max', symbolic_opset9.sub(g, steps, one), one)
    step = symbolic_opset9.div(g, symbolic_opset9.sub(g, end, start), intervals)
    positions = symbolic_helper._arange_helper(g, steps, None)
    return symbolic_opset9.add(g, symbolic_opset9.mul(g, positions, step), start)


def register_symbolic_fixes(opset: int) -> None:
    """Register the fixed symbolic functions for ``opset``."""
    torch.onnx.register_custom_op_symbolic('aten::linspace', linspace_symbolic, opset)
