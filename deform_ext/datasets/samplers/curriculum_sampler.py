"""``CurriculumSampler``: easy images first, converging to the uniform shuffle.

An image's difficulty (in [0, 1]) is computed once from its annotations: the mean of
two percentile ranks over the dataset, its number of objects (more: harder) and the
mean relative side ``sqrt(w * h / (W * H))`` of its objects (smaller: harder); an
image without objects is the easiest. Each epoch is a permutation of the whole
dataset (the epoch length never changes and, but for DefaultSampler's round-up
padding, no image repeats) ordered by the key

    key_i = w_e * difficulty_i + (1 - w_e) * u_i,   u_i ~ U(0, 1),
    w_e = 1 - epoch / full_epoch,

so epoch 0 runs from the easiest image to the hardest and the order loosens into a
random shuffle; from ``full_epoch`` on it *is* mmengine's ``DefaultSampler`` (the same
``randperm`` of ``seed + epoch``). The random draws are seeded by ``seed + epoch``
alone, so every rank computes the same global order; as in DefaultSampler each rank
takes every ``world_size``-th index from its ``rank``, and each rank's share also
runs from easy to hard.
"""
from typing import Optional, Sized

import numpy as np
from scipy.stats import rankdata
import torch
from mmengine.dataset import DefaultSampler

from deform_ext.registry import DATA_SAMPLERS


def _midranks(values: np.ndarray) -> np.ndarray:
    """Percentile ranks in [0, 1] of ``values`` (n,), ties sharing their mean rank."""
    return (rankdata(values) - 1) / max(len(values) - 1, 1)


def difficulty_scores(dataset) -> np.ndarray:
    """The difficulty (n,) in [0, 1] of each image of an mmdet dataset (its
    ``get_data_info(i)``: ``instances`` with ``bbox`` (x1, y1, x2, y2) and
    ``ignore_flag``, and the image's ``width`` and ``height``); see the module docstring."""
    counts, sides = np.zeros(len(dataset)), np.ones(len(dataset))
    for i in range(len(dataset)):
        info = dataset.get_data_info(i)
        if 'instances' not in info or 'width' not in info or 'height' not in info:
            raise ValueError(f'{type(dataset).__name__}.get_data_info({i}) has no '
                             "'instances', 'width' or 'height': CurriculumSampler scores "
                             'images by their annotations')
        boxes = np.array([inst['bbox'] for inst in info['instances']
                          if not inst.get('ignore_flag', 0)], dtype=np.float64).reshape(-1, 4)
        counts[i] = len(boxes)
        if len(boxes):
            areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
            sides[i] = np.sqrt(areas / (info['width'] * info['height'])).mean()
    return (_midranks(counts) + _midranks(-sides)) / 2


@DATA_SAMPLERS.register_module()
class CurriculumSampler(DefaultSampler):
    """Orders each epoch from easy to hard, less so every epoch, and is
    ``DefaultSampler(shuffle=True)`` from ``full_epoch`` on (see the module docstring).

    Args:
        dataset (Sized): an mmdet dataset (annotations through ``get_data_info``).
        full_epoch (int): the first epoch of the uniform shuffle; 0: no curriculum.
        seed (int, optional): as DefaultSampler (None: one random seed shared by
            the ranks).
        round_up (bool): as DefaultSampler. Default True.
    """

    def __init__(self, dataset: Sized, full_epoch: int, seed: Optional[int] = None,
                 round_up: bool = True) -> None:
        if full_epoch < 0:
            raise ValueError(f'full_epoch must be >= 0, got {full_epoch}')
        super().__init__(dataset, shuffle=True, seed=seed, round_up=round_up)
        self.full_epoch = full_epoch
        self.difficulty = torch.from_numpy(difficulty_scores(dataset))

    def curriculum_weight(self) -> float:
        """w_e: 1 at epoch 0, falling linearly to 0 at ``full_epoch``."""
        if self.epoch >= self.full_epoch:
            return 0.0
        return 1.0 - self.epoch / self.full_epoch

    def __iter__(self):
        """This rank's indices of the epoch set by ``set_epoch``."""
        weight = self.curriculum_weight()
        if weight == 0.0:
            return super().__iter__()
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        uniform = torch.rand(len(self.dataset), generator=generator, dtype=torch.float64)
        key = weight * self.difficulty + (1 - weight) * uniform
        shuffled = torch.randperm(len(self.dataset), generator=generator)  # random ties
        indices = shuffled[torch.argsort(key[shuffled], stable=True)].tolist()
        if self.round_up:
            indices = (indices * (self.total_size // len(indices) + 1))[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.world_size])
