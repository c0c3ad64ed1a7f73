"""Deployment: ONNX export of our op (TensorRT's plugin layout or standard ONNX ops)
and of whole detectors, and onnxruntime helpers. Needs the OpenMMLab stack for the
detectors, and onnx / onnxruntime (requirements/deployment.txt) to write and run files."""
from .exportable_detector import (SUPPORTED, ExportableDetector, UnsupportedModelError,
                                  detector_kind, detr_detections)
from .ms_deform_attn_onnx import (OPSET, PLUGIN_DOMAIN, PLUGIN_NAME, PLUGIN_VERSION,
                                  register_ms_deform_attn_symbolic)
from .onnx_export import export_onnx, onnxruntime_session, run_onnxruntime

__all__ = [
    'ExportableDetector', 'OPSET', 'PLUGIN_DOMAIN', 'PLUGIN_NAME', 'PLUGIN_VERSION',
    'SUPPORTED', 'UnsupportedModelError', 'detector_kind', 'detr_detections', 'export_onnx',
    'onnxruntime_session', 'register_ms_deform_attn_symbolic', 'run_onnxruntime'
]
