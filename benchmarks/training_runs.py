"""Training runs for the accuracy benchmarks (proposals.py; later the ablations): each
run is ``tools/train.py CONFIG`` on the synthetic set, one per (row, seed), several at
a time with one thread each, resumable (a run that stopped resumes from its last
checkpoint; a finished one is not repeated)."""
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def synthetic_data_root(work_dir: str, image_size: int) -> str:
    """``data/synthetic_coco`` at 256 px (``make data``); at another size a set generated
    into the work dir with the same seed and counts."""
    if image_size == 256:
        return osp.join(REPO_ROOT, 'data', 'synthetic_coco')
    root = osp.join(work_dir, f'synthetic_coco_{image_size}')
    subprocess.run([sys.executable, osp.join(REPO_ROOT, 'tools', 'data',
                                             'generate_synthetic_coco.py'),
                    '--out-dir', root, '--image-size', str(image_size)], check=True,
                   stdout=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=REPO_ROOT))
    return root


def synthetic_options(data_root: str, image_size: int) -> List[str]:
    """``--cfg-options`` that point a synthetic config (configs/_base_/datasets/
    synthetic_coco.py's pipelines) at ``data_root`` and resize to ``image_size``."""
    root = data_root.rstrip('/') + '/'
    return [
        f'train_dataloader.dataset.data_root={root}', f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/instances_val.json',
        f'test_evaluator.ann_file={root}annotations/instances_val.json',
        f'train_dataloader.dataset.pipeline.2.scale=({image_size},{image_size})',
        f'val_dataloader.dataset.pipeline.1.scale=({image_size},{image_size})',
        f'test_dataloader.dataset.pipeline.1.scale=({image_size},{image_size})',
    ]


def run_tool(arguments: Sequence[str], log_path: str, threads: int) -> float:
    """``python tools/<arguments>`` from the repository root with ``threads`` threads,
    output to ``log_path``; returns the process's peak resident memory in MiB (its
    dataloader workers not included). Raises RuntimeError naming the log on failure."""
    command = [sys.executable, osp.join(REPO_ROOT, 'tools', arguments[0]), *arguments[1:]]
    os.makedirs(osp.dirname(log_path), exist_ok=True)
    print('+', ' '.join(command), flush=True)
    with open(log_path, 'a') as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                   env=dict(os.environ, PYTHONPATH=REPO_ROOT,
                                            OMP_NUM_THREADS=str(threads)))
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f'{" ".join(arguments[:2])} failed (exit {code}); see {log_path}')
    return usage.ru_maxrss / 1024  # KiB on Linux


def train(config: str, work_dir: str, options: Sequence[str], threads: int) -> float:
    """``tools/train.py config`` into ``work_dir``, resuming if it holds a checkpoint;
    returns the largest peak memory (MiB) of the training processes that ran there
    (kept in ``<work_dir>/peak_rss_mib.txt`` across resumed attempts)."""
    resume = ['--resume'] if osp.exists(osp.join(work_dir, 'last_checkpoint')) else []
    peak = run_tool(['train.py', config, '--work-dir', work_dir, *resume, '--cfg-options',
                     *options], work_dir + '.log', threads)
    record = osp.join(work_dir, 'peak_rss_mib.txt')
    if osp.exists(record):
        peak = max(peak, float(open(record).read()))
    with open(record, 'w') as f:
        f.write(f'{peak:.1f}')
    return peak


def metrics_records(work_dir: str) -> List[dict]:
    """Every record with a metric (``coco/...`` or another ``prefix/...`` key) that the
    runs in ``work_dir`` logged: validation scalars and test results, oldest first."""
    paths = glob.glob(osp.join(work_dir, '2*_*', 'vis_data', 'scalars.json'))
    paths += glob.glob(osp.join(work_dir, '2*_*', '2*_*.json'))
    records = []
    for path in sorted(paths):  # run directories are timestamps
        with open(path) as f:
            for line in f:
                record = json.loads(line)
                if any('/' in key for key in record):
                    records.append(record)
    return records


def run_in_parallel(tasks: Sequence[Callable[[int], None]], jobs: int) -> None:
    """Call each task with its thread count (the cores shared by ``jobs`` at a time)."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(jobs) as pool:
        for future in [pool.submit(task, threads) for task in tasks]:
            future.result()


def mean_std(values: Sequence[float], digits: int = 3) -> str:
    """``mean ± std`` (sample std) of the values, ``-`` if there are none."""
    values = [v for v in values if v is not None]
    if not values:
        return '-'
    if len(values) == 1:
        return f'{values[0]:.{digits}f}'
    return f'{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}'


def print_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A Markdown table."""
    print('| ' + ' | '.join(header) + ' |')
    print('|' + '---|' * len(header))
    for row in rows:
        print('| ' + ' | '.join(row) + ' |')
