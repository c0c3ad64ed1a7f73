"""ResumableEpochBasedTrainLoop: a checkpoint taken mid-epoch resumes where it stopped.

A toy run of 2 epochs x 4 iterations is interrupted after iteration 6 (a checkpoint
saved there, as the preemption hook saves one, then an error) and resumed by the same
command. Together the two runs train the batches of one uninterrupted run, in the
same order, and end with bitwise the same weights and optimizer state.
"""
import os.path as osp
import time

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

import deform_ext  # noqa: F401  registers the loop
from deform_ext.engine.runner import ResumableEpochBasedTrainLoop, SkippableBatchSampler
from tests.fixtures.toy_training import ToyDataset, ToyModel


class RecordBatches(Hook):
    """Records (iteration, batch index, sample values) of every trained batch and,
    with ``stop_after``, saves a checkpoint after that iteration and stops."""

    def __init__(self, seen, stop_after=None):
        self.seen, self.stop_after = seen, stop_after

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        samples = [int(x[0]) for x in data_batch['inputs']]
        self.seen.append((runner.iter + 1, batch_idx, samples))
        if runner.iter + 1 == self.stop_after:
            runner.save_checkpoint(runner.work_dir, f'iter_{self.stop_after}.pth',
                                   by_epoch=False)
            with open(osp.join(runner.work_dir, 'last_checkpoint'), 'w') as f:
                f.write(osp.join(runner.work_dir, f'iter_{self.stop_after}.pth'))
            raise KeyboardInterrupt('stopped for the test')


def _runner(work_dir, seen, resume=False, stop_after=None, batch_size=2, seed=0):
    torch.manual_seed(0)
    return Runner(
        model=ToyModel(), work_dir=str(work_dir), experiment_name=f'loop_{time.time_ns()}',
        train_dataloader=dict(dataset=ToyDataset(), batch_size=batch_size, num_workers=0,
                              sampler=dict(type='DefaultSampler', shuffle=True)),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01, momentum=0.9)),
        train_cfg=dict(type='ResumableEpochBasedTrainLoop', max_epochs=2),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        custom_hooks=[RecordBatches(seen, stop_after)], default_scope='deform_ext',
        resume=resume, randomness=dict(seed=seed), log_level='WARNING')


def _state(runner):
    return {k: v.clone() for k, v in runner.model.state_dict().items()}


@pytest.mark.parametrize('seed', [0, None])
def test_interrupted_epoch_continues_with_the_same_batches(tmp_path, seed):
    """seed None: the sampler's seed is drawn at random in each process; the resumed
    run gets the interrupted run's seed back from the checkpoint."""
    straight, first, second = [], [], []
    runner = _runner(tmp_path / 'straight', straight, seed=seed)
    assert isinstance(runner.train_loop, ResumableEpochBasedTrainLoop)
    assert isinstance(runner.train_loop.dataloader.batch_sampler, SkippableBatchSampler)
    runner.train()
    reference = _state(runner)

    with pytest.raises(KeyboardInterrupt):
        _runner(tmp_path / 'run', first, stop_after=6, seed=seed).train()
    resumed = _runner(tmp_path / 'run', second, resume=True, seed=seed)
    resumed.train()

    assert [it for it, _, _ in first] == [1, 2, 3, 4, 5, 6]
    assert [(it, idx) for it, idx, _ in second] == [(7, 2), (8, 3)]  # batch indices go on
    epoch_2 = [s for _, _, batch in first[4:] + second for s in batch]
    assert sorted(epoch_2) == list(range(8))  # each sample once in the interrupted epoch
    if seed is not None:
        assert first + second == straight
        assert all(torch.equal(reference[k], v) for k, v in _state(resumed).items())


def test_changed_epoch_length_restarts_the_epoch(tmp_path):
    first, second = [], []
    with pytest.raises(KeyboardInterrupt):
        _runner(tmp_path, first, stop_after=6).train()
    resumed = _runner(tmp_path, second, resume=True, batch_size=4)  # 2 iterations/epoch
    resumed.train()
    assert [idx for _, idx, _ in second] == [0, 1]  # the epoch restarted from its start


def test_end_of_epoch_checkpoint_starts_the_next_epoch(tmp_path):
    first, second = [], []
    with pytest.raises(KeyboardInterrupt):
        _runner(tmp_path, first, stop_after=4).train()  # the last iteration of epoch 1
    _runner(tmp_path, second, resume=True).train()
    assert [(it, idx) for it, idx, _ in second] == [(5, 0), (6, 1), (7, 2), (8, 3)]
