"""Ablations of the training tricks on the synthetic set: each row a config, trained
with ``tools/train.py`` for the same epochs and several seeds, one thread per run, runs
in parallel, resumable; prints COCO mAP and AP_small / medium / large (mean ± std over
the seeds found), step and data time per iteration and the training process's peak
memory per row.

    python benchmarks/ablation.py SUITE [--rows R ...] [--seeds 0 1 2] [--epochs N]
        [--jobs 2] [--work-dir work_dirs/ablation/SUITE] [--data-root R] [--image-size S]
        [--table-only]
    python benchmarks/ablation.py SUITE --step-time [--rows R ...] [--repeats 20]
        [--image-size S]

Suites and their rows: ``benchmarks/ablation_suites.py`` (``--list`` prints them).
A row's config is trained as it is, but for the seed, the epochs (lr steps at the
suite's fractions of them), checkpoints each epoch (one kept, for resuming) and an
evaluation at N/2 and N. Each (row, seed) goes to ``<work dir>/<row>_seed<seed>`` with
its log beside it; a finished run is not repeated, a stopped one resumes. The table
holds the runs finished so far, so ``--table-only`` can be read while they train.

Step and data time: medians of the per-iteration ``time`` / ``data_time`` of
mmengine's training log (first logged window of each run left out). Peak memory: the
training process's peak resident set (``ru_maxrss``; dataloader workers not
included), the largest over resumed attempts. Those come from runs trained two at a
time on a shared machine; ``--step-time`` compares the rows' models fairly instead: one
training step of each row's model in this process, one thread, the rows taking turns on
one random batch of 4 images, each with its config's own optim wrapper (optimizer,
clipping, autocast; ``training_runs.step_times_ms``), median ms and the ratio to the
first row. Only the model's step is timed, so rows that differ in their data
(pipeline, sampler, ``--cfg-options``) are refused there.
"""
import argparse
import glob
import json
import os.path as osp
import statistics
import sys
import threading

from ablation_suites import SUITES
from training_runs import (REPO_ROOT, mean_std, metrics_records, print_step_times, print_table,
                           run_in_parallel, synthetic_config, synthetic_data_root, train)

sys.path.insert(0, REPO_ROOT)

METRICS = {'mAP': 'coco/bbox_mAP', 'AP_s': 'coco/bbox_mAP_s', 'AP_m': 'coco/bbox_mAP_m',
           'AP_l': 'coco/bbox_mAP_l'}
HALF_METRICS = ('mAP', 'AP_s')  # also shown at N/2


def run_dir(args, row, seed):
    return osp.join(args.work_dir, f'{row}_seed{seed}')


def results_path(args, row, seed):
    return osp.join(run_dir(args, row, seed), 'results.json')


def first_seed(args) -> int:
    """The seed of one-seed rows and of the checkpoints other rows learn from: the
    lowest of ``--seeds``, whatever their order (``--seeds 2 0`` reuses seed 0's
    teacher rather than training one with seed 2)."""
    return min(args.seeds)


class FirstSeedCheckpoint:
    """``{checkpoint[ROW]}`` in a row's options: the last checkpoint of ROW's run with
    :func:`first_seed` (e.g. the teacher a distilled row learns from)."""

    def __init__(self, args):
        self.args = args

    def __getitem__(self, row):
        seed = first_seed(self.args)
        pointer = osp.join(run_dir(self.args, row, seed), 'last_checkpoint')
        if not osp.exists(pointer):
            raise RuntimeError(f'row {row} (seed {seed}) has no checkpoint yet; train it first')
        return open(pointer).read().strip()


def row_epochs(args, row):
    return args.epochs * args.suite['rows'][row].epochs_scale


def row_seeds(args, row):
    return [first_seed(args)] if args.suite['rows'][row].one_seed else args.seeds


def train_options(args, seed, epochs):
    """The ``--cfg-options`` every row gets: seed, schedule, checkpoints, evaluations."""
    half = max(epochs // 2, 1)
    milestones = sorted({max(1, round(f * epochs)) for f in args.suite['lr_steps']})
    return [f'randomness.seed={seed}', f'train_cfg.max_epochs={epochs}',
            f'train_cfg.val_interval={half}', f'param_scheduler.1.end={epochs}',
            f'param_scheduler.1.milestones={milestones}',
            'default_hooks.checkpoint.interval=1', 'default_hooks.checkpoint.max_keep_ckpts=1']


def iteration_times(work_dir):
    """(median step s, median data s) per iteration from the runs' training logs."""
    steps, data = [], []
    for path in glob.glob(osp.join(work_dir, '2*_*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            records = [json.loads(line) for line in f]
        records = [r for r in records if 'time' in r and 'data_time' in r][1:]
        steps += [r['time'] for r in records]
        data += [r['data_time'] for r in records]
    return (statistics.median(steps) if steps else None,
            statistics.median(data) if data else None)


def benchmark_run(args, row, seed, threads):
    """Train one (row, seed) and write ``<run>/results.json``."""
    directory = run_dir(args, row, seed)
    spec = args.suite['rows'][row]
    epochs = row_epochs(args, row)
    config = synthetic_config(osp.join(REPO_ROOT, spec.config), args.data_root,
                             args.image_size, directory)
    options = [o.format(checkpoint=FirstSeedCheckpoint(args)) for o in spec.options]
    peak_mib = train(config, directory, [*train_options(args, seed, epochs), *options], threads)
    records = [r for r in metrics_records(directory) if METRICS['mAP'] in r]
    final = [r for r in records if r.get('step') == epochs]
    if not final:
        raise RuntimeError(f'{directory}: training ended without the epoch-{epochs} '
                           'evaluation; remove the directory to train that run again')
    half = [r for r in records if r.get('step') == max(epochs // 2, 1)]
    results = {name: final[-1][key] for name, key in METRICS.items()}
    results.update({f'{name}@N/2': half[-1][METRICS[name]] for name in HALF_METRICS if half})
    step, data = iteration_times(directory)
    results.update(step_s=step, data_s=data, peak_mib=peak_mib)
    with open(results_path(args, row, seed), 'w') as f:
        json.dump(results, f)


def scheduled_runs(args):
    """The unfinished (row, seed) runs as tasks for ``run_in_parallel``: the rows that
    others need (``Row.needs``, trained even if not asked for) first, then the rows that
    need nothing, then those that do, first seed first within each. A run that needs a
    row waits in its slot for that row's first-seed run, so the other slot meanwhile
    trains the rows that need nothing."""
    rows = args.suite['rows']
    needed = {need for row in args.rows for need in rows[row].needs}
    done = {row: threading.Event() for row in needed}
    runs = sorted(((row, seed) for row in sorted(needed) + [r for r in args.rows if r not in needed]
                   for seed in row_seeds(args, row)),
                  key=lambda run: (run[0] not in needed, bool(rows[run[0]].needs),
                                   args.seeds.index(run[1])))
    for row in needed:
        if osp.exists(results_path(args, row, first_seed(args))):
            done[row].set()

    def task(threads, row, seed):
        for need in rows[row].needs:
            done[need].wait()
        try:
            benchmark_run(args, row, seed, threads)
        finally:
            if row in done and seed == first_seed(args):
                done[row].set()  # on failure too: the dependents then say why

    return [lambda threads, r=row, s=seed: task(threads, r, s) for row, seed in runs
            if not osp.exists(results_path(args, row, seed))]


def table(args):
    header = ['row', 'epochs', 'seeds', *METRICS, *[f'{m} @half' for m in HALF_METRICS],
              'step s', 'data s', 'peak MiB']
    rows = []
    for row in args.rows:
        found = [json.load(open(results_path(args, row, seed))) for seed in args.seeds
                 if osp.exists(results_path(args, row, seed))]
        rows.append([row, str(row_epochs(args, row)), str(len(found)),
                     *[mean_std([r.get(m) for r in found]) for m in METRICS],
                     *[mean_std([r.get(f'{m}@N/2') for r in found]) for m in HALF_METRICS],
                     mean_std([r['step_s'] for r in found], 2),
                     mean_std([r['data_s'] for r in found], 3),
                     mean_std([r['peak_mib'] for r in found], 0)])
    print(f'{args.suite_name}: N = {args.epochs} epochs, seeds {args.seeds}, mean ± std '
          '(sample std) over the seeds found; @half: at half the row\'s epochs:')
    print_table(header, rows)
    print()
    print_table(['row', 'what it is'],
                [[row, args.suite['rows'][row].description] for row in args.rows])


def step_times(args):
    """Median ms of a training step per row, alternating in this process."""
    rows = args.suite['rows']
    print_step_times(args.rows, [osp.join(REPO_ROOT, rows[row].config) for row in args.rows],
                     args.image_size or 256, args.repeats)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('suite', nargs='?', choices=list(SUITES))
    parser.add_argument('--rows', nargs='+', help='default: the suite\'s default rows')
    parser.add_argument('--epochs', type=int, help="default: the suite's")
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2])
    parser.add_argument('--jobs', type=int, default=2, help='runs trained at a time')
    parser.add_argument('--work-dir', help='default: work_dirs/ablation/SUITE')
    parser.add_argument('--data-root', help='another synthetic COCO set (the same folder '
                        'layout) instead of data/synthetic_coco')
    parser.add_argument('--image-size', type=int,
                        help='train and test at this square size instead of 256; without '
                        '--data-root, on a synthetic set generated at that size into the '
                        'work dir')
    parser.add_argument('--table-only', action='store_true', help='print the table and stop')
    parser.add_argument('--step-time', action='store_true',
                        help='time one training step of each row in this process instead')
    parser.add_argument('--repeats', type=int, default=20, help='steps timed per row')
    parser.add_argument('--list', action='store_true', help='print the suites and rows')
    args = parser.parse_args(argv)
    if args.list or args.suite is None:
        for name, suite in SUITES.items():
            print_table([f'{name} row', 'config', 'what it is'],
                        [[row, spec.config, spec.description]
                         for row, spec in suite['rows'].items()])
            print()
        return
    args.suite_name, args.suite = args.suite, SUITES[args.suite]
    args.rows = args.rows or list(args.suite['default_rows'])
    unknown = [row for row in args.rows if row not in args.suite['rows']]
    if unknown:
        parser.error(f'{args.suite_name} has no rows {unknown}; it has '
                     f'{list(args.suite["rows"])}')
    if args.step_time:
        needing = [row for row in args.rows if args.suite['rows'][row].needs]
        if needing:
            parser.error(f'rows {needing} need a trained row\'s checkpoint; --step-time '
                         'times rows that train from scratch')
        with_options = [row for row in args.rows if args.suite['rows'][row].options]
        if with_options:
            parser.error(f'rows {with_options} change their config by options; --step-time '
                         "times each row's config as it is")
        return step_times(args)
    args.epochs = args.epochs or args.suite['epochs']
    args.work_dir = args.work_dir or osp.join(REPO_ROOT, 'work_dirs', 'ablation', args.suite_name)
    if not args.table_only:
        if args.image_size and not args.data_root:
            args.data_root = synthetic_data_root(args.work_dir, args.image_size)
        run_in_parallel(scheduled_runs(args), args.jobs)
    table(args)


if __name__ == '__main__':
    main()
