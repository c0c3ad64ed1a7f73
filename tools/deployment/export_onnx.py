"""Export a trained detector to ONNX, from image tensor to boxes, scores and labels.

    python tools/deployment/export_onnx.py CONFIG CHECKPOINT [--out model.onnx]
                                           [--shape H W] [--fallback]

The file's input ``images`` is (batch, 3, H, W) float32, pixel values 0-255 in BGR
order (as mmcv reads image files), resized (and padded) to the exported H x W as the
config's test pipeline would; the model's normalisation runs inside. Outputs:
``boxes`` (batch, k, 4) xyxy in input pixels, ``scores`` (batch, k), ``labels``
(batch, k), best first, k = the config's ``test_cfg.max_per_img`` (100 for YOLOX
configs without one), padded with score 0, label -1 and a zero box. The batch size is
free, the image size fixed. Detector families: Deformable DETR (DINO too), DETR,
RetinaNet-like dense heads, YOLOX, Faster R-CNN and Cascade R-CNN with RPNHead or
EncoderRPNHead; others are refused with the list (``deform_ext.deployment.SUPPORTED``)
and, for DDQ-DETR, Mask2Former and mask heads, the reason.

Our deformable attention becomes TensorRT's ``MultiscaleDeformableAttnPlugin_TRT``
(TensorRT with that plugin runs the file), or with ``--fallback`` standard ONNX ops
that any runtime runs. A file without the plugin is run by onnxruntime on a sample
image and compared with PyTorch.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import deform_ext  # noqa: E402,F401  registers components and compatibility fixes
from deform_ext.utils.config_check import load_config  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Export a detector to ONNX')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', default='model.onnx', help='the ONNX file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help="input height and width (default: the test pipeline's "
                             'Resize scale, rounded up to the pad size divisor)')
    parser.add_argument('--fallback', action='store_true',
                        help='standard ONNX ops instead of the TensorRT plugin')
    return parser.parse_args(argv)


def default_shape(cfg, divisor: int):
    """(H, W) of the test pipeline's Resize scale (w, h), rounded up to ``divisor``."""
    pipeline = cfg.get('test_dataloader', {}).get('dataset', {}).get('pipeline', [])
    scales = [step['scale'] for step in pipeline if step.get('type') == 'Resize']
    if not scales:
        return None
    width, height = scales[0]
    return tuple(-(-size // divisor) * divisor for size in (height, width))


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmdet.apis import init_detector

    from deform_ext.deployment import (PLUGIN_NAME, ExportableDetector,
                                       UnsupportedModelError, detection_differences,
                                       export_detector, run_detector_onnx, sample_images)
    if not osp.isfile(args.checkpoint):
        sys.exit(f'error: checkpoint file {args.checkpoint} does not exist')
    cfg = load_config(args.config)
    model = init_detector(cfg, args.checkpoint, device='cpu')
    shape = args.shape or default_shape(cfg, model.data_preprocessor.pad_size_divisor)
    if shape is None:
        sys.exit('error: the config has no Resize step in its test pipeline; pass --shape H W')
    try:
        detector = ExportableDetector(model, shape)
    except (UnsupportedModelError, ValueError) as error:
        sys.exit(f'error: {error}')
    images = sample_images(1, *shape)
    export_detector(detector, images, args.out, plugin=not args.fallback)
    import onnx
    ops = {node.op_type for node in onnx.load(args.out).graph.node}
    form = 'TensorRT plugin ' + PLUGIN_NAME if PLUGIN_NAME in ops else 'standard ONNX ops'
    print(f'wrote {args.out}: images (batch, 3, {shape[0]}, {shape[1]}) -> boxes, scores, '
          f'labels (batch, k); deformable attention as {form}; onnx.checker passed')
    if PLUGIN_NAME in ops:
        print('runs on TensorRT with its multiscaleDeformableAttnPlugin (not onnxruntime); '
              'export with --fallback for other runtimes')
        return
    with torch.no_grad():
        reference = detector(images)
    differences = detection_differences(reference, run_detector_onnx(args.out, images))
    print('onnxruntime vs PyTorch on a sample image: largest difference boxes '
          f"{differences['boxes']:.3g} px, scores {differences['scores']:.3g}; "
          f"labels equal {differences['labels_equal']:.0%}")


if __name__ == '__main__':
    main()
