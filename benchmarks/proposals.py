"""First stages for R-CNN on the synthetic set: mmdet's RPNHead against EncoderRPNHead
(one-to-one, one-to-many matching and IoU assignment), as proposal recall and as the detector's mAP.

    python benchmarks/proposals.py [--epochs 12] [--seeds 0 1 2] [--jobs 2]
        [--image-size 128] [--rows rpn o2o iou] [--work-dir D] [--data-root R]
        [--table-only]
    python benchmarks/proposals.py --step-time [--rows ...] [--image-size 128]

Each (row, seed) trains the row's Faster (or Cascade) R-CNN config of
projects/encoder_rpn/configs with ``tools/train.py`` for ``--epochs`` epochs (lr drop
at 75 % and 90 %), evaluates the detector once at the end (COCO bbox mAP, AP_small), then
tests its first stage alone (mmdet's ``RPN`` detector on the trained weights, up to
1,000 proposals, ``tools/test.py``) with ``CocoMetric(metric='proposal')``:
class-agnostic AR@100/300/1000 and AR_small at 300 and 1,000 proposals. Runs whose
results are in the work dir are not repeated and a stopped run resumes from its last
checkpoint, so an interrupted benchmark picks up where it stopped. ``--jobs J`` runs J at
a time with cores/J threads each; logs go to ``<work dir>/<row>_seed<seed>.log``.

``--step-time`` times one training step (forward, backward, AdamW) of every row's
detector in this process, one thread, rows taking turns on the same batch, and prints
each row's median and its ratio to the first row.
"""
import argparse
import json
import os.path as osp
import sys

from training_runs import (REPO_ROOT, mean_std, metrics_records, print_step_times, print_table,
                           run_in_parallel, run_tool, synthetic_config, synthetic_data_root,
                           train)

sys.path.insert(0, REPO_ROOT)

CONFIGS = osp.join(REPO_ROOT, 'projects', 'encoder_rpn', 'configs')
ROWS = {  # name: (config, what the first stage is)
    'rpn': ('faster-rcnn_r18-tiny_fpn_1xb4-12e_synthetic.py',
            'Faster R-CNN, RPNHead (IoU, NMS), 1,000 proposals'),
    'o2o': ('faster-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py',
            'Faster R-CNN, EncoderRPNHead one-to-one, 300 proposals'),
    'iou': ('faster-rcnn-encoder-rpn-iou_r18-tiny_fpn_1xb4-12e_synthetic.py',
            'Faster R-CNN, EncoderRPNHead IoU + NMS, 300 proposals'),
    'o2m': ('faster-rcnn-encoder-rpn-o2m_r18-tiny_fpn_1xb4-12e_synthetic.py',
            'Faster R-CNN, EncoderRPNHead one-to-many matching (x3) + NMS, 300 proposals'),
    'cascade-rpn': ('cascade-rcnn_r18-tiny_fpn_1xb4-12e_synthetic.py',
                    'Cascade R-CNN, RPNHead, 1,000 proposals'),
    'cascade-o2o': ('cascade-rcnn-encoder-rpn_r18-tiny_fpn_1xb4-12e_synthetic.py',
                    'Cascade R-CNN, EncoderRPNHead one-to-one, 300 proposals'),
    'cascade-o2m': ('cascade-rcnn-encoder-rpn-o2m_r18-tiny_fpn_1xb4-12e_synthetic.py',
                    'Cascade R-CNN, EncoderRPNHead one-to-many matching (x3) + NMS, '
                    '300 proposals'),
}
PROPOSALS_EVALUATED = 1000
RECALL = {  # column: (evaluator prefix, CocoMetric item); CocoMetric names its items
    # for proposal_nums (100, 300, 1000) whatever they are, so the 'at300' evaluator
    # (proposal_nums (10, 100, 300)) reports AR_small@300 under 'AR_s@1000'
    'AR@100': ('at1000', 'AR@100'), 'AR@300': ('at1000', 'AR@300'),
    'AR@1000': ('at1000', 'AR@1000'), 'AR_s@300': ('at300', 'AR_s@1000'),
    'AR_s@1000': ('at1000', 'AR_s@1000'),
}
DETECTION = {'mAP': 'coco/bbox_mAP', 'AP_s': 'coco/bbox_mAP_s', 'AP_l': 'coco/bbox_mAP_l'}


def run_dir(work_dir, row, seed):
    return osp.join(work_dir, f'{row}_seed{seed}')


def train_options(args, seed):
    epochs = args.epochs
    return [
        f'randomness.seed={seed}', f'train_cfg.max_epochs={epochs}',
        f'train_cfg.val_interval={epochs}', f'param_scheduler.1.end={epochs}',
        f'param_scheduler.1.milestones=[{round(0.75 * epochs)},{round(0.9 * epochs)}]',
        'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=1',
    ]


def proposal_config(directory, row):
    """Write ``<run>/first_stage.py``: the trained detector's backbone, neck and first
    stage as mmdet's ``RPN`` detector, evaluated by two proposal metrics."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(directory, ROWS[row][0]))  # as the runner dumped it
    cfg.resume = False  # a resumed training dumps resume=True; testing loads weights only
    model = cfg.model
    cfg.model = dict(type='RPN', data_preprocessor=model.data_preprocessor,
                     backbone=model.backbone, neck=model.neck, rpn_head=model.rpn_head,
                     train_cfg=None,
                     test_cfg=dict(rpn=dict(model.test_cfg.rpn, max_per_img=PROPOSALS_EVALUATED)))
    ann_file = cfg.test_evaluator.ann_file
    cfg.test_evaluator = [
        dict(type='CocoMetric', ann_file=ann_file, metric='proposal', prefix='at1000',
             proposal_nums=(100, 300, 1000)),
        dict(type='CocoMetric', ann_file=ann_file, metric='proposal', prefix='at300',
             proposal_nums=(10, 100, 300)),
    ]
    path = osp.join(directory, 'first_stage.py')
    cfg.dump(path)
    return path


def results_path(args, row, seed):
    return osp.join(run_dir(args.work_dir, row, seed), 'results.json')


def benchmark_run(args, row, seed, threads):
    """Train, evaluate the first stage alone, and write ``<run>/results.json``."""
    directory = run_dir(args.work_dir, row, seed)
    checkpoint = osp.join(directory, f'epoch_{args.epochs}.pth')
    if not osp.exists(checkpoint):
        config = synthetic_config(osp.join(CONFIGS, ROWS[row][0]), args.data_root,
                                  args.image_size, directory)
        train(config, directory, train_options(args, seed), threads)
    run_tool(['test.py', proposal_config(directory, row), checkpoint,
              '--work-dir', osp.join(directory, 'first_stage')],
             directory + '.log', threads)
    detection = [r for r in metrics_records(directory) if DETECTION['mAP'] in r]
    if not detection:
        raise RuntimeError(f'{directory} has {checkpoint} but no final evaluation; '
                           'remove the directory to train that run again')
    detection = detection[-1]
    recall = metrics_records(osp.join(directory, 'first_stage'))[-1]
    results = {name: detection[key] for name, key in DETECTION.items()}
    results.update({name: recall[f'{prefix}/{item}'] for name, (prefix, item) in RECALL.items()})
    with open(results_path(args, row, seed), 'w') as f:
        json.dump(results, f)


def table(args):
    header = ['first stage', *RECALL, *DETECTION]
    rows = []
    for row in args.rows:
        found = [json.load(open(results_path(args, row, seed))) for seed in args.seeds
                 if osp.exists(results_path(args, row, seed))]
        rows.append([f'{ROWS[row][1]} ({len(found)} seeds)',
                     *[mean_std([r[c] for r in found]) for c in [*RECALL, *DETECTION]]])
    print(f'{args.epochs} epochs at {args.image_size} px, seeds {args.seeds}, mean ± std:')
    print_table(header, rows)


def step_times(args):
    """Median ms of a training step per row (``training_runs.step_times_ms``)."""
    print_step_times([ROWS[row][1] for row in args.rows],
                     [osp.join(CONFIGS, ROWS[row][0]) for row in args.rows],
                     args.image_size, args.repeats, label='first stage')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--epochs', type=int, default=12)
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--rows', nargs='+', choices=list(ROWS), default=['rpn', 'o2o', 'iou'])
    parser.add_argument('--work-dir', default=osp.join(REPO_ROOT, 'work_dirs', 'proposals'))
    parser.add_argument('--image-size', type=int, default=128)
    parser.add_argument('--data-root', help='a synthetic COCO set; default: generated at '
                        '--image-size into the work dir (data/synthetic_coco at 256)')
    parser.add_argument('--jobs', type=int, default=2, help='runs trained at a time')
    parser.add_argument('--table-only', action='store_true', help='print the table and stop')
    parser.add_argument('--step-time', action='store_true',
                        help='time one training step per row instead')
    parser.add_argument('--repeats', type=int, default=20, help='timed steps (--step-time)')
    args = parser.parse_args(argv)
    if args.step_time:
        return step_times(args)
    if not args.table_only:
        args.data_root = args.data_root or synthetic_data_root(args.work_dir, args.image_size)
        todo = [(row, seed) for row in args.rows for seed in args.seeds
                if not osp.exists(results_path(args, row, seed))]
        run_in_parallel([lambda threads, r=r, s=s: benchmark_run(args, r, s, threads)
                         for r, s in todo], args.jobs)
    table(args)


if __name__ == '__main__':
    main()
