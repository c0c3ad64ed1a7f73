"""deform_ext's compatibility patches of mmengine and mmdet, in one place.

Each patch fixes one thing that the released packages get wrong on current PyTorch or
on a CPU-only machine; each is a ``Patch`` (see ``patch.py``): recorded, idempotent,
undoable, and applied only to the versions it was written for.

- checkpoint_loading (mmengine 0.10): checkpoints load under torch >= 2.6 with
  ``weights_only`` kept on;
- checkpoint_writes (mmengine 0.10): checkpoints and ``last_checkpoint`` are written
  atomically, and nothing is deleted before its successor is on disk;
- distributed_launch (mmengine 0.10): the ``pytorch`` and ``slurm`` launchers work on a
  CPU-only torch;
- test_metrics_json (mmengine 0.10): in a multi-process test only the main process
  writes the metrics JSON (every rank wrote the same file at once);
- coco_errors (mmdet 3.3): unreadable annotation files are named in the error.

``import deform_ext`` installs them; ``DEFORM_EXT_NO_COMPAT=1`` in the environment
keeps them all off. ``uninstall()`` undoes them; ``compat_disabled()`` undoes them for
the duration of a ``with`` block.
"""
import contextlib
import os

from . import (checkpoint_loading, checkpoint_writes, coco_errors, distributed_launch,
               test_metrics_json)
from .patch import Patch

PATCHES = (checkpoint_loading.PATCH, checkpoint_writes.PATCH, distributed_launch.PATCH,
           test_metrics_json.PATCH, coco_errors.PATCH)
OPT_OUT_VARIABLE = 'DEFORM_EXT_NO_COMPAT'


def opted_out() -> bool:
    return os.environ.get(OPT_OUT_VARIABLE, '').strip().lower() not in ('', '0', 'false', 'no')


def install() -> list:
    """Install every patch whose package version it supports, unless
    ``DEFORM_EXT_NO_COMPAT`` is set; return the names of those in place."""
    if opted_out():
        return []
    return [patch.name for patch in PATCHES if patch.install()]


def uninstall() -> None:
    """Undo every patch, restoring mmengine's and mmdet's own code."""
    for patch in reversed(PATCHES):
        patch.uninstall()


def installed() -> list:
    """The names of the patches now in place."""
    return [patch.name for patch in PATCHES if patch.installed]


@contextlib.contextmanager
def compat_disabled():
    """Run a block with mmengine and mmdet unpatched; re-install what was in place."""
    before = [patch for patch in PATCHES if patch.installed]
    uninstall()
    try:
        yield
    finally:
        for patch in before:
            patch.install()


__all__ = ['PATCHES', 'Patch', 'compat_disabled', 'install', 'installed', 'opted_out',
           'uninstall']
