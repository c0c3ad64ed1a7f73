"""Detect objects in an image or a folder of images and write them with their boxes.

    python tools/demo.py IMAGE_OR_DIR CONFIG CHECKPOINT [--out-dir outputs]
        [--score-thr 0.3] [--device cpu] [--cfg-options k=v ...]

One PNG per image in ``--out-dir`` (same file name, ``.png``), drawn by mmdet's
``DetLocalVisualizer`` with the class names the checkpoint was trained with (else the
config's test dataset's), and one line per image with its detections above
``--score-thr``. Works with our configs (``default_scope='deform_ext'``) and mmdet's.

Stops with a message (no traceback) for a missing config, checkpoint or input, a
checkpoint that does not fit the config (the first mismatched keys and shapes are
named) and, for a single image, one that cannot be read; in a folder an unreadable
image is reported and skipped, and the exit status is 1.
"""
import argparse
import os
import os.path as osp
import sys
import warnings

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import deform_ext  # noqa: E402,F401  registers components
from deform_ext.apis import (CheckpointMismatchError, array_test_pipeline,  # noqa: E402
                             list_images, load_detector, read_image)
from mmengine.config import DictAction  # noqa: E402

SHOWN = 8  # detections named per image


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('inputs', help='an image file or a folder of images')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument('--out-dir', default='outputs', help='where to write (default: outputs)')
    parser.add_argument('--score-thr', type=float, default=0.3,
                        help='draw boxes scoring at least this (default: 0.3)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, cuda:1 ... (default: cpu)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def make_visualizer(model):
    """mmdet's DetLocalVisualizer with the model's class names and palette."""
    from mmdet.visualization import DetLocalVisualizer
    visualizer = DetLocalVisualizer.get_instance('deform_ext_demo')  # one per process
    visualizer.dataset_meta = model.dataset_meta
    return visualizer


def main(argv=None) -> dict:
    """Returns {image path: number of detections drawn} (the images that were read)."""
    args = parse_args(argv)
    try:
        images = list_images(args.inputs)
        model = load_detector(args.config, args.checkpoint, device=args.device,
                              cfg_options=args.cfg_options)
    except (FileNotFoundError, CheckpointMismatchError, KeyError) as error:
        sys.exit(f'error: {error}')
    from mmdet.apis import inference_detector
    visualizer = make_visualizer(model)
    pipeline = array_test_pipeline(model)
    os.makedirs(args.out_dir, exist_ok=True)
    drawn, failed = {}, []
    for path in images:
        try:
            image = read_image(path)
        except (FileNotFoundError, ValueError) as error:
            if len(images) == 1:
                sys.exit(f'error: {error}')
            print(f'skipped: {error}', file=sys.stderr)
            failed.append(path)
            continue
        result = inference_detector(model, image, test_pipeline=pipeline)
        out = osp.join(args.out_dir, osp.splitext(osp.basename(path))[0] + '.png')
        with warnings.catch_warnings():  # mmengine warns of every box touching the border
            warnings.simplefilter('ignore', UserWarning)
            visualizer.add_datasample(osp.basename(path), image[..., ::-1], data_sample=result,
                                      draw_gt=False, pred_score_thr=args.score_thr,
                                      out_file=out)
        kept = result.pred_instances[result.pred_instances.scores >= args.score_thr]
        drawn[path] = len(kept)
        classes = model.dataset_meta.get('classes', ())
        names = [classes[i] if i < len(classes) else str(i) for i in kept.labels.tolist()]
        summary = ', '.join(f'{n} {s:.2f}' for n, s in zip(names[:SHOWN], kept.scores.tolist()))
        summary += ', ...' if len(names) > SHOWN else ''
        print(f'{out}: {len(kept)} boxes >= {args.score_thr}' + (f' ({summary})' if summary else ''))
    if failed:
        sys.exit(f'error: {len(failed)} of {len(images)} images could not be read: '
                 + ', '.join(failed))
    return drawn


if __name__ == '__main__':
    main()
