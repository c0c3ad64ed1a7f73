"""Print the outcome of a training run: final COCO bbox metrics and drawn images.

    python tools/analysis/demo_summary.py WORK_DIR
"""
import argparse
import glob
import json
import os.path as osp
import sys


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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir')
    args = parser.parse_args()
    run_dir = latest_run(args.work_dir)
    metrics = final_metrics(run_dir)
    print(f'\n[demo] run: {run_dir}')
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l'):
        print(f'[demo] {key:12s} {metrics[f"coco/{key}"]:.3f}')
    images = sorted(glob.glob(osp.join(run_dir, 'vis_data', 'vis_image', '*.png')))
    print(f'[demo] {len(images)} images with predicted boxes in {osp.join(run_dir, "vis_data", "vis_image")}')


if __name__ == '__main__':
    main()
