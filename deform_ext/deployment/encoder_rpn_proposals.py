"""Proposals of our ``EncoderRPNHead`` for unpadded images of one fixed shape, batched
and traceable: the proposals of its ``predict`` (same count, order and boxes).

With no image padded the head builds no padding masks (one meta stands for a batch of
any size), and a token's validity (its anchor inside (0.01, 0.99)) depends on the level
shapes alone: every image has the same valid tokens, gathered instead of its
``predict``'s per-image boolean indexing. Then as ``predict_by_tokens``: sigmoid
objectness, boxes clipped to the image, the ``nms_pre`` (with NMS) or ``max_per_img``
best, boxes no wider or higher than ``min_bbox_size`` dropped, class-agnostic NMS
(:func:`.batched_nms.batched_nms_top`), the ``max_per_img`` best.
"""
from typing import Sequence, Tuple

import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn

from .batched_nms import batched_nms_top


def encoder_rpn_proposals(head: nn.Module, features: Sequence[Tensor],
                          image_shape: Tuple[int, int]) -> Tuple[Tensor, Tensor]:
    """An ``EncoderRPNHead``'s proposals for the FPN ``features`` (bs, c, h, w) per
    level, of unpadded images of ``image_shape`` (H, W), with the head's ``test_cfg``.

    Returns boxes (bs, p, 4) xyxy in pixels, best first, and found (bs, p) bool,
    ``p = min(k, valid tokens)`` with ``k`` the ``max_per_img`` (with NMS: the
    ``nms_pre``) of ``test_cfg``; boxes where found is False are padding.
    """
    cfg = head.test_cfg
    tokens = head(features, [dict(img_shape=image_shape, batch_input_shape=image_shape)])
    index = tokens.valid[0].nonzero()[:, 0]  # (num_valid,), the same for every image
    scores = tokens.class_logits[:, index, 0].sigmoid()
    height, width = image_shape
    factor = scores.new_tensor([width, height, width, height])
    boxes = bbox_cxcywh_to_xyxy(tokens.coords_unact[:, index].sigmoid()) * factor
    boxes = torch.minimum(boxes.clamp_min(0), factor)
    nms = cfg.get('nms')
    k = cfg.get('nms_pre', cfg.max_per_img) if nms else cfg.max_per_img
    scores, top = scores.topk(min(k, scores.shape[1]), dim=1)
    boxes = boxes.gather(1, top[..., None].expand(-1, -1, 4))
    found = torch.ones_like(scores, dtype=torch.bool)
    min_size = cfg.get('min_bbox_size', 0)
    if min_size > 0:
        found = ((boxes[..., 2:] - boxes[..., :2]) > min_size).all(-1)
    if nms:
        top, _, found = batched_nms_top(boxes, scores, torch.zeros_like(top), found,
                                        nms.iou_threshold, cfg.max_per_img)
    elif min_size > 0:  # the large boxes first, in their order
        _, top = scores.masked_fill(~found, -1.0).topk(scores.shape[1], dim=1)
        found = found.gather(1, top)
    else:
        return boxes, found
    return boxes.gather(1, top[..., None].expand(-1, -1, 4)), found
