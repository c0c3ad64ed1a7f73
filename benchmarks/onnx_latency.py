"""onnxruntime (CPU) against PyTorch on an exported detector, both in this process.

The detector (default: the ``make demo`` config, random weights: latency does not
depend on them) is exported with our op as standard ONNX ops
(``deform_ext.deployment``) and run images (batch, 3, H, W) -> boxes, scores, labels
on both sides: PyTorch with deform_ext's compiled op, onnxruntime's CPU provider on
the file. Both get the same thread count; the calls take turns in every repeat.

    python benchmarks/onnx_latency.py [--config CONFIG] [--shape H W] [--batch B]
                                      [--threads T] [--repeats N]

Prints the median ms of each, the ratio, and the largest difference of the outputs.
"""
import argparse
import os.path as osp
import sys
import tempfile

import torch
from bench_utils import median_ms

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = 'configs/demo/deformable-detr-refine-twostage_r18-tiny_1xb4-16e_synthetic.py'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--config', default=DEMO, help='detector config, from the repo root')
    parser.add_argument('--shape', type=int, nargs=2, default=(256, 256), metavar=('H', 'W'))
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--threads', type=int, default=1)
    parser.add_argument('--repeats', type=int, default=20)
    parser.add_argument('--warmup', type=int, default=2)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import onnxruntime

    import deform_ext  # noqa: F401  registers the components
    from deform_ext.deployment import (ExportableDetector, detection_differences,
                                       export_detector, onnxruntime_session, sample_images)
    from deform_ext.testing import build_model, without_init_cfg
    from mmengine.config import Config
    torch.set_num_threads(args.threads)
    root = osp.dirname(osp.dirname(osp.abspath(__file__)))
    cfg = Config.fromfile(osp.join(root, args.config))
    detector = ExportableDetector(build_model(without_init_cfg(cfg.model.to_dict())),
                                  args.shape)
    images = sample_images(args.batch, *args.shape)
    with tempfile.TemporaryDirectory() as tmp:
        path = osp.join(tmp, 'model.onnx')
        export_detector(detector, images, path, plugin=False)
        session = onnxruntime_session(path, args.threads)
    feed = {'images': images.numpy()}

    def pytorch():
        with torch.no_grad():
            return detector(images)

    def ort():
        return dict(zip(('boxes', 'scores', 'labels'), session.run(None, feed)))

    times = median_ms([pytorch, ort], args.repeats, args.warmup, 'cpu')
    differences = detection_differences(pytorch(), ort())
    print(f'{osp.basename(args.config)} at {args.shape[0]}x{args.shape[1]}, batch '
          f'{args.batch}, {args.threads} thread(s); torch {torch.__version__}, '
          f'onnxruntime {onnxruntime.__version__}; median of {args.repeats}')
    print(f"{'PyTorch (deform_ext op)':32s}{times[0]:9.1f} ms")
    print(f"{'onnxruntime (standard ops)':32s}{times[1]:9.1f} ms")
    print(f"{'ratio (onnxruntime / PyTorch)':32s}{times[1] / times[0]:9.2f}x")
    print(f"largest difference: boxes {differences['boxes']:.3g} px, scores "
          f"{differences['scores']:.3g}, labels equal {differences['labels_equal']:.0%}")


if __name__ == '__main__':
    main()
