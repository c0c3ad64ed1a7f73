"""Fixed-size detections of an anchor-based dense head (RetinaNet's), batched and
traceable: the steps of mmdet's ``BaseDenseHead._predict_by_feat_single`` and
``batched_nms`` (:mod:`.batched_nms`, NMS as ONNX's ``NonMaxSuppression``).

Per image and level the ``nms_pre`` best (anchor, class) scores are kept (mmdet filters
by ``score_thr`` first; the sets are the same), decoded by the head's box coder,
and NMS-ed per class (mmcv's offset trick: boxes of class c shifted by
``c * (max coordinate + 1)``); the ``max_per_img`` best survivors are returned.
"""
from typing import Sequence, Tuple

import torch
from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
from torch import Tensor, nn

from .batched_nms import batched_nms_top, padded_detections


def best_per_level(scores: Tensor, deltas: Tensor, priors: Tensor, nms_pre: int
                   ) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """One level: scores (bs, n, num_classes), deltas (bs, n, 4), priors (n, 4) ->
    the ``nms_pre`` best (anchor, class) pairs: scores (bs, k), labels (bs, k),
    deltas (bs, k, 4), priors (bs, k, 4), best first."""
    num_classes = scores.shape[-1]
    flat = scores.flatten(1)
    k = flat.shape[1] if nms_pre <= 0 else min(nms_pre, flat.shape[1])
    top_scores, index = flat.topk(k, dim=1)
    anchors = (index // num_classes)[..., None].expand(-1, -1, 4)
    return (top_scores, index % num_classes, deltas.gather(1, anchors),
            priors[None].expand(scores.shape[0], -1, -1).gather(1, anchors))


def flatten_levels(maps: Sequence[Tensor], channels: int) -> Tensor:
    """Per-level maps (bs, channels, h, w) -> (bs, sum of h * w, channels)."""
    return torch.cat([m.permute(0, 2, 3, 1).reshape(m.shape[0], -1, channels) for m in maps],
                     1)


def dense_candidates(head: nn.Module, cls_scores: Sequence[Tensor],
                     bbox_preds: Sequence[Tensor], image_shape: Tuple[int, int]
                     ) -> Tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The candidates of a dense head with a ``DeltaXYWHBBoxCoder`` (RetinaNet's, an
    RPN's) from its per-level outputs, cls_scores (bs, num_anchors * num_classes, h, w)
    and bbox_preds (bs, num_anchors * 4, h, w): per image and level the ``nms_pre`` best
    (anchor, class) pairs of its ``test_cfg``, decoded for images of ``image_shape``.

    Returns scores (bs, n) sigmoid, labels (bs, n), level ids (bs, n), boxes (bs, n, 4)
    xyxy in pixels, and (bs, n) bool: larger than ``test_cfg.min_bbox_size`` (all True
    without one).
    """
    cfg = head.test_cfg
    priors = head.prior_generator.grid_priors([s.shape[-2:] for s in cls_scores],
                                              dtype=cls_scores[0].dtype,
                                              device=cls_scores[0].device)
    levels = []
    for level, (cls, box, level_priors) in enumerate(zip(cls_scores, bbox_preds, priors)):
        scores, labels, deltas, anchors = best_per_level(
            flatten_levels([cls], head.cls_out_channels).sigmoid(), flatten_levels([box], 4),
            level_priors, cfg.get('nms_pre', -1))
        levels.append((scores, labels, torch.full_like(labels, level), deltas, anchors))
    scores, labels, level_ids, deltas, anchors = (torch.cat(parts, 1) for parts in zip(*levels))
    boxes = decode_deltas(head.bbox_coder, anchors, deltas, image_shape)
    min_size = cfg.get('min_bbox_size', -1)
    large = ((boxes[..., 2:] - boxes[..., :2]) > min_size).all(-1) if min_size >= 0 \
        else torch.ones_like(scores, dtype=torch.bool)
    return scores, labels, level_ids, boxes, large


def dense_detections(head: nn.Module, cls_scores: Sequence[Tensor],
                     bbox_preds: Sequence[Tensor], image_shape: Tuple[int, int]
                     ) -> Tuple[Tensor, Tensor, Tensor]:
    """Detections of a dense head with a ``DeltaXYWHBBoxCoder`` from its per-level
    outputs (see :func:`dense_candidates`), for images of ``image_shape`` (H, W), with
    the head's ``test_cfg``.

    Returns boxes (bs, k, 4) xyxy in pixels, scores (bs, k), labels (bs, k) int64,
    best first, ``k = max_per_img``; rows past the survivors have score 0, label -1
    and a zero box.
    """
    cfg = head.test_cfg
    scores, labels, _, boxes, large = dense_candidates(head, cls_scores, bbox_preds,
                                                       image_shape)
    valid = large & (scores > cfg.get('score_thr', 0))
    index, top_scores, found = batched_nms_top(boxes, scores, labels, valid,
                                               cfg.nms.iou_threshold, cfg.max_per_img)
    return padded_detections(boxes, labels, index, top_scores, found)


def decode_deltas(coder: nn.Module, priors: Tensor, deltas: Tensor,
                  image_shape: Tuple[int, int]) -> Tensor:
    """A ``DeltaXYWHBBoxCoder``'s boxes (bs, n, 4) of priors and deltas (bs, n, 4),
    clipped to ``image_shape`` (H, W) as the coder is configured to."""
    # the coder's single-image path (its ONNX path imports mmdet 2's mmdet.core)
    boxes = delta2bbox(priors.reshape(-1, 4), deltas.reshape(-1, 4), coder.means, coder.stds,
                       image_shape, clip_border=coder.clip_border,
                       add_ctr_clamp=coder.add_ctr_clamp, ctr_clamp=coder.ctr_clamp)
    return boxes.view(deltas.shape)
