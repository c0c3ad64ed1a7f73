"""Patch: checkpoint writes that lose nothing.

mmengine 0.10 writes a checkpoint with a plain ``open(path, 'wb')`` over the final
name, writes ``last_checkpoint`` the same way, and its ``CheckpointHook`` deletes the
oldest kept checkpoint, and the previous best one, *before* writing the new one. A
job killed or failing during the write (preemption, SIGKILL, a full disk) therefore
leaves a truncated ``epoch_N.pth`` that ``last_checkpoint`` may already name, and with
``max_keep_ckpts=1`` or ``save_best`` no good checkpoint at all. Here:

- local checkpoints and ``last_checkpoint`` are written with ``atomic_write``
  (``deform_ext.utils.atomic_write``): complete or absent;
- ``CheckpointHook``'s saving methods (``after_train_epoch``, ``after_train_iter``,
  ``after_val_epoch``) run with their deletions held back until the method has
  written what it saves: the old best and the outdated checkpoints are removed only
  after their successors are on disk, and not at all when writing them failed;
- auto-resume (``resume=True`` without ``load_from``) first removes the temporary
  files that a killed writer left behind in the work dir (main process only).

Remote backends (``s3://`` and the like) keep mmengine's own write.
"""
import functools
import io

import mmengine.runner
import mmengine.runner._flexible_runner as flexible_runner
import mmengine.runner.checkpoint as checkpoint_module
import mmengine.runner.runner as runner_module
import torch
from mmengine.dist import is_main_process
from mmengine.fileio import get_file_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.hooks import checkpoint_hook as checkpoint_hook_module
from mmengine.logging import print_log

from deform_ext.utils.atomic_write import atomic_write, remove_partial_files
from .patch import Patch

SAVING_HOOK_METHODS = ('after_train_epoch', 'after_train_iter', 'after_val_epoch')


def _dump_checkpoint(checkpoint, file) -> None:
    """Serialise ``checkpoint`` into the open binary ``file`` (tests patch this)."""
    torch.save(checkpoint, file)


def _atomic_save_checkpoint(original):

    @functools.wraps(original)
    def save_checkpoint(checkpoint, filename, file_client_args=None, backend_args=None):
        local = (file_client_args is None and not str(filename).startswith('pavi://')
                 and isinstance(get_file_backend(str(filename), backend_args=backend_args),
                                LocalBackend))
        if not local:
            return original(checkpoint, filename, file_client_args=file_client_args,
                            backend_args=backend_args)
        atomic_write(str(filename), lambda f: _dump_checkpoint(checkpoint, f))

    return save_checkpoint


def _cleaning_find_latest(original):

    @functools.wraps(original)
    def find_latest_checkpoint(path):
        if is_main_process():
            removed = remove_partial_files(path)
            if removed:
                print_log(f'removed unfinished checkpoint writes {removed} from {path}',
                          logger='current')
        return original(path)

    return find_latest_checkpoint


class _AtomicTextFile(io.StringIO):
    """A text file open for writing that replaces its path atomically when closed
    without an error (a failed ``with`` block leaves the old file)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    def __exit__(self, error_type, error, traceback):
        if error_type is None:
            text = self.getvalue().encode('utf-8')
            atomic_write(self.path, lambda f: f.write(text))
        self.close()


def _open_text_atomically(file, mode='r', *args, **kwargs):
    """``open`` as the checkpoint hook module sees it: its one write, of
    ``last_checkpoint`` (mode ``'w'``), replaces the file atomically."""
    if mode == 'w':
        return _AtomicTextFile(file)
    return open(file, mode, *args, **kwargs)


class _DeferredRemovals:
    """A file backend whose ``remove`` and ``rmtree`` wait for ``apply()``."""

    def __init__(self, backend):
        self.backend = backend
        self.pending = []

    def remove(self, path):
        self.pending.append((self.backend.remove, path))

    def rmtree(self, path):
        self.pending.append((self.backend.rmtree, path))

    def apply(self, keep):
        """Carry out the removals, except of the paths in ``keep``."""
        for remove, path in self.pending:
            if path not in keep and self.backend.exists(path):
                remove(path)

    def __getattr__(self, name):
        return getattr(self.backend, name)


def _current_checkpoints(hook) -> set:
    """The paths the hook now counts as its latest and best checkpoints."""
    best = getattr(hook, 'best_ckpt_path_dict', None) or {}
    return {hook.last_ckpt, getattr(hook, 'best_ckpt_path', None), *best.values()} - {None}


def _removing_after_saving(method):
    """Wrap a public ``CheckpointHook`` method so that what it deletes is deleted
    only after it returns, i.e. after the checkpoints it writes are complete."""

    @functools.wraps(method)
    def save_then_remove(self, runner, *args, **kwargs):
        backend = getattr(self, 'file_backend', None)
        if backend is None:  # before before_train: nothing to save or remove yet
            return method(self, runner, *args, **kwargs)
        deferred = self.file_backend = _DeferredRemovals(backend)
        try:
            result = method(self, runner, *args, **kwargs)
        finally:
            self.file_backend = backend
        deferred.apply(keep=_current_checkpoints(self))
        return result

    return save_then_remove


def _replacements():
    save = _atomic_save_checkpoint(checkpoint_module.save_checkpoint)
    find = _cleaning_find_latest(checkpoint_module.find_latest_checkpoint)
    return [
        *[(module, 'save_checkpoint', save)
          for module in (checkpoint_module, runner_module, mmengine.runner)],
        *[(module, 'find_latest_checkpoint', find)
          for module in (checkpoint_module, runner_module, flexible_runner, mmengine.runner)],
        (checkpoint_hook_module, 'open', _open_text_atomically),
        *[(CheckpointHook, name, _removing_after_saving(getattr(CheckpointHook, name)))
          for name in SAVING_HOOK_METHODS],
    ]


PATCH = Patch('checkpoint_writes', 'mmengine', '0.10.', _replacements,
              purpose='atomic checkpoint writes that never delete before saving')
