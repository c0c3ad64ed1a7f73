"""Save a checkpoint and requeue the job when SLURM announces the end of a job.

SLURM sends a signal some time before it ends a job (``#SBATCH --signal=USR1@90`` or
``srun --signal=USR1@90`` before the time limit; ``scancel --signal=USR1 JOBID`` by
hand; a preempting scheduler). This hook turns that signal into: every rank stops
after the same iteration, the main process writes a checkpoint and points
``last_checkpoint`` at it, the job is requeued with ``scontrol requeue`` and the
processes exit. The requeued job runs the same command again, which resumes from that
checkpoint (the launch scripts resume by default).

Resuming a checkpoint taken in the middle of an epoch continues that epoch where it
stopped: the batches already trained are skipped by index (nothing is loaded for
them) and the sampler gets the seed of the interrupted run back, so each image of the
epoch is still seen once. mmengine alone would restart the epoch from its first batch
with a new shuffling order.
"""
import os
import os.path as osp
import signal
import subprocess

import torch
from mmengine.dist import barrier, is_distributed, is_main_process
from mmengine.dist.utils import get_comm_device
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from deform_ext.registry import HOOKS
from deform_ext.utils.checkpoint_atomic import write_text_atomic

PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: stopped early, run the same command again
CHECKPOINT_TMPL = 'preempt_iter_{}.pth'


class _SkipFirstBatches:
    """A batch sampler that drops the first ``skip`` batches of its first pass.

    Only indices are drawn for the dropped batches; no data is loaded. ``len()`` stays
    that of the full epoch, so progress logging keeps its denominator.
    """

    def __init__(self, batch_sampler, skip):
        self.batch_sampler = batch_sampler
        self.skip = skip

    def __iter__(self):
        iterator = iter(self.batch_sampler)
        skip, self.skip = self.skip, 0  # a persistent worker iterator keeps this object
        for _ in range(skip):
            next(iterator, None)
        yield from iterator

    def __len__(self):
        return len(self.batch_sampler)

    def __getattr__(self, name):
        return getattr(self.batch_sampler, name)


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
    iterations. It also remembers, in every checkpoint, how far into its epoch the
    checkpoint was taken, so that resuming it continues the epoch (see the module doc).

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
        self._epoch_start_iter = 0
        self._in_epoch = False
        self._pending_skip = 0
        self._resumed_meta = None
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

    # ------------------------------------------------------- resume mid-epoch
    def after_load_checkpoint(self, runner, checkpoint) -> None:
        self._resumed_meta = dict(checkpoint.get('meta', {}))

    def before_train(self, runner) -> None:
        if self._previous_handlers == {}:
            self._install_handlers()
        meta, self._resumed_meta = self._resumed_meta, None
        if not meta or runner.iter == 0:
            return  # a fresh start, or load_from (weights only)
        self._restore_sampler_seed(runner)
        done = meta.get('iters_in_epoch', 0)
        if done:
            self._continue_epoch(runner, done, meta.get('iters_per_epoch'))

    def _restore_sampler_seed(self, runner):
        """Give the sampler the seed of the run being resumed (its shuffling order)."""
        if runner._randomness_cfg.get('diff_rank_seed', False):
            return
        loader = runner.train_loop.dataloader
        for sampler in (getattr(loader.batch_sampler, 'sampler', None), loader.sampler):
            if hasattr(sampler, 'seed') and hasattr(sampler, 'set_epoch'):
                sampler.seed = runner.seed
                return

    def _continue_epoch(self, runner, done, per_epoch):
        loop = runner.train_loop
        if isinstance(loop, IterBasedTrainLoop):
            return  # it skips the trained batches itself
        dataloader = loop.dataloader
        usable = (type(loop).run_epoch is EpochBasedTrainLoop.run_epoch
                  and dataloader.batch_sampler is not None)
        if not usable or per_epoch != len(dataloader):
            runner.logger.warning(
                f'resumed {done} iterations into epoch {runner.epoch + 1}, but '
                + ('the data loader has a different length now' if usable else
                   f'{type(loop).__name__} cannot skip batches')
                + ': the epoch restarts from its first batch')
            return
        runner.logger.info(f'continuing epoch {runner.epoch + 1} after its first {done} '
                           f'of {per_epoch} iterations')
        self._pending_skip = done
        original = dataloader.batch_sampler
        # DataLoader forbids re-assigning batch_sampler after construction.
        object.__setattr__(dataloader, 'batch_sampler', _SkipFirstBatches(original, done))

        def run_partial_epoch():
            # EpochBasedTrainLoop.run_epoch (mmengine 0.10), batch indices from `done`
            try:
                loop.runner.call_hook('before_train_epoch')
                loop.runner.model.train()
                for idx, data_batch in enumerate(loop.dataloader, start=done):
                    loop.run_iter(idx, data_batch)
                loop.runner.call_hook('after_train_epoch')
                loop._epoch += 1
            finally:
                del loop.run_epoch
                object.__setattr__(dataloader, 'batch_sampler', original)

        loop.run_epoch = run_partial_epoch

    def before_train_epoch(self, runner) -> None:
        # after a mid-epoch resume the epoch began `_pending_skip` iterations earlier
        self._epoch_start_iter = runner.iter - self._pending_skip
        self._pending_skip = 0
        self._in_epoch = True

    def before_save_checkpoint(self, runner, checkpoint) -> None:
        """Record how many iterations of the running epoch the checkpoint holds: 0 for
        the end-of-epoch checkpoint (its epoch is already counted) and for the ones
        saved after the epoch, such as the best checkpoint after validation."""
        meta = checkpoint.setdefault('meta', {})
        in_epoch = (self._in_epoch and meta.get('epoch') == runner.epoch
                    and isinstance(runner.train_loop, EpochBasedTrainLoop))
        meta['iters_in_epoch'] = meta.get('iter', 0) - self._epoch_start_iter if in_epoch else 0
        meta['iters_per_epoch'] = len(runner.train_loop.dataloader)

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
        self._in_epoch = False
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
