"""Distillation of the encoder, dense: every token of the student's encoder learns from
the teacher's token at the same place (the decoder-side losses teach only the
student's matched queries, a few per image).

- ``memory``: the teacher's encoder memory on every level the two share (same
  (h, w); a DETR teacher has one, its C5), through a learned linear adapter
  (training only), mean squared error over the tokens unpadded in both;
- ``proposals`` (two-stage teachers: ours, mmdet's two-stage Deformable DETR, DINO,
  on the same levels as the student): the teacher's per-token proposals, that is
  the objectness its top-k picks the decoder queries by (a binary KL at
  ``temperature``, every valid token, summed and divided by the teacher's total
  objectness, so that the many background tokens do not drown the few objects)
  and the token's box (L1 weighted by the teacher's objectness).
"""
import torch
from torch import Tensor, nn

from ..layers.encoder_proposals import EncoderTokens
from .encoder_outputs import EncoderMemory
from .teacher import binary_kl

MEMORY_DEFAULTS = dict(weight=1.0)
PROPOSAL_DEFAULTS = dict(weight=1.0, temperature=1.0, box_weight=1.0)


def _level_slices(shapes: Tensor):
    """{(h, w): (start, end)} of each level's tokens."""
    slices, start = {}, 0
    for height, width in shapes.tolist():
        slices[(height, width)] = (start, start + height * width)
        start += height * width
    return slices


def memory_loss(adapter: nn.Module, student: EncoderMemory, teacher: EncoderMemory) -> Tensor:
    """Mean over the teacher's levels of the MSE between ``adapter(student memory)`` and
    the teacher's memory, over the tokens unpadded in both."""
    student_levels = _level_slices(student.spatial_shapes)
    losses = []
    for shape, (t0, t1) in _level_slices(teacher.spatial_shapes).items():
        if shape not in student_levels:
            raise ValueError(f'distillation memory: the teacher has an encoder level of '
                             f'(h, w) = {shape}, the student does not; its levels are '
                             f'{list(student_levels)}')
        s0, s1 = student_levels[shape]
        squared = (adapter(student.memory[:, s0:s1]) - teacher.memory[:, t0:t1]).pow(2).mean(-1)
        valid = torch.ones_like(squared, dtype=torch.bool)
        for mask, (start, end) in ((student.padding_mask, (s0, s1)),
                                   (teacher.padding_mask, (t0, t1))):
            if mask is not None:
                valid &= ~mask[:, start:end]
        losses.append(squared[valid].mean())
    return torch.stack(losses).mean()


def proposal_losses(student: EncoderTokens, teacher: EncoderTokens, temperature: float):
    """(objectness KL, box L1) of the student's tokens against the teacher's, both
    (bs, n, ...) on the same levels; see the module docstring."""
    if student.class_logits.shape[:2] != teacher.class_logits.shape[:2]:
        raise ValueError('distillation proposals: the student and the teacher must score '
                         'the same encoder tokens (the same levels); got '
                         f'{tuple(student.class_logits.shape[:2])} and '
                         f'{tuple(teacher.class_logits.shape[:2])} (bs, tokens)')
    valid = student.valid & teacher.valid
    teacher_logit = teacher.class_logits[..., :1][valid].float()  # (k, 1): objectness
    soft = (teacher_logit / temperature).sigmoid()
    kl = binary_kl(soft, student.class_logits[..., :1][valid] / temperature)
    kl = kl.sum() / soft.sum().clamp(min=1.0) * temperature ** 2
    objectness = teacher_logit.sigmoid()[:, 0]
    student_box = student.coords_unact[valid].sigmoid()
    teacher_box = teacher.coords_unact[valid].float().sigmoid()
    l1 = ((student_box - teacher_box).abs().sum(-1) * objectness).sum()
    return kl, l1 / objectness.sum().clamp(min=1.0)
