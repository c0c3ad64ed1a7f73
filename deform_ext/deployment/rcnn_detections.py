"""Fixed-size detections of a two-stage R-CNN (mmdet's ``TwoStageDetector`` with an
``RPNHead`` and a ``StandardRoIHead``), batched and traceable.

RPN (``RPNHead._predict_by_feat_single`` and ``_bbox_post_process``): per level the
``nms_pre`` best sigmoid scores, decoded and clipped, boxes no wider or higher than
``min_bbox_size`` dropped, NMS within each level (mmcv's ``batched_nms`` with the level
as group), the ``max_per_img`` best as proposals. In the graph the proposals are a
fixed ``(bs, max_per_img)``; where NMS leaves fewer, the rest are padding: they take
the whole image as box (RoIAlign stays finite) and are left out of the RoI head's
candidates, so no detection comes from them.

RoI head (``StandardRoIHead.predict_bbox``, ``BBoxHead._predict_by_feat_single``,
``multiclass_nms``): RoIAlign on each proposal's FPN level (ONNX ``RoiAlign``, see
:class:`_RoIAlign`), the box head, softmax, class-specific (or agnostic) decoding
clipped to the image, scores above ``score_thr``, NMS per class, ``max_per_img`` best.
"""
from typing import Sequence, Tuple

import torch
from torch import Tensor, nn

from .batched_nms import batched_nms_top, padded_detections
from .dense_detections import best_per_level, decode_deltas


class _RoIAlign(torch.autograd.Function):
    """mmcv's ``roi_align`` (average pooling), exported as ONNX ``RoiAlign`` (opset 16+:
    ``half_pixel`` coordinates for mmcv's ``aligned=True``, ``output_half_pixel``
    otherwise). mmcv's own symbolic targets older opsets (``Squeeze`` with an axes
    attribute, the half pixel subtracted by hand) and fails the checker at ours."""

    @staticmethod
    def forward(ctx, features: Tensor, rois: Tensor, output_size: Tuple[int, int],
                spatial_scale: float, sampling_ratio: int, aligned: bool) -> Tensor:
        """features (bs, c, h, w), rois (n, 5) rows (image, x1, y1, x2, y2) in pixels ->
        (n, c, *output_size)."""
        from mmcv.ops import roi_align
        return roi_align(features, rois, output_size, spatial_scale, sampling_ratio, 'avg',
                         aligned)

    @staticmethod
    def symbolic(g, features, rois, output_size, spatial_scale: float, sampling_ratio: int,
                 aligned: bool):
        def columns(index):
            return g.op('Gather', rois, g.op('Constant', value_t=torch.tensor(index)),
                        axis_i=1)

        images = g.op('Cast', columns(0), to_i=torch.onnx.TensorProtoDataType.INT64)
        return g.op('RoiAlign', features, columns([1, 2, 3, 4]), images,
                    coordinate_transformation_mode_s='half_pixel' if aligned
                    else 'output_half_pixel', mode_s='avg',
                    output_height_i=output_size[0], output_width_i=output_size[1],
                    sampling_ratio_i=max(0, sampling_ratio), spatial_scale_f=spatial_scale)


def rpn_proposals(head: nn.Module, features: Sequence[Tensor], image_shape: Tuple[int, int]
                  ) -> Tuple[Tensor, Tensor]:
    """An ``RPNHead``'s proposals for the FPN ``features`` (bs, c, h, w) per level, of
    images of ``image_shape`` (H, W), with the head's ``test_cfg``.

    Returns boxes (bs, p, 4) xyxy in pixels, best first, and found (bs, p) bool,
    ``p = max_per_img``; boxes where found is False are padding.
    """
    cfg = head.test_cfg
    cls_scores, bbox_preds = head(features)
    priors = head.prior_generator.grid_priors([s.shape[-2:] for s in cls_scores],
                                              dtype=cls_scores[0].dtype,
                                              device=cls_scores[0].device)
    levels = []
    for level, (cls, box, level_priors) in enumerate(zip(cls_scores, bbox_preds, priors)):
        scores, _, deltas, anchors = best_per_level(
            cls.permute(0, 2, 3, 1).reshape(cls.shape[0], -1, 1).sigmoid(),
            box.permute(0, 2, 3, 1).reshape(box.shape[0], -1, 4), level_priors,
            cfg.get('nms_pre', -1))
        levels.append((scores, torch.full_like(scores, level, dtype=torch.long), deltas,
                       anchors))
    scores, level_ids, deltas, anchors = (torch.cat(parts, 1) for parts in zip(*levels))
    boxes = decode_deltas(head.bbox_coder, anchors, deltas, image_shape)
    valid = torch.ones_like(scores, dtype=torch.bool)
    min_size = cfg.get('min_bbox_size', -1)
    if min_size >= 0:
        valid = ((boxes[..., 2:] - boxes[..., :2]) > min_size).all(-1)
    index, _, found = batched_nms_top(boxes, scores, level_ids, valid,
                                      cfg.nms.iou_threshold, cfg.max_per_img)
    return boxes.gather(1, index[..., None].expand(-1, -1, 4)), found


def roi_features(extractor: nn.Module, features: Sequence[Tensor], rois: Tensor) -> Tensor:
    """A ``SingleRoIExtractor``'s features (n, c, out_h, out_w) of rois (n, 5): every
    level pools every RoI and each RoI keeps its own level's (mmdet's loop over the
    RoIs of each level has data-dependent shapes)."""
    layers = extractor.roi_layers
    levels = extractor.map_roi_levels(rois, len(layers))
    pooled = None
    for level, (layer, level_features) in enumerate(zip(layers, features)):
        level_pooled = _RoIAlign.apply(level_features, rois, tuple(layer.output_size),
                                       float(layer.spatial_scale), int(layer.sampling_ratio),
                                       bool(layer.aligned))
        pooled = level_pooled if pooled is None else torch.where(
            (levels == level)[:, None, None, None], level_pooled, pooled)
    return pooled


def rcnn_detections(detector: nn.Module, features: Sequence[Tensor],
                    image_shape: Tuple[int, int]) -> Tuple[Tensor, Tensor, Tensor]:
    """Detections of a two-stage detector (RPNHead, StandardRoIHead) from its neck's
    ``features`` (bs, c, h, w) per level, for images of ``image_shape`` (H, W).

    Returns boxes (bs, k, 4) xyxy in pixels, scores (bs, k), labels (bs, k) int64,
    best first, ``k = test_cfg.rcnn.max_per_img``; rows past the survivors have
    score 0, label -1 and a zero box.
    """
    proposals, found = rpn_proposals(detector.rpn_head, features, image_shape)
    bs, num_proposals = found.shape
    height, width = image_shape
    proposals = torch.where(found[..., None], proposals,
                            proposals.new_tensor([0, 0, width, height]))
    images = torch.arange(bs, device=proposals.device, dtype=proposals.dtype)
    rois = torch.cat([images[:, None, None].expand(-1, num_proposals, 1), proposals], 2)
    roi_head = detector.roi_head
    extractor = roi_head.bbox_roi_extractor
    cls_score, bbox_pred = roi_head.bbox_head(
        roi_features(extractor, features[:extractor.num_inputs], rois.view(-1, 5)))
    bbox_head, cfg = roi_head.bbox_head, roi_head.test_cfg
    num_classes = bbox_head.num_classes
    # (bs, p, num_classes): softmax without the background column
    scores = cls_score.softmax(-1)[:, :-1].view(bs, num_proposals, num_classes)
    valid = (scores > cfg.score_thr) & found[..., None]
    num_regs = 1 if bbox_head.reg_class_agnostic else num_classes
    boxes = decode_deltas(bbox_head.bbox_coder,
                          proposals.repeat_interleave(num_regs, dim=1),
                          bbox_pred.view(bs, num_proposals * num_regs, 4), image_shape)
    boxes = boxes.view(bs, num_proposals, num_regs, 4).expand(-1, -1, num_classes, -1)
    boxes, scores = boxes.reshape(bs, -1, 4), scores.reshape(bs, -1)
    labels = torch.arange(num_classes, device=scores.device).repeat(num_proposals)
    labels = labels[None].expand(bs, -1)
    index, top_scores, kept = batched_nms_top(boxes, scores, labels, valid.view(bs, -1),
                                              cfg.nms.iou_threshold, cfg.max_per_img)
    return padded_detections(boxes, labels, index, top_scores, kept)
