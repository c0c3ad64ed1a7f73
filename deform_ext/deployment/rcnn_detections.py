"""Fixed-size detections of a two-stage R-CNN (mmdet's ``TwoStageDetector``), batched
and traceable, as its ``predict``; :func:`rcnn_kind` tells which are exported.

RPN, either mmdet's ``RPNHead`` (``_predict_by_feat_single`` and ``_bbox_post_process``:
per level the ``nms_pre`` best sigmoid scores, decoded and clipped, boxes no wider or
higher than ``min_bbox_size`` dropped, NMS within each level, the ``max_per_img`` best)
or our ``EncoderRPNHead`` (:mod:`.encoder_rpn_proposals`). In the graph the proposals
are a fixed ``(bs, p)``; where NMS leaves fewer, the rest are padding: they take the
whole image as box (RoIAlign stays finite) and are left out of the RoI head's
candidates, so no detection comes from them.

RoI head, either a ``StandardRoIHead`` (``predict_bbox``) or a ``CascadeRoIHead``
(``predict_bbox`` / ``_refine_roi``): per stage RoIAlign on each box's FPN level (ONNX
``RoiAlign``, see :class:`_RoIAlign`) and the stage's box head; between stages the
boxes are regressed by the stage's deltas (of its best class unless class-agnostic,
``BBoxHead.regress_by_class``); the classification is the mean of the stages' logits
(mmdet averages ``cls_score`` before the softmax), the boxes the last stage's decode.
Then ``BBoxHead._predict_by_feat_single`` and ``multiclass_nms``: softmax,
class-specific (or agnostic) decoding clipped to the image, scores above
``score_thr``, NMS per class, ``max_per_img`` best.
"""
from typing import Optional, Sequence, Tuple

import torch
from mmcv.ops import RoIAlign
from mmdet.models.dense_heads import RPNHead
from mmdet.models.detectors import TwoStageDetector
from mmdet.models.roi_heads import (BBoxHead, CascadeRoIHead, SingleRoIExtractor,
                                    StandardRoIHead)
from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
from torch import Tensor, nn

from deform_ext.models.dense_heads import EncoderRPNHead
from .batched_nms import batched_nms_top, padded_detections, plain_nms
from .dense_detections import decode_deltas, dense_candidates
from .encoder_rpn_proposals import encoder_rpn_proposals


def _exported_rpn(rpn: nn.Module) -> bool:
    """An ``RPNHead`` or ``EncoderRPNHead`` whose ``predict`` is exported."""
    if isinstance(rpn, EncoderRPNHead):
        return (all(getattr(type(rpn), name) is getattr(EncoderRPNHead, name)
                    for name in ('forward', 'predict', 'predict_by_tokens'))
                and (not rpn.test_cfg.get('nms') or plain_nms(rpn.test_cfg)))
    return (isinstance(rpn, RPNHead)
            and type(rpn)._predict_by_feat_single is RPNHead._predict_by_feat_single
            and type(rpn)._bbox_post_process is RPNHead._bbox_post_process
            and rpn.use_sigmoid_cls and isinstance(rpn.bbox_coder, DeltaXYWHBBoxCoder)
            and plain_nms(rpn.test_cfg))


def _exported_stage(extractor: nn.Module, box_head: nn.Module) -> bool:
    """A ``SingleRoIExtractor`` with RoIAlign and a softmax ``BBoxHead`` with deltas."""
    return (type(extractor) is SingleRoIExtractor
            and all(isinstance(layer, RoIAlign) and layer.pool_mode == 'avg'
                    and not layer.use_torchvision for layer in extractor.roi_layers)
            and isinstance(box_head, BBoxHead) and box_head.with_reg
            and type(box_head)._predict_by_feat_single is BBoxHead._predict_by_feat_single
            and type(box_head).regress_by_class is BBoxHead.regress_by_class
            and not box_head.custom_cls_channels and not box_head.custom_activation
            and isinstance(box_head.bbox_coder, DeltaXYWHBBoxCoder))


def rcnn_kind(detector: nn.Module) -> Optional[str]:
    """``'rcnn'`` (a ``StandardRoIHead``: Faster R-CNN) or ``'cascade-rcnn'`` (a
    ``CascadeRoIHead``) for a two-stage detector of the exported kind (see the
    module docstring; no mask head, NMS of type 'nms'), else None."""
    roi = getattr(detector, 'roi_head', None)
    if not (isinstance(detector, TwoStageDetector) and _exported_rpn(detector.rpn_head)
            and plain_nms(roi.test_cfg) and not roi.with_mask):
        return None
    if isinstance(roi, StandardRoIHead) and not roi.with_shared_head \
            and type(roi).predict_bbox is StandardRoIHead.predict_bbox \
            and type(roi)._bbox_forward is StandardRoIHead._bbox_forward \
            and _exported_stage(roi.bbox_roi_extractor, roi.bbox_head):
        return 'rcnn'
    if isinstance(roi, CascadeRoIHead) and all(
            getattr(type(roi), name) is getattr(CascadeRoIHead, name)
            for name in ('predict_bbox', '_refine_roi', '_bbox_forward')) \
            and all(_exported_stage(*stage)
                    for stage in zip(roi.bbox_roi_extractor, roi.bbox_head)):
        return 'cascade-rcnn'
    return None


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
    scores, _, level_ids, boxes, large = dense_candidates(head, *head(features), image_shape)
    index, _, found = batched_nms_top(boxes, scores, level_ids, large,
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


def box_head_outputs(extractor: nn.Module, bbox_head: nn.Module,
                     features: Sequence[Tensor], boxes: Tensor) -> Tuple[Tensor, Tensor]:
    """One stage: boxes (bs, p, 4) xyxy -> the box head's cls_score
    (bs, p, num_classes + 1) logits and bbox_pred (bs, p, 4 or num_classes * 4)."""
    bs, num_boxes = boxes.shape[:2]
    images = torch.arange(bs, device=boxes.device, dtype=boxes.dtype)
    rois = torch.cat([images[:, None, None].expand(-1, num_boxes, 1), boxes], 2)
    cls_score, bbox_pred = bbox_head(
        roi_features(extractor, features[:extractor.num_inputs], rois.view(-1, 5)))
    return cls_score.view(bs, num_boxes, -1), bbox_pred.view(bs, num_boxes, -1)


def refined_boxes(bbox_head: nn.Module, boxes: Tensor, cls_score: Tensor, bbox_pred: Tensor,
                  image_shape: Tuple[int, int]) -> Tensor:
    """A cascade stage's boxes (bs, p, 4) for the next (``regress_by_class``): its
    deltas, of the best class by cls_score (bs, p, num_classes + 1) unless
    class-agnostic, decoded from boxes (bs, p, 4) and clipped to ``image_shape``."""
    if not bbox_head.reg_class_agnostic:
        labels = cls_score[..., :-1].argmax(-1)
        bbox_pred = bbox_pred.view(*labels.shape, -1, 4).gather(
            2, labels[..., None, None].expand(-1, -1, 1, 4)).squeeze(2)
    return decode_deltas(bbox_head.bbox_coder, boxes, bbox_pred, image_shape)


def cascade_outputs(roi_head: nn.Module, features: Sequence[Tensor], boxes: Tensor,
                    image_shape: Tuple[int, int]) -> Tuple[Tensor, Tensor, Tensor]:
    """A ``CascadeRoIHead``'s stages on proposals (bs, p, 4) -> the last stage's boxes
    (bs, p, 4), the stages' mean cls_score (bs, p, num_classes + 1) and the last
    stage's bbox_pred (bs, p, 4 or num_classes * 4), as its ``_refine_roi``."""
    stage_scores = []
    for stage in range(roi_head.num_stages):
        bbox_head = roi_head.bbox_head[stage]
        cls_score, bbox_pred = box_head_outputs(roi_head.bbox_roi_extractor[stage], bbox_head,
                                                features, boxes)
        stage_scores.append(cls_score)
        if stage < roi_head.num_stages - 1:
            boxes = refined_boxes(bbox_head, boxes, cls_score, bbox_pred, image_shape)
    return boxes, sum(stage_scores) / float(len(stage_scores)), bbox_pred


def box_head_detections(bbox_head: nn.Module, cfg, proposals: Tensor, found: Tensor,
                        cls_score: Tensor, bbox_pred: Tensor, image_shape: Tuple[int, int]
                        ) -> Tuple[Tensor, Tensor, Tensor]:
    """The last box head's detections (``BBoxHead._predict_by_feat_single`` with the
    RoI head's test_cfg ``cfg``) of its boxes (bs, p, 4), of which found (bs, p) are
    proposals, cls_score (bs, p, num_classes + 1) and bbox_pred (bs, p, 4 or
    num_classes * 4): see :func:`rcnn_detections` for the outputs."""
    bs, num_proposals = found.shape
    num_classes = bbox_head.num_classes
    # (bs, p, num_classes): softmax without the background column
    scores = cls_score.softmax(-1)[..., :-1]
    valid = (scores > cfg.score_thr) & found[..., None]
    num_regs = 1 if bbox_head.reg_class_agnostic else num_classes
    boxes = decode_deltas(bbox_head.bbox_coder,
                          proposals.repeat_interleave(num_regs, dim=1),
                          bbox_pred.reshape(bs, num_proposals * num_regs, 4), image_shape)
    boxes = boxes.view(bs, num_proposals, num_regs, 4).expand(-1, -1, num_classes, -1)
    boxes, scores = boxes.reshape(bs, -1, 4), scores.reshape(bs, -1)
    labels = torch.arange(num_classes, device=scores.device).repeat(num_proposals)
    labels = labels[None].expand(bs, -1)
    index, top_scores, kept = batched_nms_top(boxes, scores, labels, valid.view(bs, -1),
                                              cfg.nms.iou_threshold, cfg.max_per_img)
    return padded_detections(boxes, labels, index, top_scores, kept)


def rcnn_detections(detector: nn.Module, features: Sequence[Tensor],
                    image_shape: Tuple[int, int]) -> Tuple[Tensor, Tensor, Tensor]:
    """Detections of a two-stage detector of a :func:`rcnn_kind` from its neck's
    ``features`` (bs, c, h, w) per level, for images of ``image_shape`` (H, W).

    Returns boxes (bs, k, 4) xyxy in pixels, scores (bs, k), labels (bs, k) int64,
    best first, ``k = test_cfg.rcnn.max_per_img``; rows past the survivors have
    score 0, label -1 and a zero box.
    """
    rpn = detector.rpn_head
    proposals_of = encoder_rpn_proposals if isinstance(rpn, EncoderRPNHead) else rpn_proposals
    proposals, found = proposals_of(rpn, features, image_shape)
    height, width = image_shape
    proposals = torch.where(found[..., None], proposals,
                            proposals.new_tensor([0, 0, width, height]))
    roi_head = detector.roi_head
    if isinstance(roi_head, CascadeRoIHead):
        proposals, cls_score, bbox_pred = cascade_outputs(roi_head, features, proposals,
                                                          image_shape)
        bbox_head = roi_head.bbox_head[-1]
    else:
        bbox_head = roi_head.bbox_head
        cls_score, bbox_pred = box_head_outputs(roi_head.bbox_roi_extractor, bbox_head,
                                                features, proposals)
    return box_head_detections(bbox_head, roi_head.test_cfg, proposals, found, cls_score,
                               bbox_pred, image_shape)
