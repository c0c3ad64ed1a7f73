"""Convergence: deform_ext's Deformable DETR (plain, refine, two-stage) for N epochs
against mmdet's DETR for 5N epochs on the synthetic dataset, same backbone (ResNet-18
at half width, from scratch) and width (128-d, 2 encoder / 3 decoder layers).

Every run is ``tools/train.py`` with COCO evaluation after every epoch (Deformable
DETR) or every 5 epochs (DETR); the table puts Deformable DETR's mAP at epoch e next
to DETR's at epoch 5e, for each seed, then the mean over seeds.

    python benchmarks/convergence.py [--epochs 10] [--seeds 0 1] [--work-dir D]
        [--data-root data/synthetic_coco/] [--cfg-options k=v ...] [--only plain detr]
        [--jobs 2] [--image-size 128] [--batch 4]

At the default size (256) the dataset must exist (``make data``). Runs whose scalars
are already in the work dir are not repeated, so an interrupted benchmark picks up
where it stopped. ``--jobs J`` trains J runs at a time, each with cores/J threads
(these small models use a second thread poorly, so two one-thread runs finish sooner
than two in turn); each run's output goes to ``<work dir>/<model>_seed<seed>.log``.
``--image-size S`` trains and evaluates at S x S; unless ``--data-root`` is given, a
size other than 256 uses a set generated at that size into
``<work dir>/synthetic_coco_<S>`` (same seed and counts as ``make data``).
``--batch`` (default 4) replaces the configs' 8, which converged more slowly per epoch
(configs/deformable_detr/README.md has the figures).
"""
import argparse
import glob
import json
import os
import os.path as osp
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from training_runs import synthetic_data_root

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO_ROOT, 'configs', 'deformable_detr')
MODELS = {
    'plain': ('deformable-detr_r18-tiny_1xb8-24e_synthetic.py', 1),
    'refine': ('deformable-detr-refine_r18-tiny_1xb8-24e_synthetic.py', 1),
    'two-stage': ('deformable-detr-refine-twostage_r18-tiny_1xb8-24e_synthetic.py', 1),
    'detr': ('detr_r18-tiny_1xb8-120e_synthetic.py', 5),
}


def run_dir(work_dir, name, seed):
    return osp.join(work_dir, f'{name}_seed{seed}')


def mAP_by_epoch(directory):
    """{epoch: coco/bbox_mAP} from the newest run's scalars.json."""
    runs = sorted(glob.glob(osp.join(directory, '2*_*', 'vis_data', 'scalars.json')))
    if not runs:
        return {}
    result, epoch = {}, 0
    with open(runs[-1]) as f:
        for line in f:
            record = json.loads(line)
            if 'epoch' in record:
                epoch = record['epoch']
            if 'coco/bbox_mAP' in record:
                result[record.get('step', epoch)] = record['coco/bbox_mAP']
    return result


def train(name, seed, epochs, args, threads):
    config, factor = MODELS[name]
    total = epochs * factor
    root = args.data_root.rstrip('/') + '/'
    options = [
        f'randomness.seed={seed}', f'train_cfg.max_epochs={total}',
        f'train_cfg.val_interval={factor}',
        f'param_scheduler.1.end={total}' if name != 'detr' else f'param_scheduler.0.end={total}',
        (f'param_scheduler.1.milestones=[{int(total * 0.8)}]' if name != 'detr'
         else f'param_scheduler.0.milestones=[{int(total * 0.8)}]'),
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/instances_val.json',
        f'train_dataloader.batch_size={args.batch}',
        # the Resize of configs/_base_/datasets/synthetic_coco.py's pipelines
        f'train_dataloader.dataset.pipeline.2.scale=({args.image_size},{args.image_size})',
        f'val_dataloader.dataset.pipeline.1.scale=({args.image_size},{args.image_size})',
        'default_hooks.checkpoint.interval=1000',
        *(args.cfg_options or []),
    ]
    directory = run_dir(args.work_dir, name, seed)
    command = [sys.executable, osp.join(REPO_ROOT, 'tools', 'train.py'),
               osp.join(CONFIGS, config), '--work-dir', directory, '--cfg-options', *options]
    print('+', ' '.join(command), flush=True)
    os.makedirs(args.work_dir, exist_ok=True)
    with open(directory + '.log', 'w') as log:
        code = subprocess.run(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                              env=dict(os.environ, PYTHONPATH=REPO_ROOT,
                                       OMP_NUM_THREADS=str(threads))).returncode
    if code != 0:
        raise RuntimeError(f'{name} seed {seed} failed (exit {code}); see {directory}.log')


def table(epochs, seeds, work_dir, names):
    deformable = [n for n in names if n != 'detr']
    columns = [(n, s) for n in deformable for s in seeds]
    if 'detr' in names:
        columns += [('detr', s) for s in seeds]
    results = {(n, s): mAP_by_epoch(run_dir(work_dir, n, s)) for n, s in columns}
    header = ['epoch'] + [f'{n}/s{s}' for n, s in columns] + [f'{n} mean' for n in names]
    print(' | '.join(f'{h:>12s}' for h in header))
    for e in range(1, epochs + 1):
        row = [f'{e}' + (f' (DETR {5 * e})' if 'detr' in names else '')]
        for n, s in columns:
            value = results[(n, s)].get(5 * e if n == 'detr' else e)
            row.append('-' if value is None else f'{value:.3f}')
        for n in names:
            values = [results[(n, s)].get(5 * e if n == 'detr' else e) for s in seeds]
            values = [v for v in values if v is not None]
            row.append(f'{sum(values) / len(values):.3f}' if values else '-')
        print(' | '.join(f'{c:>12s}' for c in row))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=10,
                        help='N: Deformable DETR epochs (DETR trains 5N)')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1])
    parser.add_argument('--only', nargs='+', choices=list(MODELS), default=list(MODELS))
    parser.add_argument('--work-dir', default=osp.join(REPO_ROOT, 'work_dirs', 'convergence'))
    parser.add_argument('--data-root', help='default: data/synthetic_coco at 256, else '
                        'a set generated at --image-size in the work dir')
    parser.add_argument('--image-size', type=int, default=256)
    parser.add_argument('--batch', type=int, default=4)
    parser.add_argument('--cfg-options', nargs='+', help='extra options for every run')
    parser.add_argument('--jobs', type=int, default=1, help='runs trained at a time')
    parser.add_argument('--table-only', action='store_true', help='print the table and stop')
    args = parser.parse_args(argv)
    if not args.table_only:
        if args.data_root is None:
            args.data_root = synthetic_data_root(args.work_dir, args.image_size)
        todo = [(name, seed) for name in args.only for seed in args.seeds
                if args.epochs * MODELS[name][1]
                not in mAP_by_epoch(run_dir(args.work_dir, name, seed))]
        threads = max(1, (os.cpu_count() or 1) // args.jobs)
        with ThreadPoolExecutor(args.jobs) as pool:
            runs = [pool.submit(train, name, seed, args.epochs, args, threads)
                    for name, seed in todo]
            for run in runs:
                run.result()
    table(args.epochs, args.seeds, args.work_dir, args.only)


if __name__ == '__main__':
    main()
