"""mmcv's ``batched_nms`` batched and traceable, with NMS as ONNX's ``NonMaxSuppression``,
and the fixed-size padded detections every export path returns.

Groups (classes, or an RPN's levels) are kept apart by mmcv's offset trick: boxes of
group ``g`` shifted by ``g * (largest coordinate + 1)``, the largest coordinate over
the image's candidate boxes, so the NMS sees the same boxes as mmcv's.
"""
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor


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


def plain_nms(cfg) -> bool:
    """Whether a test_cfg's NMS is mmcv's ``nms`` per class, as exported (mmcv's
    ``batched_nms`` reads a missing ``type`` as ``'nms'``)."""
    nms = (cfg or {}).get('nms') or {}
    return bool(nms) and nms.get('type', 'nms') == 'nms' and not nms.get('class_agnostic', False)


def batched_nms_top(boxes: Tensor, scores: Tensor, groups: Tensor, valid: Tensor,
                    iou_threshold: float, k: int) -> Tuple[Tensor, Tensor, Tensor]:
    """Per image, NMS within each group over the valid candidates, then the ``k`` best
    survivors.

    Args:
        boxes: (bs, n, 4) xyxy candidates (invalid ones may hold anything, NaN too).
        scores: (bs, n), positive where valid.
        groups: (bs, n) int64 group ids (classes, levels): NMS never crosses groups.
        valid: (bs, n) bool, the candidates that take part.
        iou_threshold: a box overlapping a better one of its group by more goes.
        k: how many survivors to return.

    Returns:
        index (bs, k) into n, scores (bs, k) and found (bs, k) bool, best first;
        past the survivors index is arbitrary, score -1 and found False.
    """
    largest = boxes.masked_fill(~valid[..., None], 0).flatten(1).amax(1)
    shifted = boxes + (groups * (largest[:, None] + 1))[..., None]
    kept = _NonMaxSuppression.apply(shifted.masked_fill(~valid[..., None], 0),
                                    scores.masked_fill(~valid, -1.0), float(iou_threshold),
                                    0.0)
    image, index = kept[:, 0], kept[:, 2]
    survivors = torch.full_like(scores, -1.0).index_put((image, index), scores[image, index])
    if survivors.shape[1] < k:  # fewer candidates than k: pad with non-survivors
        survivors = F.pad(survivors, (0, k - survivors.shape[1]), value=-1.0)
    top_scores, top = survivors.topk(k, dim=1)
    found = top_scores >= 0
    return top.clamp(max=scores.shape[1] - 1), top_scores, found


def padded_detections(boxes: Tensor, labels: Tensor, index: Tensor, scores: Tensor,
                      found: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """Candidates boxes (bs, n, 4) and labels (bs, n), with :func:`batched_nms_top`'s
    index, scores and found (bs, k) -> boxes (bs, k, 4), scores (bs, k), labels (bs, k)
    int64; rows past the survivors have a zero box, score 0 and label -1."""
    boxes = torch.where(found[..., None], boxes.gather(1, index[..., None].expand(-1, -1, 4)),
                        0.0)
    labels = torch.where(found, labels.gather(1, index), -1)
    return boxes, scores.clamp(min=0), labels
