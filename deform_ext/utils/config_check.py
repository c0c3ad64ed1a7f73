"""Checks of a config before a Runner is built from it.

mmengine silently ignores unknown top-level keys, so ``trian_cfg=...`` trains with
the default loop instead of the one the user wrote. We reject a top-level key that
is not a Runner key but is within a small edit distance of one.
"""
import inspect
import os.path as osp

from mmengine.config import Config
from mmengine.runner import Runner

# Top-level keys that configs use without being Runner arguments.
_KNOWN_EXTRA_KEYS = {
    '_base_', 'custom_imports', 'default_scope', 'auto_scale_lr', 'backend_args',
    'dataset_type', 'data_root', 'vis_backends', 'train_pipeline', 'test_pipeline',
    'val_pipeline', 'max_epochs', 'max_iters', 'base_lr', 'interval', 'metainfo',
    'num_classes', 'img_scale', 'image_size', 'file_client_args',
}


def runner_keys() -> set:
    """The keyword arguments of ``mmengine.runner.Runner``."""
    return set(inspect.signature(Runner.__init__).parameters) - {'self'}


def edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and
    swaps of adjacent characters each cost 1 (``trian`` → ``train`` is 1)."""
    rows = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            rows[i][j] = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                rows[i][j] = min(rows[i][j], rows[i - 2][j - 2] + 1)
    return rows[-1][-1]


def misspelt_runner_keys(keys) -> dict:
    """Map each key that looks like a misspelling of a Runner key to that key."""
    known = runner_keys()
    suspects = {}
    for key in keys:
        if key in known or key in _KNOWN_EXTRA_KEYS or key.startswith('_'):
            continue
        budget = 1 if len(key) < 6 else 2
        close = sorted((edit_distance(key, name), name) for name in known)
        if close and close[0][0] <= budget:
            suspects[key] = close[0][1]
    return suspects


def load_config(path: str) -> Config:
    """Load a config file, with errors that name a missing file or a misspelt key.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        KeyError: a top-level key looks like a misspelt Runner key.
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'config file {path} does not exist')
    cfg = Config.fromfile(path)
    check_top_level_keys(cfg, source=path)
    return cfg


def check_top_level_keys(cfg: Config, source: str = 'config') -> None:
    """Raise ``KeyError`` naming every top-level key that resembles a Runner key."""
    suspects = misspelt_runner_keys(cfg.keys())
    if suspects:
        hints = ', '.join(f"'{key}' (did you mean '{name}'?)" for key, name in suspects.items())
        raise KeyError(f'{source}: unknown top-level key {hints}; mmengine would ignore it')
