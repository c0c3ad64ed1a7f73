"""What a detector's encoder computed for a batch, in one form for any DETR-family
detector (the student's and the teacher's): its memory per level and, for two-stage
detectors, every token scored as a proposal."""
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from ..layers.encoder_proposals import EncoderTokens, encoder_tokens


class EncoderMemory(NamedTuple):
    """An encoder's output for a batch; ``n`` tokens over all levels.

    memory: (bs, n, dims).
    spatial_shapes: (num_levels, 2) (h, w) of each level, level by level in ``memory``.
    padding_mask: (bs, n) bool, True on padding, or None.
    """
    memory: Tensor
    spatial_shapes: Tensor
    padding_mask: Optional[Tensor]


def encoder_memory(output: Tensor, kwargs: dict, last_feature: Tensor) -> EncoderMemory:
    """An encoder call's memory (its ``output``, its keyword arguments). An encoder
    without ``spatial_shapes`` (DETR's, Conditional / DAB-DETR's) has one level: the
    shape of ``last_feature`` (bs, c, h, w), its input."""
    shapes = kwargs.get('spatial_shapes')
    if shapes is None:
        shapes = torch.tensor([last_feature.shape[-2:]], device=output.device)
    return EncoderMemory(output, shapes, kwargs.get('key_padding_mask'))


def is_two_stage(detector: nn.Module) -> bool:
    """Whether ``detector`` scores every encoder token as a proposal."""
    return bool(getattr(detector, 'as_two_stage', False)) and hasattr(detector,
                                                                      'memory_trans_fc')


def proposal_tokens(detector: nn.Module, memory: EncoderMemory) -> EncoderTokens:
    """The two-stage ``detector``'s proposal of every token of its ``memory``."""
    layer = detector.decoder.num_layers  # the head's extra branch pair scores tokens
    return encoder_tokens(memory.memory, memory.padding_mask, memory.spatial_shapes,
                          detector.memory_trans_fc, detector.memory_trans_norm,
                          detector.bbox_head.cls_branches[layer],
                          detector.bbox_head.reg_branches[layer])
