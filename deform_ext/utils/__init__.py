"""Compatibility fixes for mmengine/mmdet on current PyTorch, applied on import.

- checkpoint_compat: mmengine checkpoints load under torch >= 2.6 with
  ``weights_only`` kept on;
- dist_compat: the ``pytorch`` and ``slurm`` launchers work on a CPU-only torch;
- dataset_errors: unreadable annotation files are named in the error;
- checkpoint_atomic: checkpoints and ``last_checkpoint`` are written atomically.
"""
from . import checkpoint_atomic, checkpoint_compat, dataset_errors, dist_compat
from .config_check import check_top_level_keys, load_config

checkpoint_compat.install()
dist_compat.install()
dataset_errors.install()
checkpoint_atomic.install()

__all__ = ['check_top_level_keys', 'load_config']
