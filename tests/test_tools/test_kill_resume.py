"""Kill and resume: checkpoints are complete or absent, and the same command resumes.

In-process: a checkpoint write that fails half-way (injected inside the write) leaves
the previous checkpoint, ``last_checkpoint`` and no partial file, also with
``max_keep_ckpts=1`` (mmengine deletes the old checkpoint before writing the new one).
End to end through the tools: a write stalled half-way and SIGKILLed, a write that
raises half-way, and a 2-process torchrun job SIGKILLed mid-epoch; each time the same
command again resumes from the last complete checkpoint with the right iteration,
optimizer and scheduler state. SIGUSR1 (the preemption signal) without SLURM: a
checkpoint mid-epoch, exit status 75, and the rerun finishes that epoch with each
image seen once.
"""
import glob
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

from tests.conftest import DEMO_CONFIG, REPO_ROOT, run_tool, tiny_training_options
from tests.fixtures.dist_probe import (NO_VALIDATION, SMALL_IMAGES, load_checkpoint_file,
                                       probe_config, read_probes)

# ----------------------------------------------------------------- in-process


def _toy_runner(work_dir, max_epochs, resume=False, max_keep_ckpts=1, name='toy',
                save_best=False):
    """A linear model on 8 samples, batch 2. ``save_best``: validation after every
    epoch with a score that rises each epoch, best checkpoint kept as 'best_score_*'."""
    from mmengine.evaluator import BaseMetric
    from mmengine.logging import MessageHub
    from mmengine.runner import Runner

    from tests.fixtures.toy_training import ToyDataset, ToyModel

    class RisingScore(BaseMetric):
        """The number of the epoch just trained: every validation is a new best."""

        def process(self, data_batch, data_samples):
            self.results.append(0)

        def compute_metrics(self, results):
            return dict(score=MessageHub.get_current_instance().get_info('epoch') + 1.0)

    validation = dict(
        val_dataloader=dict(dataset=ToyDataset(), batch_size=2, num_workers=0,
                            sampler=dict(type='DefaultSampler', shuffle=False)),
        val_cfg=dict(), val_evaluator=[RisingScore()]) if save_best else {}
    torch.manual_seed(0)  # the model is built here, before the Runner seeds anything
    return Runner(
        model=ToyModel(), work_dir=work_dir, experiment_name=f'{name}_{time.time_ns()}',
        train_dataloader=dict(dataset=ToyDataset(), batch_size=2, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1], gamma=0.1, by_epoch=True),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1,
                                           max_keep_ckpts=max_keep_ckpts,
                                           save_best='score' if save_best else None,
                                           rule='greater'),
                           logger=dict(type='LoggerHook', interval=1)),
        default_scope='mmengine', resume=resume, load_from=None,
        randomness=dict(seed=0), log_level='WARNING', **validation)


def _fail_half_way(monkeypatch, target):
    from deform_ext.compat import checkpoint_writes
    original = checkpoint_writes._dump_checkpoint

    def dump(checkpoint, file):
        if not osp.basename(file.name).startswith(f'.{target}'):
            return original(checkpoint, file)
        original(checkpoint, file)
        file.truncate(file.tell() // 2)
        raise OSError('injected: disk full')

    monkeypatch.setattr(checkpoint_writes, '_dump_checkpoint', dump)


def test_atomic_write_keeps_the_old_file_on_failure(tmp_path):
    from deform_ext.utils.atomic_write import atomic_write, write_text_atomic
    path = tmp_path / 'last_checkpoint'
    write_text_atomic(str(path), 'old')

    def write_half_then_fail(f):
        f.write(b'ne')
        raise OSError('injected')

    with pytest.raises(OSError, match='injected'):
        atomic_write(str(path), write_half_then_fail)
    assert path.read_text() == 'old'
    assert os.listdir(tmp_path) == ['last_checkpoint']
    write_text_atomic(str(path), 'new')
    assert path.read_text() == 'new'


@pytest.mark.parametrize('max_keep_ckpts', [1, 2])
def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch,
                                                        max_keep_ckpts):
    import deform_ext  # noqa: F401  installs the atomic checkpoint writes
    work_dir = str(tmp_path)
    _fail_half_way(monkeypatch, 'epoch_2.pth')
    runner = _toy_runner(work_dir, max_epochs=2, max_keep_ckpts=max_keep_ckpts)
    with pytest.raises(OSError, match='injected'):
        runner.train()
    assert sorted(n for n in os.listdir(work_dir) if not n[0].isdigit()) == [
        'epoch_1.pth', 'last_checkpoint']  # no epoch_2.pth, no partial file
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work_dir, 'epoch_1.pth')
    assert load_checkpoint_file(osp.join(work_dir, 'epoch_1.pth'))['meta']['epoch'] == 1

    monkeypatch.undo()  # the disk has room again: the same job resumes and finishes
    runner = _toy_runner(work_dir, max_epochs=2, resume=True, max_keep_ckpts=max_keep_ckpts)
    runner.train()
    checkpoint = load_checkpoint_file(osp.join(work_dir, 'epoch_2.pth'))
    assert (checkpoint['meta']['epoch'], checkpoint['meta']['iter']) == (2, 8)
    assert checkpoint['param_schedulers'][0]['_global_step'] == 2
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth')) == (max_keep_ckpts == 2)
    # bitwise the same as a run that was never interrupted: weights, momentum, lr
    _toy_runner(str(tmp_path / 'straight'), max_epochs=2).train()
    straight = load_checkpoint_file(tmp_path / 'straight' / 'epoch_2.pth')
    for key in ('state_dict', 'optimizer', 'param_schedulers'):
        assert _equal(checkpoint[key], straight[key]), key


def _equal(a, b):
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    return a == b


def test_failed_best_checkpoint_write_keeps_the_previous_best(tmp_path, monkeypatch):
    """mmengine deletes the old best checkpoint before writing the new one; here the
    old one stays until the new one is complete."""
    import deform_ext  # noqa: F401
    work_dir = str(tmp_path)
    _fail_half_way(monkeypatch, 'best_score_epoch_2.pth')
    with pytest.raises(OSError, match='injected'):
        _toy_runner(work_dir, max_epochs=2, save_best=True).train()
    assert sorted(n for n in os.listdir(work_dir) if n.endswith('.pth')) == [
        'best_score_epoch_1.pth', 'epoch_2.pth']  # the old best, no partial new one
    assert load_checkpoint_file(osp.join(work_dir, 'best_score_epoch_1.pth'))['meta'][
        'epoch'] == 1


def test_best_checkpoint_write_killed_half_way_leaves_the_previous_best(tmp_path):
    """SIGKILL while the new best checkpoint is half-written (the write is held there):
    the previous best is still on disk and loads; the same run resumed finishes with
    the next best in place of the old one."""
    work_dir, probes = str(tmp_path / 'work'), str(tmp_path / 'probes')
    os.makedirs(probes)
    code = ('import sys; import tests.fixtures.dist_probe\n'
            'from tests.test_tools.test_kill_resume import _toy_runner\n'
            'epochs = int(sys.argv[2])\n'
            '_toy_runner(sys.argv[1], epochs, save_best=True, resume=epochs > 2).train()\n')
    log = str(tmp_path / 'first.log')
    proc = _popen([sys.executable, '-c', code, work_dir, '2'],
                  dict(DEX_PROBE_DIR=probes, DEX_CKPT_FAULT='stall:best_score_epoch_2.pth'),
                  log)
    try:
        _wait_until(lambda: osp.exists(osp.join(probes, 'stalled')), proc, 240,
                    'the stalled write of best_score_epoch_2.pth', log)
        assert len(_partial_files(work_dir)) == 1  # half of the new best is on disk
    finally:
        _kill_group(proc)
    best_1 = osp.join(work_dir, 'best_score_epoch_1.pth')
    assert load_checkpoint_file(best_1)['meta']['epoch'] == 1
    assert not osp.exists(osp.join(work_dir, 'best_score_epoch_2.pth'))

    # resumed from epoch_2.pth (saved before the validation that was killed), one
    # more epoch: its validation writes the next best, and only then the old goes
    run_tool([sys.executable, '-c', code, work_dir, '3'], timeout=300)
    assert not _partial_files(work_dir) and not osp.exists(best_1)
    assert load_checkpoint_file(osp.join(work_dir, 'best_score_epoch_3.pth'))['meta'][
        'epoch'] == 3


def test_auto_resume_removes_partial_files(tmp_path):
    import deform_ext  # noqa: F401
    from mmengine.runner import find_latest_checkpoint
    (tmp_path / '.epoch_3.pth.partial-12345').write_bytes(b'half')
    (tmp_path / 'epoch_2.pth').write_bytes(b'complete')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_2.pth'))
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_2.pth')
    assert sorted(os.listdir(tmp_path)) == ['epoch_2.pth', 'last_checkpoint']


# --------------------------------------------------------------- end to end

def _options(data_root, max_epochs, batch_size=4):
    """The tiny demo run at 128 px without validation, ``batch_size`` per process."""
    options = tiny_training_options(data_root, max_epochs)
    options[options.index('train_dataloader.batch_size=4')] = \
        f'train_dataloader.batch_size={batch_size}'
    return options + SMALL_IMAGES + NO_VALIDATION


def _train_cmd(config, work_dir, tiny_coco, max_epochs):
    return [sys.executable, 'tools/train.py', config, '--work-dir', work_dir, '--resume',
            '--cfg-options', *_options(tiny_coco, max_epochs)]


def _checkpoint_meta(path):
    return load_checkpoint_file(path)['meta']


def _iters_in_epoch(path):
    """How far into its epoch a checkpoint was taken, as ResumableEpochBasedTrainLoop
    reads it from the message hub that the checkpoint saves."""
    checkpoint = load_checkpoint_file(path)
    start = checkpoint['message_hub']['runtime_info']['train_epoch_start_iter']
    return checkpoint['meta']['iter'] - start


def _last_checkpoint(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def _partial_files(work_dir):
    return glob.glob(osp.join(work_dir, '.*.partial-*'))


def _trained_iters(probe_dir):
    return [(it['iter'], it['epoch'], it['batch_idx']) for record in read_probes(probe_dir)
            if record.get('rank', 0) == 0 for it in record['iters']]


def _popen(args, env, log_path):
    full_env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS='1',
                    PATH=osp.dirname(sys.executable) + os.pathsep + os.environ['PATH'])
    full_env.update(env)
    log = open(log_path, 'wb')
    try:
        return subprocess.Popen(args, cwd=REPO_ROOT, env=full_env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()


def _kill_group(proc, sig=signal.SIGKILL):
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _kill_job(proc, probe_dir):
    """SIGKILL a torchrun job: its workers (own sessions: torchrun starts them with
    start_new_session, so killing torchrun alone would orphan them) and torchrun."""
    for record in read_probes(probe_dir):
        try:
            os.kill(record['pid'], signal.SIGKILL)
        except ProcessLookupError:
            pass
    _kill_group(proc)


def _wait_until(predicate, proc, timeout, what, log_path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    with open(log_path, errors='replace') as f:
        log = f.read()[-4000:]
    raise AssertionError(f'{what}: not reached (exit {proc.poll()})\n{log}')


@pytest.mark.slow
def test_interrupted_checkpoint_writes_then_same_command_resumes(tiny_coco, tmp_path):
    """epoch_2.pth is half-written twice: first the process is SIGKILLed there (the
    write is held half-way), then the write raises half-way. Each time the previous
    checkpoint and last_checkpoint survive, and the third run of the same command
    resumes from epoch_1.pth, removes the partial file and finishes."""
    work_dir, probes = str(tmp_path / 'work'), str(tmp_path / 'probes')
    os.makedirs(probes)
    config = probe_config(tmp_path / 'cfg.py', DEMO_CONFIG)
    cmd = _train_cmd(config, work_dir, tiny_coco, max_epochs=2)  # 4 iterations/epoch
    epoch_1 = osp.join(work_dir, 'epoch_1.pth')

    log = str(tmp_path / 'first.log')
    proc = _popen(cmd, dict(DEX_PROBE_DIR=probes, DEX_CKPT_FAULT='stall:epoch_2.pth'), log)
    try:
        _wait_until(lambda: osp.exists(osp.join(probes, 'stalled')), proc, 240,
                    'the stalled write of epoch_2.pth', log)
        assert len(_partial_files(work_dir)) == 1  # half of epoch_2.pth is on disk
    finally:
        _kill_group(proc)
    assert _last_checkpoint(work_dir) == epoch_1
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth'))

    failed = run_tool(cmd, env=dict(DEX_PROBE_DIR=probes, DEX_CKPT_FAULT='raise:epoch_2.pth'),
                      check=False, timeout=300)
    assert failed.returncode != 0
    assert 'resumed epoch: 1, iter: 4' in failed.stdout + failed.stderr
    assert 'injected failure after' in failed.stdout + failed.stderr
    assert not osp.exists(osp.join(work_dir, 'epoch_2.pth')) and not _partial_files(work_dir)
    assert _last_checkpoint(work_dir) == epoch_1
    assert _checkpoint_meta(epoch_1)['iter'] == 4

    resumed = run_tool(cmd, env=dict(DEX_PROBE_DIR=probes), timeout=300)
    assert 'resumed epoch: 1, iter: 4' in resumed.stdout + resumed.stderr
    meta = _checkpoint_meta(osp.join(work_dir, 'epoch_2.pth'))
    assert (meta['epoch'], meta['iter']) == (2, 8)
    assert not _partial_files(work_dir)
    # iterations 5-8 ran three times (each failure came after them); none was skipped
    assert [i for i, _, _ in _trained_iters(probes)] == [1, 2, 3, 4] + [5, 6, 7, 8] * 3


@pytest.mark.slow
def test_torchrun_job_killed_mid_epoch_resumes(tiny_coco, tmp_path):
    """2 processes (torchrun): SIGKILL to the whole job in epoch 2; the same
    tools/dist_train.sh command resumes from the last complete checkpoint and loses
    only the iterations after it."""
    work_dir, probes = str(tmp_path / 'work'), str(tmp_path / 'probes')
    os.makedirs(probes)
    config = probe_config(tmp_path / 'cfg.py', DEMO_CONFIG)
    cmd = ['bash', 'tools/dist_train.sh', config, '2', '--work-dir', work_dir,
           '--cfg-options', *_options(tiny_coco, 3, batch_size=2)]  # 4 iterations/epoch
    env = dict(DEX_PROBE_DIR=probes, PORT='29561')
    log = str(tmp_path / 'first.log')
    proc = _popen(cmd, env, log)
    try:
        _wait_until(lambda: any(i >= 5 for i, _, _ in _trained_iters(probes)), proc, 240,
                    'iteration 5 (epoch 2)', log)
    finally:
        _kill_job(proc, probes)
    killed_at = max(i for i, _, _ in _trained_iters(probes))
    last = _last_checkpoint(work_dir)
    resumed_from = _checkpoint_meta(last)['iter']
    assert not _partial_files(work_dir)

    resumed = run_tool(cmd, env=dict(env, PORT='29562'), timeout=300)
    log_text = resumed.stdout + resumed.stderr
    assert f'auto-resume: {work_dir}/last_checkpoint' in log_text
    assert f'iter: {resumed_from}' in log_text
    meta = _checkpoint_meta(osp.join(work_dir, 'epoch_3.pth'))
    assert (meta['epoch'], meta['iter']) == (3, 12)
    second_run = [i for i, _, _ in _trained_iters(probes)][-(12 - resumed_from):]
    assert second_run == list(range(resumed_from + 1, 13))
    # what the kill cost: the iterations after the last complete checkpoint
    print(f'killed after iteration {killed_at}, resumed from {resumed_from}: '
          f'{killed_at - resumed_from} iteration(s) lost')
    assert killed_at - resumed_from <= 4  # at most one epoch (4 iterations) here


@pytest.mark.slow
def test_preemption_signal_without_slurm(tiny_coco, tmp_path):
    """SIGUSR1 to one of two torchrun workers: both stop after the same iteration, rank 0
    saves preempt_iter_<N>.pth mid-epoch, the job exits 75; the same command resumes
    there, finishes that epoch without repeating or skipping an image."""
    work_dir, probes = str(tmp_path / 'work'), str(tmp_path / 'probes')
    os.makedirs(probes)
    config = probe_config(tmp_path / 'cfg.py', DEMO_CONFIG,
                          default_hooks=dict(preemption=dict(type='SlurmPreemptionHook')))
    cmd = ['bash', 'tools/dist_train.sh', config, '2', '--work-dir', work_dir,
           '--cfg-options', *_options(tiny_coco, 2, batch_size=1)]  # 8 iterations/epoch
    env = dict(DEX_PROBE_DIR=probes, PORT='29563')
    log = str(tmp_path / 'first.log')
    proc = _popen(cmd, env, log)
    try:
        _wait_until(lambda: any(i >= 10 for i, _, _ in _trained_iters(probes)), proc, 240,
                    'iteration 10 (epoch 2)', log)
        worker = next(r['pid'] for r in read_probes(probes) if r['rank'] == 1)
        os.kill(worker, signal.SIGUSR1)
        proc.wait(timeout=120)
    finally:
        _kill_job(proc, probes)
    with open(log, errors='replace') as f:
        first_log = f.read()
    # the workers exit 75 (EX_TEMPFAIL); torchrun reports that as a failure
    assert proc.returncode != 0 and 'exitcode  : 75' in first_log, first_log[-3000:]
    last = _last_checkpoint(work_dir)
    assert osp.basename(last).startswith('preempt_iter_')
    meta = _checkpoint_meta(last)
    stopped = meta['iter']
    assert (meta['epoch'], _iters_in_epoch(last)) == (1, stopped - 8)
    per_rank = {r['rank']: max(it['iter'] for it in r['iters']) for r in read_probes(probes)}
    assert per_rank == {0: stopped, 1: stopped}  # both ranks stopped after iteration N

    resumed = run_tool(cmd, env=dict(env, PORT='29564'), timeout=300)
    log_text = resumed.stdout + resumed.stderr
    assert f'resumed epoch: 1, iter: {stopped}' in log_text
    assert _checkpoint_meta(osp.join(work_dir, 'epoch_2.pth'))['iter'] == 16
    assert not glob.glob(osp.join(work_dir, 'preempt_iter_*.pth'))  # superseded, removed
    # epoch 2 over both runs and both ranks: every training image exactly once
    seen = [img for r in read_probes(probes) for it in r['iters'] if it['epoch'] == 1
            for img in it['img_ids']]
    assert sorted(seen) == sorted(
        img for r in read_probes(probes) for it in r['iters'] if it['epoch'] == 0
        for img in it['img_ids'])
    assert len(seen) == len(set(seen)) == 16
    # the resumed run logs batch indices that continue the epoch
    resumed_iters = [(i, b) for i, e, b in _trained_iters(probes) if i > stopped and e == 1]
    assert resumed_iters == [(i, i - 9) for i in range(stopped + 1, 17)]
    print(f'SIGUSR1 during epoch 2: stopped after iteration {stopped}, resumed there')
