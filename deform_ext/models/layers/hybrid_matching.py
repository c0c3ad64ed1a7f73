"""Hybrid matching (H-DETR, Jia et al. 2023) for the two-stage Deformable DETR: a
training-only second group of decoder queries matched one-to-many.

The one-to-one group (``num_queries`` queries, Hungarian matching) is what inference
runs. While training, a second group of ``num_queries`` queries, the best encoder
proposals again (it overlaps the first group's), goes through the same decoder in the
same pass; a self-attention mask keeps the groups from seeing each other, so the
one-to-one group computes exactly what it would alone. The second group is matched by
the same Hungarian matcher to every ground-truth box repeated ``gt_repeats`` times:
each object gets up to ``gt_repeats`` positive queries instead of one, which gives the
decoder, encoder and backbone denser gradients early in training. Its losses are the
head's losses (each decoder layer) times ``loss_weight``, logged as ``o2m.*``.
"""
from typing import List, NamedTuple

import torch
from mmengine.structures import InstanceData
from torch import Tensor


class HybridMatching(NamedTuple):
    """The one-to-many group's settings.

    num_queries: queries in the one-to-many group.
    gt_repeats: how many times each ground-truth box is a target there.
    loss_weight: its losses' weight.
    """
    num_queries: int = 150
    gt_repeats: int = 5
    loss_weight: float = 1.0

    @classmethod
    def from_config(cls, config: dict) -> 'HybridMatching':
        """From ``dict(num_queries=..., gt_repeats=..., loss_weight=...)``; a key
        that is not one of those or a value below 1 (0 for the weight) is an error."""
        unknown = sorted(set(config) - set(cls._fields))
        if unknown:
            raise KeyError(f'hybrid_matching: unknown keys {unknown}; it takes {cls._fields}')
        settings = cls(**config)
        if settings.num_queries < 1 or settings.gt_repeats < 1 or settings.loss_weight < 0:
            raise ValueError(f'hybrid_matching needs num_queries >= 1, gt_repeats >= 1 '
                             f'and loss_weight >= 0, got {config}')
        return settings


def group_self_attn_mask(num_one_to_one: int, num_one_to_many: int,
                         device: torch.device) -> Tensor:
    """Boolean (n, n) mask, n = the two groups' sizes, True where a query may not
    attend: across the groups."""
    total = num_one_to_one + num_one_to_many
    mask = torch.ones(total, total, dtype=torch.bool, device=device)
    mask[:num_one_to_one, :num_one_to_one] = False
    mask[num_one_to_one:, num_one_to_one:] = False
    return mask


def repeated_targets(batch_gt_instances: List[InstanceData],
                     repeats: int) -> List[InstanceData]:
    """Each image's ground truth (n boxes) as n * ``repeats`` boxes, every box
    ``repeats`` times: the one-to-many group's Hungarian targets."""
    return [gt[torch.arange(len(gt)).repeat(repeats)] for gt in batch_gt_instances]
