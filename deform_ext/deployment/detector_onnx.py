"""An :class:`ExportableDetector` to an ONNX file and back: export with a free batch
size, sample images, and how far onnxruntime's detections are from PyTorch's."""
from typing import Dict, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor

from .exportable_detector import ExportableDetector
from .onnx_export import export_onnx, run_onnxruntime

OUTPUT_NAMES = ('boxes', 'scores', 'labels')


def export_detector(detector: ExportableDetector, images: Tensor, path: str, *,
                    plugin: bool) -> None:
    """Trace ``detector`` on images (bs, 3, H, W) and write ``path`` with input
    ``images`` and outputs ``boxes``, ``scores``, ``labels``, the batch axis free;
    ``plugin`` picks the form of our op (see :mod:`.ms_deform_attn_onnx`)."""
    axes = {name: {0: 'batch'} for name in ('images',) + OUTPUT_NAMES}
    export_onnx(detector, (images,), path, plugin=plugin, input_names=['images'],
                output_names=OUTPUT_NAMES, dynamic_axes=axes)


def run_detector_onnx(path: str, images: Tensor, threads: int = 1) -> Dict[str, np.ndarray]:
    """onnxruntime's boxes, scores and labels of the file ``path`` for images
    (bs, 3, H, W)."""
    return run_onnxruntime(path, {'images': images.numpy()}, threads)


def sample_images(batch_size: int, height: int, width: int, seed: int = 0) -> Tensor:
    """(batch_size, 3, height, width) float32 BGR images (0-255) of the synthetic
    shapes dataset's kind, the input an exported detector takes."""
    from deform_ext.datasets.synthetic_rendering import render_image
    rng = np.random.default_rng(seed)
    side = min(height, width)
    images = [render_image(rng, height, width, objects_per_image=(2, 8),
                           object_size=(0.1 * side, 0.6 * side), min_visible_fraction=0.4)[0]
              for _ in range(batch_size)]
    rgb = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float()
    return rgb.flip(1).contiguous()


def canonical_order(boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray
                    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each image's detections (bs, k, ...) sorted by score (to 1e-4, best first), then
    box and label: two runtimes that rank tied scores differently compare equal."""
    keys = [labels, *np.round(np.moveaxis(boxes, -1, 0), 1)[::-1], -np.round(scores, 4)]
    order = np.stack([np.lexsort([key[i] for key in keys]) for i in range(len(scores))])
    return (np.take_along_axis(boxes, order[..., None], 1),
            np.take_along_axis(scores, order, 1), np.take_along_axis(labels, order, 1))


def detection_differences(reference: Sequence[Tensor],
                          onnx_outputs: Dict[str, np.ndarray]) -> Dict[str, float]:
    """The largest absolute differences of boxes (pixels) and scores, and the share
    of equal labels, between PyTorch's ``(boxes, scores, labels)`` and onnxruntime's
    outputs of the same names, each in :func:`canonical_order`."""
    boxes, scores, labels = canonical_order(*(onnx_outputs[name] for name in OUTPUT_NAMES))
    ref_boxes, ref_scores, ref_labels = canonical_order(*(r.numpy() for r in reference))
    return dict(boxes=float(np.abs(boxes - ref_boxes).max()),
                scores=float(np.abs(scores - ref_scores).max()),
                labels_equal=float((labels == ref_labels).mean()))
