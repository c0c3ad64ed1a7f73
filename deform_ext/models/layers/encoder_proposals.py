"""Encoder proposals: every token of a deformable encoder's memory as a scored box.

Two-stage Deformable DETR's first stage, written once for its two users:

- :class:`~deform_ext.models.detectors.DeformDETR` (``as_two_stage=True``): the top-k
  tokens become the decoder's queries;
- :class:`~deform_ext.models.dense_heads.EncoderRPNHead`: the top-k tokens (NMS-ed or
  not) become an R-CNN's proposals.

Each token of level ``l`` starts from an anchor box centred on its cell with width and
height ``anchor_size * 2**l`` of the (unpadded) image; the token's memory, projected
(``memory_trans_fc`` + ``memory_trans_norm``), gives a class logit and a box delta in
inverse-sigmoid space. Tokens whose anchor is not inside (0.01, 0.99) on every
coordinate, or that lie in the padding, are *invalid*: their memory is zeroed and
their box is ``inf`` before the sigmoid (as in the paper's code).
"""
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn


class EncoderTokens(NamedTuple):
    """The scored tokens of a batch; ``n`` is the total number of tokens of all levels.

    class_logits: (bs, n, num_classes); column 0 is the objectness used for top-k.
    coords_unact: (bs, n, 4) boxes (cx, cy, w, h) before the sigmoid, normalised to
        the unpadded image; ``inf`` for invalid tokens.
    valid: (bs, n) bool, False for padding and out-of-range anchors.
    anchors_unact: (bs, n, 4) the anchors the deltas start from, same space.
    """
    class_logits: Tensor
    coords_unact: Tensor
    valid: Tensor
    anchors_unact: Tensor


def token_anchors(memory_mask: Optional[Tensor], spatial_shapes: Tensor, batch_size: int,
                  anchor_size: float = 0.05):
    """Anchor boxes of every token and their validity.

    Args:
        memory_mask: (bs, n) bool, True on padding, or None (no padding).
        spatial_shapes: (num_levels, 2) (h, w) of each level, n = sum(h * w).
        batch_size: bs.
        anchor_size: the width and height of level 0's anchors, as a fraction of the
            image; doubled at each level.

    Returns:
        anchors_unact (bs, n, 4) float32 inverse-sigmoid (cx, cy, w, h), ``inf`` where
        invalid; valid (bs, n) bool.
    """
    device, dtype = spatial_shapes.device, torch.float32
    anchors, start = [], 0
    for level, (height, width) in enumerate(spatial_shapes.tolist()):
        if memory_mask is not None:
            mask = memory_mask[:, start:start + height * width].view(batch_size, height, width)
            valid_h = (~mask[:, :, 0]).sum(1, keepdim=True)
            valid_w = (~mask[:, 0, :]).sum(1, keepdim=True)
            scale = torch.cat([valid_w, valid_h], 1).view(batch_size, 1, 1, 2)
        else:
            scale = torch.tensor([width, height], dtype=dtype, device=device).view(1, 1, 1, 2)
        grid_y, grid_x = torch.meshgrid(
            torch.linspace(0, height - 1, height, dtype=dtype, device=device),
            torch.linspace(0, width - 1, width, dtype=dtype, device=device), indexing='ij')
        centres = (torch.stack([grid_x, grid_y], -1).expand(batch_size, -1, -1, -1) + 0.5) / scale
        sizes = torch.full_like(centres, anchor_size * 2.0**level)
        anchors.append(torch.cat([centres, sizes], -1).view(batch_size, -1, 4))
        start += height * width
    anchors = torch.cat(anchors, 1)
    valid = ((anchors > 0.01) & (anchors < 0.99)).all(-1)
    if memory_mask is not None:
        valid &= ~memory_mask
    anchors_unact = torch.log(anchors / (1 - anchors)).masked_fill(~valid[..., None], float('inf'))
    return anchors_unact, valid


def encoder_tokens(memory: Tensor, memory_mask: Optional[Tensor], spatial_shapes: Tensor,
                   memory_trans_fc: nn.Module, memory_trans_norm: nn.Module,
                   cls_branch: nn.Module, reg_branch: nn.Module,
                   anchor_size: float = 0.05) -> EncoderTokens:
    """Score every token of an encoder memory (bs, n, dim) as a proposal.

    ``cls_branch`` maps (bs, n, dim) to (bs, n, num_classes) logits and ``reg_branch``
    to (bs, n, 4) deltas added to the anchors before the sigmoid.
    """
    anchors_unact, valid = token_anchors(memory_mask, spatial_shapes, memory.shape[0],
                                         anchor_size)
    memory = memory.masked_fill(~valid[..., None], 0.0)
    memory = memory_trans_norm(memory_trans_fc(memory))
    return EncoderTokens(class_logits=cls_branch(memory),
                         coords_unact=reg_branch(memory) + anchors_unact,
                         valid=valid, anchors_unact=anchors_unact)


def top_k_tokens(scores: Tensor, k: int, valid: Optional[Tensor] = None) -> Tensor:
    """Indices (bs, min(k, n)) of the ``k`` best tokens of ``scores`` (bs, n), best first.

    Asking for more tokens than there are returns them all (a 32×32 image has fewer
    tokens than 300 queries). With ``valid`` (bs, n), invalid tokens rank last (their
    score is -inf); the caller drops them where it can return fewer.
    """
    if valid is not None:
        scores = scores.masked_fill(~valid, float('-inf'))
    return torch.topk(scores, min(k, scores.shape[1]), dim=1)[1]
