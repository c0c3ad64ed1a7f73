"""Write a module to an ONNX file with our op in either form, and run a file with
onnxruntime (imported on first use: onnx and onnxruntime are deployment and test
dependencies, not runtime ones)."""
import warnings
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from torch import nn

from .ms_deform_attn_onnx import OPSET, register_ms_deform_attn_symbolic
from .symbolic_fixes import register_symbolic_fixes


def export_onnx(module: nn.Module, args: tuple, path: str, *, plugin: bool,
                input_names: Sequence[str], output_names: Sequence[str],
                dynamic_axes: Optional[Dict[str, Dict[int, str]]] = None) -> None:
    """Trace ``module(*args)`` in eval mode without gradients and write it to ``path``
    (TorchScript exporter, opset :data:`OPSET`, ``deform_ext::ms_deform_attn`` as
    TensorRT's plugin when ``plugin`` else as standard ops, the fixes of
    :mod:`.symbolic_fixes`), then check the file with ``onnx.checker``.

    ``dynamic_axes`` names the axes left free, e.g. ``{'images': {0: 'batch'}}``;
    every other size is the traced one.
    """
    import onnx
    register_ms_deform_attn_symbolic(plugin)
    register_symbolic_fixes(OPSET)
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # chosen on purpose (see ms_deform_attn_onnx); mmdet's shape reads warn per call
        warnings.filterwarnings('ignore', message='You are using the legacy TorchScript')
        warnings.filterwarnings('ignore', message='The feature will be removed')
        warnings.filterwarnings('ignore', category=torch.jit.TracerWarning)
        torch.onnx.export(module, args, path, dynamo=False, opset_version=OPSET,
                          input_names=list(input_names), output_names=list(output_names),
                          dynamic_axes=dynamic_axes)
    onnx.checker.check_model(onnx.load(path), full_check=True)


def run_onnxruntime(path: str, inputs: Dict[str, np.ndarray],
                    threads: int = 1) -> Dict[str, np.ndarray]:
    """Run the ONNX file ``path`` once with onnxruntime's CPU provider on ``threads``
    threads; returns the outputs by name."""
    session = onnxruntime_session(path, threads)
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, inputs)))


def onnxruntime_session(path: str, threads: int = 1):
    """An onnxruntime CPU session of ``path`` with ``threads`` intra-op threads."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(path, options, providers=['CPUExecutionProvider'])
