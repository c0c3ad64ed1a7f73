"""PipelineEpochHook finds the transforms that take a seed and an epoch, through
dataset wrappers and nested transforms, and hands them the runner's values."""
from types import SimpleNamespace

from mmcv.transforms import RandomChoice
from mmengine.dataset import BaseDataset, ConcatDataset, RepeatDataset

from deform_ext.engine.hooks import PipelineEpochHook
from deform_ext.engine.hooks.pipeline_epoch_hook import set_pipeline_seed_epoch


class TakesEpoch:
    """A transform that records what it was given."""

    def __init__(self):
        self.given = []

    def set_seed_epoch(self, seed, epoch):
        self.given.append((seed, epoch))

    def __call__(self, results):
        return results


def _dataset(*transforms) -> BaseDataset:
    """A dataset of nothing whose pipeline is ``transforms``."""
    return BaseDataset(lazy_init=True, pipeline=list(transforms))


def test_transforms_are_found_through_wrappers_and_nesting():
    plain, nested, shared = TakesEpoch(), TakesEpoch(), TakesEpoch()
    first = _dataset(plain, shared)
    second = _dataset(RandomChoice([[nested], [shared]]))
    concatenated = ConcatDataset([first, second], lazy_init=True)
    assert set_pipeline_seed_epoch(concatenated, 7, 3) == 3
    assert plain.given == nested.given == shared.given == [(7, 3)]  # each once
    assert set_pipeline_seed_epoch(RepeatDataset(first, times=2, lazy_init=True), 7, 4) == 2
    assert plain.given[-1] == (7, 4)


def test_hook_hands_over_the_runner_seed_and_epoch():
    transform = TakesEpoch()
    runner = SimpleNamespace(seed=11, epoch=4, train_dataloader=SimpleNamespace(
        dataset=_dataset(transform)))
    PipelineEpochHook().before_train_epoch(runner)
    assert transform.given == [(11, 4)]
    assert PipelineEpochHook.priority == 'LOW'  # after PipelineSwitchHook
