"""The encoder memory of a multi-scale DETR as a feature pyramid, with optional finer
levels (e.g. strides 4 and 8) for training-only dense heads.

Where the finer levels come from: a backbone stage of that stride (e.g. ResNet's
``layer1`` at stride 4) through a 1x1 convolution + GroupNorm to ``embed_dims``, plus
the next coarser pyramid level upsampled (nearest) to its size, then a 3x3
convolution: an FPN top-down step. The two alternatives each miss half of it:

- the finest memory level upsampled x2 (+ a 3x3 convolution) holds no detail that the
  coarser level lacks: a stride-4 head on it sees stride-16 content through finer
  anchors, and no backbone stage below the encoder's inputs gets a direct signal;
- the backbone stage alone (1x1 + GroupNorm) brings the high-resolution detail and
  supervises the shallow stages, but the loss on it never reaches the encoder memory.

The merge trains both the shallow backbone stages and the encoder memory, at the cost
of a few convolutions that run in training only.
"""
import math
from typing import Dict, List, Sequence

import torch.nn.functional as F
from mmcv.cnn import ConvModule
from torch import Tensor, nn


def memory_levels(memory: Tensor, spatial_shapes: Tensor) -> List[Tensor]:
    """Split the encoder memory (bs, sum(H_l * W_l), C) by ``spatial_shapes``
    (num_levels, 2) of (H_l, W_l) into its levels, each (bs, C, H_l, W_l)."""
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    if sum(h * w for h, w in shapes) != memory.shape[1]:
        raise ValueError(f'memory has {memory.shape[1]} tokens, spatial_shapes {shapes} '
                         f'give {sum(h * w for h, w in shapes)}')
    parts = memory.split([h * w for h, w in shapes], dim=1)
    return [part.transpose(1, 2).reshape(memory.shape[0], memory.shape[2], h, w)
            for part, (h, w) in zip(parts, shapes)]


def level_strides(spatial_shapes: Tensor, input_height: int) -> List[int]:
    """The stride of each level: the power of two nearest to ``input_height / H_l``
    (a level of ``ceil(H / s)`` rows, as convolutions of stride 2 give, rounds to s)."""
    return [2**round(math.log2(input_height / int(h))) for h in spatial_shapes[:, 0].tolist()]


class EncoderPyramid(nn.Module):
    """The memory levels by stride, plus finer levels made by FPN top-down steps from
    backbone stages (see the module docstring).

    Args:
        embed_dims (int): C, the memory's channels.
        extra_levels (list[dict]): one dict per finer level: ``stride`` (int),
            ``in_channels`` (the backbone stage's channels); ``source`` (the stage's
            module name) is read by the detector, not here.
        num_groups (int): GroupNorm groups of the 1x1 lateral convolutions. Default 32.
    """

    def __init__(self, embed_dims: int, extra_levels: Sequence[dict] = (),
                 num_groups: int = 32) -> None:
        super().__init__()
        self.extra_strides = sorted((int(level['stride']) for level in extra_levels),
                                    reverse=True)  # coarse to fine: top-down order
        if len(set(self.extra_strides)) != len(self.extra_strides):
            raise ValueError(f'extra_levels repeat a stride: {self.extra_strides}')
        self.laterals = nn.ModuleDict({
            str(level['stride']): ConvModule(level['in_channels'], embed_dims, 1,
                                             norm_cfg=dict(type='GN', num_groups=num_groups),
                                             act_cfg=None)
            for level in extra_levels})
        self.outputs = nn.ModuleDict({
            str(stride): nn.Conv2d(embed_dims, embed_dims, 3, padding=1)
            for stride in self.extra_strides})

    def forward(self, memory: Tensor, spatial_shapes: Tensor, input_height: int,
                sources: Dict[int, Tensor]) -> Dict[int, Tensor]:
        """The pyramid {stride: (bs, C, H_s, W_s)}.

        Args:
            memory: (bs, sum(H_l * W_l), C) encoder output.
            spatial_shapes: (num_levels, 2), (H_l, W_l) of each memory level.
            input_height: the padded batch's height, which gives the strides.
            sources: {stride: (bs, in_channels, H_s, W_s)} backbone stage outputs, one
                per extra level.
        """
        levels = memory_levels(memory, spatial_shapes)
        pyramid = dict(zip(level_strides(spatial_shapes, input_height), levels))
        if len(pyramid) != len(levels):
            raise ValueError(f'memory levels of shapes {spatial_shapes.tolist()} share a '
                             f'stride at input height {input_height}')
        for stride in self.extra_strides:
            if stride >= min(pyramid):
                raise ValueError(f'extra level stride {stride} is not finer than the '
                                 f"memory's finest level (stride {min(pyramid)})")
            if stride not in sources:
                raise ValueError(f'no backbone feature of stride {stride} was captured')
            lateral = self.laterals[str(stride)](sources[stride])
            coarser = pyramid[min(s for s in pyramid if s > stride)]
            top_down = F.interpolate(coarser, size=lateral.shape[-2:], mode='nearest')
            pyramid[stride] = self.outputs[str(stride)](lateral + top_down)
        return pyramid
