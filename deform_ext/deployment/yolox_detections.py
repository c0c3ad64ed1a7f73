"""Fixed-size detections of a ``YOLOXHead``, batched and traceable: the steps of
mmdet's ``YOLOXHead.predict_by_feat`` (objectness x best class sigmoid score, kept
from ``score_thr`` on, boxes decoded from the priors without clipping, NMS per class)
with :mod:`.batched_nms`.

mmdet's YOLOX configs cap no count (no ``max_per_img``): predict returns every
survivor; the export returns the best ``test_cfg.max_per_img`` when set, else
:data:`DEFAULT_MAX_PER_IMG` (the count COCO's evaluation reads), the same rows as
predict's first ones.
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from .batched_nms import batched_nms_top, padded_detections
from .dense_detections import flatten_levels

DEFAULT_MAX_PER_IMG = 100


def yolox_detections(head: nn.Module, cls_scores: Sequence[Tensor],
                     bbox_preds: Sequence[Tensor], objectnesses: Sequence[Tensor]
                     ) -> Tuple[Tensor, Tensor, Tensor]:
    """Detections of a YOLOX head from its per-level outputs, cls_scores
    (bs, num_classes, h, w), bbox_preds (bs, 4, h, w), objectnesses (bs, 1, h, w).

    Returns boxes (bs, k, 4) xyxy in pixels, scores (bs, k), labels (bs, k) int64,
    best first, ``k = max_per_img`` (see the module docstring); rows past the
    survivors have score 0, label -1 and a zero box.
    """
    cfg = head.test_cfg
    priors = torch.cat(head.prior_generator.grid_priors(
        [c.shape[-2:] for c in cls_scores], dtype=cls_scores[0].dtype,
        device=cls_scores[0].device, with_stride=True))
    class_scores, labels = flatten_levels(cls_scores, head.cls_out_channels).sigmoid().max(-1)
    objectness = flatten_levels(objectnesses, 1)[..., 0].sigmoid()
    boxes = head._bbox_decode(priors, flatten_levels(bbox_preds, 4))
    scores = class_scores * objectness
    valid = scores >= cfg.score_thr
    index, top_scores, found = batched_nms_top(
        boxes, scores, labels, valid, cfg.nms.iou_threshold,
        cfg.get('max_per_img', DEFAULT_MAX_PER_IMG))
    return padded_detections(boxes, labels, index, top_scores, found)
