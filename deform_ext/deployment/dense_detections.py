"""Fixed-size detections of an anchor-based dense head (RetinaNet's), batched and
traceable: the steps of mmdet's ``BaseDenseHead._predict_by_feat_single`` and
``batched_nms``, with NMS as ONNX's ``NonMaxSuppression``.

Per image and level the ``nms_pre`` best (anchor, class) scores are kept (mmdet filters
by ``score_thr`` first; the sets are the same), decoded by the head's box coder,
and NMS-ed per class (mmcv's offset trick: boxes of class c shifted by
``c * (max coordinate + 1)``); the ``max_per_img`` best survivors are returned.
"""
from typing import Sequence, Tuple

import torch
from mmdet.models.task_modules.coders.delta_xywh_bbox_coder import delta2bbox
from torch import Tensor, nn


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression`` (one class, corner boxes) with mmcv's NMS in PyTorch."""

    @staticmethod
    def forward(ctx, boxes: Tensor, scores: Tensor, iou_threshold: float,
                score_threshold: float) -> Tensor:
        """boxes (bs, n, 4) xyxy, scores (bs, n) -> (num_kept, 3) int64 rows
        (image, 0, box), the boxes whose score exceeds ``score_threshold`` and that
        no better box of the image overlaps by IoU > ``iou_threshold``."""
        from mmcv.ops import nms
        rows = []
        for image, (image_boxes, image_scores) in enumerate(zip(boxes, scores)):
            candidates = torch.nonzero(image_scores > score_threshold)[:, 0]
            _, keep = nms(image_boxes[candidates], image_scores[candidates], iou_threshold)
            kept = candidates[keep]
            rows.append(torch.stack([torch.full_like(kept, image), torch.zeros_like(kept),
                                     kept], 1))
        return torch.cat(rows)

    @staticmethod
    def symbolic(g, boxes, scores, iou_threshold: float, score_threshold: float):
        def const(value):
            return g.op('Constant', value_t=torch.tensor([value]))

        return g.op('NonMaxSuppression', boxes, g.op('Unsqueeze', scores, const(1)),
                    const(2**31 - 1), const(float(iou_threshold)),
                    const(float(score_threshold)))


def _best_per_level(scores: Tensor, deltas: Tensor, priors: Tensor, nms_pre: int
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


def dense_detections(head: nn.Module, cls_scores: Sequence[Tensor],
                     bbox_preds: Sequence[Tensor], image_shape: Tuple[int, int]
                     ) -> Tuple[Tensor, Tensor, Tensor]:
    """Detections of a dense head with a ``DeltaXYWHBBoxCoder`` from its per-level
    outputs, cls_scores (bs, num_anchors * num_classes, h, w) and bbox_preds
    (bs, num_anchors * 4, h, w), for images of ``image_shape`` (H, W), with the
    head's ``test_cfg``.

    Returns boxes (bs, k, 4) xyxy in pixels, scores (bs, k), labels (bs, k) int64,
    best first, ``k = max_per_img``; rows past the survivors have score 0, label -1
    and a zero box.
    """
    cfg = head.test_cfg
    num_classes = head.cls_out_channels
    priors = head.prior_generator.grid_priors([s.shape[-2:] for s in cls_scores],
                                              dtype=cls_scores[0].dtype,
                                              device=cls_scores[0].device)
    levels = [_best_per_level(
        cls.permute(0, 2, 3, 1).reshape(cls.shape[0], -1, num_classes).sigmoid(),
        box.permute(0, 2, 3, 1).reshape(box.shape[0], -1, 4), level_priors,
        cfg.get('nms_pre', -1))
        for cls, box, level_priors in zip(cls_scores, bbox_preds, priors)]
    scores, labels, deltas, anchors = (torch.cat(parts, 1) for parts in zip(*levels))
    bs = scores.shape[0]
    # the coder's single-image path (its ONNX path imports mmdet 2's mmdet.core)
    coder = head.bbox_coder
    boxes = delta2bbox(anchors.reshape(-1, 4), deltas.reshape(-1, 4), coder.means, coder.stds,
                       image_shape, clip_border=coder.clip_border,
                       add_ctr_clamp=coder.add_ctr_clamp,
                       ctr_clamp=coder.ctr_clamp).view(bs, -1, 4)
    valid = scores > cfg.get('score_thr', 0)
    min_size = cfg.get('min_bbox_size', -1)
    if min_size >= 0:
        sizes = boxes[..., 2:] - boxes[..., :2]
        valid = valid & (sizes > min_size).all(-1)
    # mmcv's batched_nms: classes apart by the largest coordinate of the image + 1
    largest = boxes.masked_fill(~valid[..., None], 0).flatten(1).amax(1)
    shifted = boxes + (labels * (largest[:, None] + 1))[..., None]
    kept = _NonMaxSuppression.apply(shifted, scores.masked_fill(~valid, -1.0),
                                    float(cfg.nms.iou_threshold), 0.0)
    image, index = kept[:, 0], kept[:, 2]
    survivors = torch.full_like(scores, -1.0).index_put((image, index), scores[image, index])
    top_scores, top = survivors.topk(min(cfg.max_per_img, survivors.shape[1]), dim=1)
    found = top_scores >= 0
    boxes = boxes.gather(1, top[..., None].expand(-1, -1, 4)) * found[..., None]
    labels = torch.where(found, labels.gather(1, top), -1)
    return boxes, top_scores.clamp(min=0), labels
