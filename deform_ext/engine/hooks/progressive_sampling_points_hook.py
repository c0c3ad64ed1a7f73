"""``ProgressiveSamplingPointsHook``: more deformable sampling points as training goes.

Example (4 points, 8 from epoch 4, 16 from epoch 8; epochs count from 0)::

    custom_hooks = [dict(type='ProgressiveSamplingPointsHook', milestones={4: 8, 8: 16})]

At a milestone every :class:`~deform_ext.models.layers.MSDeformAttn` of the model
grows in place (:meth:`MSDeformAttn.grow_points`): each point gets copies at the same
offset sharing its attention weight unequally, so the model's output is unchanged
(up to rounding) and the copies drift apart as they train. The parameters stay the
same objects, so the optimizer keeps them (learning-rate multipliers included); its
state rows are grown alike, with zero momentum for the copies.

Resuming needs nothing else: a checkpoint saved after a milestone holds the grown
shapes, and ``MSDeformAttn`` grows itself while the checkpoint loads (the model is
built with the config's initial ``num_points``). The hook then only grows what is
still below the schedule for the resumed epoch.

Not for multi-process (DDP) training: DDP fixes the parameter shapes when it wraps
the model.
"""
from typing import Dict, Optional

import torch
from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from deform_ext.registry import HOOKS

MOMENTUM_KEYS = ('exp_avg', 'momentum_buffer')


def grow_optimizer_state(optimizer: torch.optim.Optimizer, grown: Dict) -> None:
    """Grow the state of parameters grown by ``MSDeformAttn.grow_points``.

    ``grown`` maps a parameter to ``(rows, is_copy)``: state tensors shaped like the
    old parameter take the same rows; momentum buffers are zero on the copies.
    """
    for param, (rows, is_copy) in grown.items():
        state = optimizer.state.get(param)
        if not state:
            continue
        for key, value in list(state.items()):
            if not torch.is_tensor(value) or value.dim() == 0:
                continue
            if value.shape[0] == rows.shape[0]:  # already grown
                continue
            value = value[rows.to(value.device)].clone()
            if key in MOMENTUM_KEYS:
                value[is_copy.to(value.device)] = 0
            state[key] = value


@HOOKS.register_module()
class ProgressiveSamplingPointsHook(Hook):
    """Grow the number of sampling points at given epochs.

    Args:
        milestones (dict): ``{epoch: num_points}``; from the start of ``epoch``
            (0-based, ``runner.epoch``) every deformable attention has at least
            ``num_points`` points. Each count must be a multiple of the one before.
    """

    priority = 'NORMAL'

    def __init__(self, milestones: Dict[int, int]) -> None:
        if not milestones:
            raise ValueError('ProgressiveSamplingPointsHook needs milestones {epoch: points}')
        self.milestones = {int(k): int(v) for k, v in milestones.items()}
        counts = [self.milestones[k] for k in sorted(self.milestones)]
        if any(b <= a or b % a for a, b in zip(counts, counts[1:])):
            raise ValueError(f'milestone point counts must grow by whole factors: {counts}')

    def target(self, epoch: int) -> Optional[int]:
        """The number of points the schedule asks for at ``epoch`` (None: initial)."""
        reached = [k for k in self.milestones if k <= epoch]
        return self.milestones[max(reached)] if reached else None

    @staticmethod
    def attention_modules(model):
        from deform_ext.models.layers import MSDeformAttn
        model = model.module if is_model_wrapper(model) else model
        return [m for m in model.modules() if isinstance(m, MSDeformAttn)]

    def before_train(self, runner) -> None:
        if get_world_size() > 1:
            raise RuntimeError('ProgressiveSamplingPointsHook changes parameter shapes, '
                               'which DDP does not allow: train with one process')
        if not self.attention_modules(runner.model):
            raise RuntimeError('ProgressiveSamplingPointsHook: the model has no MSDeformAttn')
        self.grow(runner, runner.epoch)

    def before_train_epoch(self, runner) -> None:
        self.grow(runner, runner.epoch)

    def grow(self, runner, epoch: int) -> None:
        """Grow every attention module below the schedule for ``epoch``."""
        num_points = self.target(epoch)
        if num_points is None:
            return
        grown = {}
        for module in self.attention_modules(runner.model):
            if module.num_points < num_points:
                if num_points % module.num_points:
                    raise ValueError(f'cannot grow {module.num_points} points to {num_points}')
                grown.update(module.grow_points(num_points))
        if grown:
            grow_optimizer_state(runner.optim_wrapper.optimizer, grown)
            runner.logger.info(f'ProgressiveSamplingPointsHook: {num_points} sampling points '
                               f'from epoch {epoch}')
