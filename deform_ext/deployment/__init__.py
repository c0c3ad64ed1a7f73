"""Deployment: ONNX export of our op (TensorRT's plugin layout or standard ONNX ops)
and of whole detectors, and onnxruntime helpers. Needs the OpenMMLab stack for the
detectors, and onnx / onnxruntime (requirements/deployment.txt) to write and run files."""
from .detector_onnx import (OUTPUT_NAMES, detection_differences, export_detector,
                            run_detector_onnx, sample_images)
from .exportable_detector import (SUPPORTED, ExportableDetector, UnsupportedModelError,
                                  detector_kind, detr_detections)
from .ms_deform_attn_onnx import (OPSET, PLUGIN_DOMAIN, PLUGIN_NAME, PLUGIN_VERSION,
                                  register_ms_deform_attn_symbolic)
from .onnx_export import export_onnx, onnxruntime_session, run_onnxruntime

__all__ = [
    'ExportableDetector', 'OPSET', 'OUTPUT_NAMES', 'PLUGIN_DOMAIN', 'PLUGIN_NAME',
    'PLUGIN_VERSION', 'SUPPORTED', 'UnsupportedModelError', 'detection_differences',
    'detector_kind', 'detr_detections', 'export_detector', 'export_onnx',
    'onnxruntime_session', 'register_ms_deform_attn_symbolic', 'run_detector_onnx',
    'run_onnxruntime', 'sample_images'
]
