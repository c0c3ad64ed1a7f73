"""``OffsetL1Loss``: L1 regularisation of deformable attention sampling offsets."""
from typing import Sequence

import torch
from torch import Tensor, nn

from deform_ext.registry import MODELS


@MODELS.register_module()
class OffsetL1Loss(nn.Module):
    """``loss_weight * mean(|offset|)`` over every offset of every module.

    Keeps the sampling points near their reference points (offsets are in the
    attention's own units: feature-map pixels around points, fractions of the box
    around boxes).

    Args:
        loss_weight (float): weight of the loss. Defaults to 1e-4.
    """

    def __init__(self, loss_weight: float = 1e-4) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, offsets: Sequence[Tensor]) -> Tensor:
        """Args: offsets: tensors (bs, num_queries, num_heads, num_levels, num_points, 2),
        one per attention call. Returns: a scalar (zero without offsets)."""
        if not offsets:
            return torch.zeros(())
        total = sum(o.abs().sum() for o in offsets)
        count = sum(o.numel() for o in offsets)
        return self.loss_weight * total / count
