"""Checkpoints that are either complete or absent, never half-written.

mmengine 0.10 writes a checkpoint with a plain ``open(path, 'wb')`` over the final
name, writes ``last_checkpoint`` the same way, and its ``CheckpointHook`` deletes the
oldest kept checkpoint *before* writing the new one. A job killed or failing during
the write (preemption, SIGKILL, a full disk) therefore leaves a truncated ``epoch_N.pth``
that ``last_checkpoint`` may already name, and with ``max_keep_ckpts=1`` no good
checkpoint at all; resuming then fails. Here:

- local checkpoints are written to a temporary file in the same directory, flushed,
  fsynced and renamed over the final name with ``os.replace`` (atomic on POSIX), and
  the directory is fsynced; a failed write removes its temporary file and re-raises;
- ``last_checkpoint`` is replaced the same way, and only after the checkpoint it names
  is in place;
- ``CheckpointHook`` deletes an outdated checkpoint only after the new one and
  ``last_checkpoint`` are written;
- auto-resume (``resume=True`` without ``load_from``) first removes temporary files
  that a killed writer left behind in the work dir (main process only).

Remote backends (``s3://`` and the like) keep mmengine's own write.
"""
import functools
import os
import os.path as osp
import re

import torch
from mmengine.dist import is_main_process
from mmengine.fileio import get_file_backend
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

PARTIAL_SUFFIX = '.partial-'
_PARTIAL_RE = re.compile(r'^\..+' + re.escape(PARTIAL_SUFFIX) + r'\d+$')


def _dump_checkpoint(checkpoint, file) -> None:
    """Serialise ``checkpoint`` into the open binary ``file`` (tests patch this)."""
    torch.save(checkpoint, file)


def _fsync_dir(directory: str) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        return  # e.g. a filesystem that cannot open directories
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, write) -> None:
    """Call ``write(file)`` on a temporary file, then move it to ``path`` atomically.

    The temporary file ``.<name>.partial-<pid>`` sits next to ``path`` (same
    filesystem, so the rename is atomic). Readers see the old content or the new,
    never a mix; when ``write`` raises, the temporary file is removed and ``path`` is
    untouched.
    """
    path = osp.abspath(path)
    directory, name = osp.split(path)
    os.makedirs(directory, exist_ok=True)
    tmp = osp.join(directory, f'.{name}{PARTIAL_SUFFIX}{os.getpid()}')
    try:
        with open(tmp, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(directory)


def write_text_atomic(path: str, text: str) -> None:
    """Replace the text file ``path`` atomically (e.g. ``last_checkpoint``)."""
    atomic_write(path, lambda f: f.write(text.encode('utf-8')))


def remove_partial_files(directory: str) -> list:
    """Remove temporary files of interrupted ``atomic_write`` calls in ``directory``."""
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if _PARTIAL_RE.match(name):
            try:
                os.remove(osp.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


def _atomic_save_checkpoint(original):
    if getattr(original, '_deform_ext_atomic', False):
        return original

    @functools.wraps(original)
    def save_checkpoint(checkpoint, filename, file_client_args=None, backend_args=None):
        local = (file_client_args is None and not str(filename).startswith('pavi://')
                 and isinstance(get_file_backend(str(filename), backend_args=backend_args),
                                LocalBackend))
        if not local:
            return original(checkpoint, filename, file_client_args=file_client_args,
                            backend_args=backend_args)
        atomic_write(str(filename), lambda f: _dump_checkpoint(checkpoint, f))

    save_checkpoint._deform_ext_atomic = True
    return save_checkpoint


def _cleaning_find_latest(original):
    if getattr(original, '_deform_ext_atomic', False):
        return original

    @functools.wraps(original)
    def find_latest_checkpoint(path):
        if is_main_process():
            removed = remove_partial_files(path)
            if removed:
                print_log(f'removed unfinished checkpoint writes {removed} from {path}',
                          logger='current')
        return original(path)

    find_latest_checkpoint._deform_ext_atomic = True
    return find_latest_checkpoint


def _save_checkpoint_with_step(self, runner, step, meta):
    """``CheckpointHook._save_checkpoint_with_step`` of mmengine 0.10, reordered: the
    outdated checkpoint is deleted after the new one and ``last_checkpoint`` are
    written, and ``last_checkpoint`` is replaced atomically."""
    outdated = None
    if self.max_keep_ckpts > 0:
        # _save_checkpoint and _save_best_checkpoint may both save in one epoch
        if not (len(self.keep_ckpt_ids) > 0 and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

    ckpt_filename = self.filename_tmpl.format(step)
    self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
    runner.message_hub.update_info('last_ckpt', self.last_ckpt)

    runner.save_checkpoint(
        self.out_dir,
        ckpt_filename,
        self.file_client_args,
        save_optimizer=self.save_optimizer,
        save_param_scheduler=self.save_param_scheduler,
        meta=meta,
        by_epoch=self.by_epoch,
        backend_args=self.backend_args,
        **self.args)

    # Model-parallel-like training would pull sharded states from all ranks; as
    # mmengine, only the main process records and cleans up.
    if not is_main_process():
        return
    write_text_atomic(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)
    if outdated is not None:
        path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):  # checkpoints saved by deepspeed
            self.file_backend.rmtree(path)


_save_checkpoint_with_step._deform_ext_atomic = True


def install() -> None:
    """Route mmengine's checkpoint writes through ``atomic_write`` (idempotent)."""
    import mmengine.runner
    import mmengine.runner._flexible_runner as flexible_runner
    import mmengine.runner.checkpoint as checkpoint_module
    import mmengine.runner.runner as runner_module

    save = _atomic_save_checkpoint(checkpoint_module.save_checkpoint)
    for module in (checkpoint_module, runner_module, mmengine.runner):
        module.save_checkpoint = save
    find = _cleaning_find_latest(checkpoint_module.find_latest_checkpoint)
    for module in (checkpoint_module, runner_module, flexible_runner, mmengine.runner):
        module.find_latest_checkpoint = find
    if hasattr(CheckpointHook, '_save_checkpoint_with_step'):
        CheckpointHook._save_checkpoint_with_step = _save_checkpoint_with_step
