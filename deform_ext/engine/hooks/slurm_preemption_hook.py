"""Save a checkpoint and requeue the job when SLURM announces the end of a job.

SLURM sends a signal some time before it ends a job (``#SBATCH --signal=USR1@90`` or
``srun --signal=USR1@90`` before the time limit; ``scancel --signal=USR1 JOBID`` by
hand; a preempting scheduler). This hook turns that signal into: every rank stops
after the same iteration, the main process writes a checkpoint and points
``last_checkpoint`` at it, the job is requeued with ``scontrol requeue`` and the
processes exit. The requeued job runs the same command again, which resumes from that
checkpoint (the launch scripts resume by default).

Resuming continues the interrupted epoch where it stopped with
``ResumableEpochBasedTrainLoop`` (our configs' training loop); with mmengine's
``EpochBasedTrainLoop`` the epoch restarts from its first batch.
"""
import os
import os.path as osp
import signal
import subprocess

import torch
from mmengine.dist import barrier, is_distributed, is_main_process
from mmengine.dist.utils import get_comm_device
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import EpochBasedTrainLoop

from deform_ext.engine.runner import ResumableEpochBasedTrainLoop
from deform_ext.registry import HOOKS
from deform_ext.utils.atomic_write import write_text_atomic

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: stopped early, run the same command again
CHECKPOINT_TMPL = 'preempt_iter_{}.pth'


@HOOKS.register_module()
class SlurmPreemptionHook(Hook):
    """Checkpoint, requeue and exit on a SLURM pre-termination signal.

    Every rank installs a handler for ``signals`` that only sets a flag. After each
    training iteration the ranks combine their flags (a one-element all-reduce), so
    all of them stop after the same iteration even when only some got the signal.
    The main process then saves ``preempt_iter_<N>.pth`` with the optimizer and
    scheduler state (atomically, as every checkpoint under deform_ext), updates
    ``last_checkpoint``, and, inside a SLURM batch job, runs ``scontrol requeue
    $SLURM_JOB_ID``. All ranks exit after a barrier: with status 0 when the job was
    requeued, else with 75 (EX_TEMPFAIL: not finished, run the same command again).

    Without a signal the hook costs one scalar all-reduce per ``check_interval``
    iterations.

    Args:
        signals (Sequence[str]): signal names to handle. Defaults to ``('SIGUSR1',)``.
        requeue (bool): requeue the SLURM job after saving. Defaults to True.
        check_interval (int): iterations between flag checks. Defaults to 1.
    """

    priority = 'LOWEST'  # after the logger and the regular checkpoint hook

    def __init__(self, signals=('SIGUSR1',), requeue=True, check_interval=1):
        if isinstance(signals, str):
            signals = (signals,)
        self.signals = [signal.Signals[name] if isinstance(name, str) else
                        signal.Signals(name) for name in signals]
        self.requeue = requeue
        self.check_interval = max(1, int(check_interval))
        self._received = None
        self._previous_handlers = {}
        # Install now rather than in before_train: the sooner, the smaller the window
        # in which the signal's default action (terminate) still applies.
        self._install_handlers()

    # ----------------------------------------------------------------- signals
    def _handle(self, signum, frame):
        self._received = signal.Signals(signum).name

    def _install_handlers(self):
        for sig in self.signals:
            try:
                self._previous_handlers[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the default action
                pass

    def _restore_handlers(self):
        for sig, handler in self._previous_handlers.items():
            try:
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
            except ValueError:
                pass
        self._previous_handlers.clear()

    @staticmethod
    def _any_rank(flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one."""
        if not is_distributed():
            return bool(flag)
        tensor = torch.tensor([int(bool(flag))], dtype=torch.int32, device=get_comm_device())
        torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
        return bool(tensor.item())

    def before_train(self, runner) -> None:
        if self._previous_handlers == {}:
            self._install_handlers()
        loop = runner.train_loop
        if (isinstance(loop, EpochBasedTrainLoop)
                and not isinstance(loop, ResumableEpochBasedTrainLoop)):
            runner.logger.info(
                f'{type(loop).__name__}: an epoch interrupted by a signal restarts from '
                'its first batch on resume (ResumableEpochBasedTrainLoop continues it)')

    # ------------------------------------------------------------- preemption
    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if (runner.iter + 1) % self.check_interval or not self._any_rank(self._received):
            return
        name = self._received or 'a signal on another rank'
        runner.logger.warning(f'received {name}: saving a checkpoint after iteration '
                              f'{runner.iter + 1} and stopping')
        path = self._save(runner)
        barrier()  # the checkpoint and last_checkpoint are complete on disk
        requeue = self.requeue and bool(os.environ.get('SLURM_JOB_ID'))
        if is_main_process():
            runner.logger.info(f'saved {path}; ' + (
                'requeueing the job: it resumes from there' if requeue else
                'run the same command again to resume from there'))
            requeue = self._requeue(runner) if requeue else False
        requeued = self._any_rank(requeue and is_main_process())
        self._restore_handlers()
        # A requeued job is ended by slurmctld anyway; otherwise say "not finished".
        raise SystemExit(0 if requeued else PREEMPTED_EXIT_CODE)

    def _save(self, runner):
        ckpt_hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
        out_dir = getattr(ckpt_hook, 'out_dir', None) or runner.work_dir
        filename = CHECKPOINT_TMPL.format(runner.iter + 1)
        runner.save_checkpoint(out_dir, filename, save_optimizer=True,
                               save_param_scheduler=True, by_epoch=False)
        path = osp.join(out_dir, filename)
        if is_main_process():
            write_text_atomic(osp.join(runner.work_dir, 'last_checkpoint'), path)
            runner.message_hub.update_info('last_ckpt', path)
            self._remove_stale(out_dir, keep=path)
        return path

    def _requeue(self, runner) -> bool:
        job_id = os.environ.get('SLURM_JOB_ID')
        if not (self.requeue and job_id):
            return False
        try:
            result = subprocess.run(['scontrol', 'requeue', job_id], capture_output=True,
                                    text=True, timeout=60)
        except (OSError, subprocess.SubprocessError) as error:
            runner.logger.warning(f'scontrol requeue {job_id} failed: {error}')
            return False
        if result.returncode != 0:
            runner.logger.warning(f'scontrol requeue {job_id} failed (only batch jobs can '
                                  f'be requeued): {result.stderr.strip()}')
            return False
        return True

    # ------------------------------------------------------------ clean-up
    def after_train_epoch(self, runner) -> None:
        if is_main_process():
            ckpt_hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)), None)
            out_dir = getattr(ckpt_hook, 'out_dir', None) or runner.work_dir
            self._remove_stale(out_dir, keep=self._last_checkpoint(runner))

    def after_train(self, runner) -> None:
        self.after_train_epoch(runner)
        self._restore_handlers()

    @staticmethod
    def _last_checkpoint(runner):
        try:
            with open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
                return f.read().strip()
        except OSError:
            return None

    @staticmethod
    def _remove_stale(out_dir, keep):
        """Remove preemption checkpoints other than ``keep`` (the resumable one)."""
        try:
            names = os.listdir(out_dir)
        except OSError:
            return
        for name in names:
            path = osp.join(out_dir, name)
            if (name.startswith('preempt_iter_') and name.endswith('.pth')
                    and (keep is None or osp.abspath(path) != osp.abspath(keep))):
                try:
                    os.remove(path)
                except OSError:
                    pass
