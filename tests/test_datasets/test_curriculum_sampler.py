"""CurriculumSampler: easy-to-hard order from the annotations, loosening into
mmengine's DefaultSampler by ``full_epoch``; deterministic, and on two ranks each
rank its share without duplicates, the same length every epoch."""
import numpy as np
import pytest
import torch
from mmengine.dataset import DefaultSampler
from mmengine.registry import DATA_SAMPLERS, DefaultScope

from deform_ext.datasets import SyntheticCocoDataset
from deform_ext.datasets.samplers import CurriculumSampler, difficulty_scores


class BoxesDataset:
    """Images of 100 x 100 with the given boxes (x1, y1, x2, y2) each."""

    def __init__(self, boxes_per_image):
        self.boxes = boxes_per_image

    def __len__(self):
        return len(self.boxes)

    def get_data_info(self, i):
        return dict(width=100, height=100, instances=[
            dict(bbox=list(box), ignore_flag=0) for box in self.boxes[i]])


def random_dataset(n, seed=0):
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        sides = rng.uniform(2, 60, rng.integers(0, 8))
        images.append([(0, 0, side, side) for side in sides])
    return BoxesDataset(images)


@pytest.fixture
def ranks(monkeypatch):
    """``ranks(r, w)``: samplers built after it see rank r of w processes."""
    import mmengine.dataset.sampler as sampler_module

    def set_rank(rank, world_size):
        monkeypatch.setattr(sampler_module, 'get_dist_info', lambda: (rank, world_size))
    return set_rank


def epoch_indices(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_difficulty_fewer_and_larger_objects_are_easier():
    large, small = (0, 0, 80, 80), (0, 0, 5, 5)
    dataset = BoxesDataset([[small] * 6, [], [large], [large, large], [small], [small] * 6])
    scores = difficulty_scores(dataset)
    assert scores[1] == 0 and scores[0] == scores[5] == scores.max()  # empty; many small
    assert scores[1] < scores[2] < scores[3] and scores[2] < scores[4] < scores[0]
    ignored = BoxesDataset([[small], [large]])
    ignored.get_data_info = lambda i, get=ignored.get_data_info: dict(
        get(i), instances=[dict(bbox=[0, 0, 5, 5], ignore_flag=1)] * (i == 0))
    first, second = difficulty_scores(ignored)
    assert first == second  # an ignored box does not count: two empty images


def test_first_epoch_runs_from_easy_to_hard():
    dataset = random_dataset(50)
    sampler = CurriculumSampler(dataset, full_epoch=4, seed=3)
    order = epoch_indices(sampler, 0)
    assert sorted(order) == list(range(50))
    difficulty = difficulty_scores(dataset)[order]
    assert np.all(np.diff(difficulty) >= 0)


def rank_correlation(sampler, epoch):
    order = epoch_indices(sampler, epoch)
    positions = np.argsort(order)
    return np.corrcoef(positions, sampler.difficulty.numpy())[0, 1]


def test_order_loosens_into_defaultsamplers_shuffle():
    dataset = random_dataset(400)
    sampler = CurriculumSampler(dataset, full_epoch=4, seed=7)
    plain = DefaultSampler(dataset, shuffle=True, seed=7)
    correlations = [rank_correlation(sampler, epoch) for epoch in range(4)]
    assert correlations[0] > 0.95 and all(np.diff(correlations) < 0), correlations
    for epoch in (4, 5, 9):
        assert epoch_indices(sampler, epoch) == epoch_indices(plain, epoch)
    assert abs(rank_correlation(sampler, 4)) < 0.2


def test_deterministic_for_a_seed():
    dataset = random_dataset(60)
    first, again = (CurriculumSampler(dataset, full_epoch=3, seed=1) for _ in range(2))
    other = CurriculumSampler(dataset, full_epoch=3, seed=2)
    for epoch in range(5):
        assert epoch_indices(first, epoch) == epoch_indices(again, epoch)
    assert epoch_indices(first, 1) != epoch_indices(other, 1)


@pytest.mark.parametrize('size', [40, 41])
def test_two_ranks_share_each_epoch(ranks, size):
    dataset = random_dataset(size)
    samplers = []
    for rank in (0, 1):
        ranks(rank, 2)
        samplers.append(CurriculumSampler(dataset, full_epoch=3, seed=5))
    for epoch in range(5):
        shares = [epoch_indices(sampler, epoch) for sampler in samplers]
        assert [len(share) for share in shares] == [len(s) for s in samplers] == [20 + size % 2] * 2
        union = shares[0] + shares[1]
        assert sorted(set(union)) == list(range(size))
        assert len(union) - len(set(union)) == size % 2  # DefaultSampler's round-up padding
        if epoch == 0 and size % 2 == 0:  # each share runs from easy to hard too
            # (an odd size pads rank 1 with the first, easiest index)
            for share in shares:
                assert np.all(np.diff(samplers[0].difficulty.numpy()[share]) >= 0)


def test_full_epoch_zero_is_defaultsampler_and_bad_values_are_refused():
    dataset = random_dataset(30)
    assert epoch_indices(CurriculumSampler(dataset, full_epoch=0, seed=4), 0) == \
        epoch_indices(DefaultSampler(dataset, seed=4), 0)
    with pytest.raises(ValueError, match='full_epoch must be >= 0'):
        CurriculumSampler(dataset, full_epoch=-1, seed=0)


def test_a_dataset_without_annotations_is_named():
    class Images(BoxesDataset):
        def get_data_info(self, i):
            return dict(img_path=f'{i}.png')

    with pytest.raises(ValueError, match=r"Images.get_data_info\(0\) has no 'instances'"):
        CurriculumSampler(Images([[]]), full_epoch=2, seed=0)


def test_built_from_a_config_on_the_synthetic_set(synthetic_set):
    dataset = SyntheticCocoDataset(data_root=str(synthetic_set),
                                   ann_file='annotations/instances_train.json',
                                   data_prefix=dict(img='train/'), pipeline=[])
    with DefaultScope.overwrite_default_scope('deform_ext'):
        sampler = DATA_SAMPLERS.build(dict(type='CurriculumSampler', full_epoch=2),
                                      default_args=dict(dataset=dataset, seed=0))
    assert isinstance(sampler, CurriculumSampler)
    assert sorted(epoch_indices(sampler, 0)) == list(range(len(dataset)))
    assert torch.all((sampler.difficulty >= 0) & (sampler.difficulty <= 1))
    assert sampler.difficulty.max() > sampler.difficulty.min()
