"""Write a grid of augmented training images with their boxes (PNG), to look at what
the training pipeline makes of the data before training on it.

    python tools/analysis/browse_augmented.py CONFIG --out grid.png [--num 16]
        [--cols 4] [--start 0] [--epoch 0] [--seed S] [--cfg-options k=v ...]

Each cell is one sample of ``train_dataloader.dataset`` as the pipeline leaves it
(after ``PackDetInputs`` or as a results dict), boxes in the dataset's palette with
their class names. Transforms that take a seed and an epoch (SmallObjectCopyPaste)
get ``--seed`` (default: the config's ``randomness.seed``, else 0) and ``--epoch``,
as PipelineEpochHook gives them in training; their statistics (the ground truth's
area histogram before and after) are printed.
"""
import argparse
import os.path as osp
import sys

import numpy as np
from PIL import Image, ImageDraw

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import deform_ext  # noqa: E402,F401  registers components
from deform_ext.engine.hooks.pipeline_epoch_hook import (  # noqa: E402
    iter_pipeline_objects, set_pipeline_seed_epoch)
from deform_ext.registry import DATASETS, build_in_scope  # noqa: E402
from deform_ext.utils import check_top_level_keys, load_config  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

DEFAULT_COLOUR = (255, 64, 64)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file with a train_dataloader')
    parser.add_argument('--out', required=True, help='PNG file to write')
    parser.add_argument('--num', type=int, default=16, help='images (default: 16)')
    parser.add_argument('--cols', type=int, default=4, help='grid columns (default: 4)')
    parser.add_argument('--start', type=int, default=0, help='first sample index')
    parser.add_argument('--epoch', type=int, default=0, help='epoch to draw as')
    parser.add_argument('--seed', type=int, help="default: the config's randomness.seed")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    args = parser.parse_args(argv)
    if args.num < 1 or args.cols < 1:
        parser.error('--num and --cols must be at least 1')
    return args


def sample_image_and_boxes(sample: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB uint8 (h, w, 3), boxes (N, 4) and labels (N,) of a pipeline's output."""
    if 'inputs' in sample:  # PackDetInputs: (3, h, w) BGR tensor and a DetDataSample
        image = sample['inputs'].permute(1, 2, 0).numpy()
        instances = sample['data_samples'].gt_instances
        boxes, labels = instances.bboxes, instances.labels
    else:
        image, boxes, labels = sample['img'], sample['gt_bboxes'], sample['gt_bboxes_labels']
    boxes = boxes.tensor if hasattr(boxes, 'tensor') else boxes
    image = np.clip(np.asarray(image), 0, 255).astype(np.uint8)[..., ::-1]
    return image, np.asarray(boxes).reshape(-1, 4), np.asarray(labels)


def draw_cell(image: np.ndarray, boxes: np.ndarray, labels: np.ndarray,
              metainfo: dict) -> Image.Image:
    """The image with its boxes outlined and named."""
    cell = Image.fromarray(np.ascontiguousarray(image))
    draw = ImageDraw.Draw(cell)
    classes, palette = metainfo.get('classes', ()), metainfo.get('palette') or ()
    for box, label in zip(boxes, labels):
        colour = tuple(palette[label]) if label < len(palette) else DEFAULT_COLOUR
        draw.rectangle([float(v) for v in box], outline=colour, width=1)
        name = classes[label] if label < len(classes) else str(label)
        draw.text((float(box[0]) + 1, float(box[1]) + 1), name, fill=colour)
    return cell


def grid(cells: list[Image.Image], cols: int, gap: int = 4) -> Image.Image:
    """``cells`` tiled row by row, ``cols`` per row, on white."""
    width = max(cell.width for cell in cells) + gap
    height = max(cell.height for cell in cells) + gap
    rows = -(-len(cells) // cols)
    canvas = Image.new('RGB', (cols * width + gap, rows * height + gap), 'white')
    for index, cell in enumerate(cells):
        canvas.paste(cell, (gap + index % cols * width, gap + index // cols * height))
    return canvas


def main(argv=None) -> dict:
    args = parse_args(argv)
    cfg = load_config(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
        check_top_level_keys(cfg, source='--cfg-options')
    dataset = build_in_scope(DATASETS, cfg.train_dataloader.dataset)
    seed = args.seed if args.seed is not None else cfg.get('randomness', {}).get('seed') or 0
    set_pipeline_seed_epoch(dataset, seed, args.epoch)
    indices = range(args.start, min(args.start + args.num, len(dataset)))
    if not indices:
        sys.exit(f'--start {args.start} is past the dataset\'s {len(dataset)} samples')
    cells, counts = [], []
    for index in indices:
        image, boxes, labels = sample_image_and_boxes(dataset[index])
        cells.append(draw_cell(image, boxes, labels, dataset.metainfo))
        counts.append(len(boxes))
    grid(cells, min(args.cols, len(cells))).save(args.out, format='PNG')
    print(f'{args.out}: {len(cells)} samples from index {args.start}, epoch {args.epoch}, '
          f'seed {seed}; ground truth per image {counts}')
    stats = {}
    for node in iter_pipeline_objects(dataset):
        if hasattr(node, 'stats') and hasattr(node.stats, 'format'):
            print(f'{type(node).__name__}: {node.stats.format()}')
            stats[type(node).__name__] = node.stats.as_dict()
    return dict(out=args.out, counts=counts, stats=stats)


if __name__ == '__main__':
    main()
