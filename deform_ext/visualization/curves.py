"""Loss and mAP curves from mmengine's JSON logs, one or several runs overlaid.

mmengine's ``LocalVisBackend`` writes ``<work_dir>/<timestamp>/vis_data/scalars.json``:
one JSON object per line, training records (``loss``, ``loss_cls``, …, with ``epoch``,
``iter`` and ``step``) every ``LoggerHook`` interval, and evaluation records
(``coco/bbox_mAP``, …, with ``step`` = the epoch, or the iteration in iteration-based
training). A run is given as that file, its timestamp folder, or the work dir (its
newest timestamp folder that has one).
"""
import glob
import json
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

DEFAULT_LOSSES = ('loss',)
DEFAULT_METRICS = ('coco/bbox_mAP', 'coco/bbox_mAP_50')


def scalars_path(run: str) -> str:
    """The ``scalars.json`` of a run given as the file, a timestamp folder or a work dir.

    Raises:
        FileNotFoundError: none found, naming ``run``.
    """
    if osp.isfile(run):
        return run
    direct = osp.join(run, 'vis_data', 'scalars.json')
    if osp.isfile(direct):
        return direct
    found = sorted(glob.glob(osp.join(run, '*', 'vis_data', 'scalars.json')))
    if not found:
        raise FileNotFoundError(f'{run}: no scalars.json (looked for {direct} and '
                                f'{osp.join(run, "*", "vis_data", "scalars.json")})')
    return found[-1]


def load_scalars(run: str) -> List[dict]:
    """The records of a run's ``scalars.json``, in order.

    Raises:
        FileNotFoundError: no log; ValueError: a line that is not JSON (file and line).
    """
    path = scalars_path(run)
    records = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as error:
                raise ValueError(f'{path}:{number}: not a JSON record ({error.msg})') from None
    return records


def training_x(records: List[dict], axis: str) -> np.ndarray:
    """x of each training record: the iteration, or the epoch as a fraction (epoch
    ``e``'s records spread over ``(e - 1, e]`` by iteration, from the iterations per
    epoch the log shows)."""
    iters = np.array([r.get('iter', r.get('step', i + 1)) for i, r in enumerate(records)],
                     dtype=np.float64)
    if axis == 'iter' or not all('epoch' in r for r in records):
        return iters
    epochs = np.array([r['epoch'] for r in records], dtype=np.float64)
    ends = {e: iters[epochs == e].max() for e in np.unique(epochs)}
    lengths = [ends[e] - ends[e - 1] for e in ends if e - 1 in ends]
    per_epoch = float(np.median(lengths)) if lengths else max(ends[min(ends)], 1.0)
    # where an epoch's previous one is not in the log (the first, or a resumed run's),
    # it is taken to have ended one epoch's iterations before this one's last record
    return np.array([e - 1 + min(1.0, (i - ends.get(e - 1, ends[e] - per_epoch)) / per_epoch)
                     for e, i in zip(epochs, iters)])


def run_series(records: List[dict], key: str, axis: str = 'epoch'
               ) -> Tuple[np.ndarray, np.ndarray]:
    """(x, y) of ``key``: training records on ``axis``, evaluation records at their
    ``step`` (an epoch, or an iteration in iteration-based training)."""
    with_key = [r for r in records if key in r and isinstance(r[key], (int, float))]
    training = [r for r in with_key if 'iter' in r]
    if training:
        return training_x(training, axis), np.array([r[key] for r in training], float)
    return (np.array([r.get('step', i + 1) for i, r in enumerate(with_key)], float),
            np.array([r[key] for r in with_key], float))


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` values (the first ones over fewer)."""
    if window <= 1 or len(values) < 2:
        return values
    cumulative = np.cumsum(np.insert(values, 0, 0.0))
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    return (cumulative[1:] - cumulative[np.arange(1, len(values) + 1) - counts]) / counts


def plot_curves(runs: Sequence[str], out: str, *, labels: Optional[Sequence[str]] = None,
                losses: Sequence[str] = DEFAULT_LOSSES,
                metrics: Sequence[str] = DEFAULT_METRICS, axis: str = 'epoch',
                smooth_window: int = 1, panel_size: Tuple[int, int] = (480, 360),
                dpi: int = 100, title: Optional[str] = None) -> Dict[str, object]:
    """Write a PNG with one panel per loss key and per metric key, each run a line.

    Args:
        runs: logs (see :func:`scalars_path`); labels: one per run (default: the
            work dir's name).
        losses, metrics: keys of the training and evaluation records; a key no run
            logged is left out (an error if none is left).
        axis: ``'epoch'`` or ``'iter'`` for the training curves.
        smooth_window: moving average of the training curves.
        panel_size: (width, height) pixels per panel; the PNG is
            ``panels * width`` by ``height`` pixels.

    Returns:
        dict: ``size`` (width, height), ``keys`` drawn, ``missing`` {run label: keys it
        did not log}, ``last`` {run label: {metric: last value}}.

    Raises:
        FileNotFoundError, ValueError: a run without a log, or nothing to draw.
    """
    from matplotlib.figure import Figure

    if not runs:
        raise ValueError('no runs given')
    if labels is None:
        labels = [_run_label(run) for run in runs]
    if len(labels) != len(runs):
        raise ValueError(f'{len(labels)} labels for {len(runs)} runs')
    if axis not in ('epoch', 'iter'):
        raise ValueError(f"axis must be 'epoch' or 'iter', got {axis!r}")
    logs = [load_scalars(run) for run in runs]
    logged = [set().union(*(r.keys() for r in records)) if records else set()
              for records in logs]
    keys = [k for k in (*losses, *metrics) if any(k in names for names in logged)]
    if not keys:
        everything = sorted(set().union(*logged) - {'epoch', 'iter', 'step'})
        raise ValueError(f'none of {", ".join((*losses, *metrics))} is in the logs of '
                         f'{", ".join(runs)}; they hold: {", ".join(everything) or "nothing"}')
    width, height = panel_size[0] * len(keys), panel_size[1]
    fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi, layout='constrained')
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    last = {label: {} for label in labels}
    for ax, key in zip(axes, keys):
        is_metric = key in metrics and key not in losses
        for label, records in zip(labels, logs):
            x, y = run_series(records, key, axis)
            if not len(x):
                continue
            if not is_metric:
                y = smooth(y, smooth_window)
            ax.plot(x, y, marker='o' if is_metric else None, markersize=3, label=label,
                    linewidth=1.2)
            if is_metric:
                last[label][key] = float(y[-1])
        ax.set_title(key, fontsize=10)
        ax.set_xlabel('epoch' if axis == 'epoch' or is_metric else 'iteration')
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.savefig(out, dpi=dpi, format='png')
    missing = {label: [k for k in keys if k not in names]
               for label, names in zip(labels, logged)}
    return dict(size=(width, height), keys=keys,
                missing={k: v for k, v in missing.items() if v}, last=last)


def _run_label(run: str) -> str:
    """A run's name: its work dir's folder name."""
    path = osp.abspath(scalars_path(run))
    run_dir = osp.dirname(osp.dirname(path))  # <work_dir>/<timestamp>
    work_dir = osp.dirname(run_dir)
    return osp.basename(work_dir) or osp.basename(run_dir)
