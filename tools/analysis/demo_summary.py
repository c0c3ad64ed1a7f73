"""The end of ``make demo``: draw the pictures of a trained run and print its outcome,
the final COCO bbox table and where every picture is.

    python tools/analysis/demo_summary.py WORK_DIR [--config CFG --images IMG ...]

With ``--config``, writes into ``WORK_DIR/pictures/``: ``curves.png`` (loss and mAP
per epoch, tools/analysis/plot_curves.py) and, per image, ``sampling_<name>.png``
(where the last decoder layer's queries of the best detections sample, per level,
tools/analysis/visualize_sampling.py) from the run's last checkpoint.
"""
import argparse
import glob
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

TABLE = (('bbox_mAP', 'mAP'), ('bbox_mAP_50', 'mAP@50'), ('bbox_mAP_75', 'mAP@75'),
         ('bbox_mAP_s', 'AP small'), ('bbox_mAP_m', 'AP medium'), ('bbox_mAP_l', 'AP large'))


def latest_run(work_dir: str) -> str:
    """The newest timestamped run folder that mmengine wrote under ``work_dir``."""
    runs = sorted(glob.glob(osp.join(work_dir, '[0-9]' * 8 + '_' + '[0-9]' * 6)))
    if not runs:
        sys.exit(f'no run found under {work_dir}: did training start?')
    return runs[-1]


def final_metrics(run_dir: str) -> dict:
    """The last logged record that holds COCO bbox metrics."""
    scalars = osp.join(run_dir, 'vis_data', 'scalars.json')
    if not osp.isfile(scalars):
        sys.exit(f'{scalars} is missing: the run logged nothing')
    with open(scalars) as f:
        records = [json.loads(line) for line in f if line.strip()]
    evaluated = [r for r in records if 'coco/bbox_mAP' in r]
    if not evaluated:
        sys.exit(f'{scalars} holds no COCO evaluation: did validation run?')
    return evaluated[-1]


def coco_table(metrics: dict) -> list:
    """[(name, value)] of the COCO bbox metrics in ``metrics`` (a scalars.json record)."""
    return [(name, float(metrics[f'coco/{key}'])) for key, name in TABLE
            if f'coco/{key}' in metrics]


def draw_pictures(work_dir: str, config: str, images: list) -> list:
    """Write curves.png and one sampling picture per image into ``work_dir/pictures``;
    returns the paths written."""
    from deform_ext.apis import load_detector
    from deform_ext.visualization import collect_sampling, draw_sampling, plot_curves
    out_dir = osp.join(work_dir, 'pictures')
    os.makedirs(out_dir, exist_ok=True)
    written = [osp.join(out_dir, 'curves.png')]
    plot_curves([work_dir], written[0], labels=[osp.basename(osp.normpath(work_dir))])
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    model = load_detector(config, checkpoint, device='cpu')
    for image in images:
        name = osp.splitext(osp.basename(image))[0]
        out = osp.join(out_dir, f'sampling_{name}.png')
        draw_sampling(collect_sampling(model, image), out)
        written.append(out)
    return written


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir')
    parser.add_argument('--config', help='the run\'s config: draw the pictures')
    parser.add_argument('--images', nargs='*', default=[],
                        help='images to draw sampling points on (with --config)')
    args = parser.parse_args(argv)
    run_dir = latest_run(args.work_dir)
    pictures = draw_pictures(args.work_dir, args.config, args.images) if args.config else []
    print(f'\n[demo] run: {run_dir}')
    print('[demo] | metric | value |')
    for name, value in coco_table(final_metrics(run_dir)):
        print(f'[demo] | {name} | {value:.3f} |' if value >= 0 else  # COCO's -1
              f'[demo] | {name} | n/a (no such objects in the validation set) |')
    images = sorted(glob.glob(osp.join(run_dir, 'vis_data', 'vis_image', '*.png')))
    print(f'[demo] {len(images)} images with predicted boxes in '
          f'{osp.join(run_dir, "vis_data", "vis_image")}')
    for path in pictures:
        print(f'[demo] picture: {path}')


if __name__ == '__main__':
    main()
