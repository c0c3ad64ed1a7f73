"""Training runs for the accuracy benchmarks (proposals.py, ablation.py): each
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
from typing import Callable, List, Optional, Sequence

from mmengine.config import Config

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_DATA_ROOT = 'data/synthetic_coco/'  # the synthetic configs' (make data)


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


def synthetic_config(config: str, data_root: Optional[str], image_size: Optional[int],
                     directory: str) -> str:
    """``config`` itself, or with ``data_root`` or ``image_size`` given, a copy written
    to ``directory`` whose every path under data/synthetic_coco/ (dataset roots,
    annotation files, the Copy-Paste bank's root) is under ``data_root`` instead, and
    whose every ``Resize`` scale and ``Pad`` size of the synthetic configs' 256 x 256 is
    ``image_size`` square."""
    if data_root is None and image_size is None:
        return config
    root = (data_root or DEFAULT_DATA_ROOT).rstrip('/') + '/'
    side = (image_size, image_size) if image_size else None

    def rewrite(value):
        if isinstance(value, str) and value.startswith(DEFAULT_DATA_ROOT):
            return root + value[len(DEFAULT_DATA_ROOT):]
        if isinstance(value, dict):
            value = type(value)({k: rewrite(v) for k, v in value.items()})
            for kind, key in (('Resize', 'scale'), ('Pad', 'size')):
                if side and value.get('type') == kind and tuple(value.get(key) or ()) == (256, 256):
                    value[key] = side
            return value
        if isinstance(value, (list, tuple)):
            return type(value)(rewrite(v) for v in value)
        return value
    os.makedirs(directory, exist_ok=True)
    path = osp.join(directory, osp.basename(config))
    Config(rewrite(Config.fromfile(config).to_dict())).dump(path)
    return path


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


def step_times_ms(configs: Sequence[str], image_size: int, repeats: int,
                  objects_per_image: int = 6) -> List[float]:
    """Median ms of one training step (forward, backward, the config's own
    ``optim_wrapper`` step: its optimizer, gradient clipping and autocast, e.g. the bf16
    of ``deform_ext.AutocastOptimWrapper``) of each config's model, one thread, in this
    process, the models taking turns on one random batch of 4 images
    (``image_size``², ``objects_per_image`` boxes each; without the data
    preprocessor's batch augments, e.g. multi-scale resizing)."""
    import torch
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    from bench_utils import median_ms

    from deform_ext.testing import build_model, demo_batch, without_init_cfg
    torch.set_num_threads(1)
    steps = []
    for path in configs:
        cfg = Config.fromfile(path)
        model_cfg = without_init_cfg(cfg.model.to_dict())
        model_cfg['data_preprocessor'].pop('batch_augments', None)  # one batch for all
        model = build_model(model_cfg, scope=cfg.default_scope)
        batch = demo_batch(model, image_shapes=[(3, image_size, image_size)] * 4,
                           num_items=[objects_per_image] * 4)
        with DefaultScope.overwrite_default_scope(cfg.default_scope):
            optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)

        def step(model=model, batch=batch, optim_wrapper=optim_wrapper):
            with optim_wrapper.optim_context(model):
                total, _ = model.parse_losses(model(**batch, mode='loss'))
            optim_wrapper.update_params(total)
        steps.append(step)
    return median_ms(steps, repeats=repeats, warmup=3, device='cpu')


def print_step_times(names: Sequence[str], configs: Sequence[str], image_size: int,
                     repeats: int, label: str = 'row') -> None:
    """:func:`step_times_ms` of ``configs`` as a table: one row per name, its median ms
    and its ratio to the first."""
    times = step_times_ms(configs, image_size, repeats)
    print_table([label, 'step ms', f'ratio to {names[0]}'],
                [[name, f'{t:.1f}', f'{t / times[0]:.2f}'] for name, t in zip(names, times)])
