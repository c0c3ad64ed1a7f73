"""A detector as one traceable function, images to fixed-size detections.

Input: ``images`` (bs, 3, H, W) float32, pixel values 0-255 in the channel order of the
files as mmcv reads them (BGR), at the exported (H, W): resize (and pad) an image to it
as the config's test pipeline would; the model's data preprocessor (BGR to RGB when
configured, mean/std) runs inside. Output: ``boxes`` (bs, k, 4) xyxy in input pixels,
``scores`` (bs, k), ``labels`` (bs, k) int64, best first, ``k = test_cfg.max_per_img``;
rows past the detections have score 0, label -1 and a zero box.

Supported (:func:`detector_kind`, :data:`SUPPORTED`), each as its mmdet ``predict``:

- ``'deformable-detr'``: the Deformable DETR family (mmdet's ``DeformableDETR`` and
  subclasses such as our ``DeformDETR``, single/multi-scale, refine, two-stage, and
  mmdet's ``DINO``, whose denoising queries exist only in training) with a sigmoid
  classifier: the top-k over queries x classes (:func:`detr_detections`);
- ``'detr'``: mmdet's ``DETR`` with its ``DETRHead`` (softmax over classes and
  background: each query's best class, then the top-k queries);
- ``'dense'``: single-stage detectors with an anchor-based dense head on mmdet's
  generic decoding with sigmoid scores (RetinaNet, with any backbone or neck such as
  DAT or ``DATFPN``): :mod:`.dense_detections`;
- ``'yolox'``: ``YOLOXHead`` (:mod:`.yolox_detections`);
- ``'rcnn'`` and ``'cascade-rcnn'``: two-stage R-CNNs with mmdet's ``RPNHead`` or our
  ``EncoderRPNHead`` (images unpadded) and a ``StandardRoIHead`` (Faster R-CNN) or a
  ``CascadeRoIHead`` (Cascade R-CNN), any backbone or neck: :mod:`.rcnn_detections`.

NMS everywhere is mmcv's ``batched_nms`` as ONNX ``NonMaxSuppression``
(:mod:`.batched_nms`), so only ``nms=dict(type='nms')`` per class is exported.
Refused with their reason (:data:`REFUSED`): DDQ-DETR, Mask2Former / MaskFormer and
any R-CNN with a mask head.
"""
from typing import Tuple

import torch
from mmdet.models.dense_heads import AnchorHead, DeformableDETRHead, DETRHead, YOLOXHead
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.detectors import (DDQDETR, DETR, DeformableDETR, MaskFormer,
                                    SingleStageDetector)
from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn

from .batched_nms import plain_nms
from .dense_detections import dense_detections
from .rcnn_detections import rcnn_detections, rcnn_kind
from .yolox_detections import yolox_detections

SUPPORTED = ('the Deformable DETR family (DeformableDETR, DeformDETR, DINO) with a '
             "sigmoid classifier; mmdet's DETR with DETRHead; single-stage detectors with an "
             "anchor-based dense head on mmdet's generic sigmoid decoding and "
             'DeltaXYWHBBoxCoder (RetinaNet) or with YOLOXHead; two-stage R-CNNs with '
             'RPNHead or EncoderRPNHead and StandardRoIHead or CascadeRoIHead '
             '(SingleRoIExtractor with RoIAlign, softmax BBoxHeads with '
             'DeltaXYWHBBoxCoder, no mask head: Faster R-CNN, Cascade R-CNN); all with '
             "NMS of type 'nms'")

# detectors refused for a reason beyond their heads, named in the error
REFUSED = (
    (DDQDETR, "DDQ-DETR's distinct query selection runs NMS per image between encoder and "
              'decoder (a data-dependent number of queries per image), and its head has '
              'its own predict; '),
    (MaskFormer, 'Mask2Former and MaskFormer predict instance and panoptic masks, which '
                 'are not exported (boxes only); '))


class UnsupportedModelError(ValueError):
    """The detector's kind has no export path (see :data:`SUPPORTED`)."""


def detector_kind(detector: nn.Module) -> str:
    """``'deformable-detr'``, ``'detr'``, ``'dense'``, ``'yolox'``, ``'rcnn'`` or
    ``'cascade-rcnn'`` (see the module docstring); raises
    :class:`UnsupportedModelError` otherwise."""
    head = getattr(detector, 'bbox_head', None)
    if isinstance(detector, DeformableDETR) and isinstance(head, DeformableDETRHead) \
            and type(head).predict_by_feat is DeformableDETRHead.predict_by_feat \
            and type(head)._predict_by_feat_single is DETRHead._predict_by_feat_single \
            and head.loss_cls.use_sigmoid:
        return 'deformable-detr'
    if isinstance(detector, DETR) and not isinstance(detector, DeformableDETR) \
            and isinstance(head, DETRHead) and type(head).forward is DETRHead.forward \
            and type(head)._predict_by_feat_single is DETRHead._predict_by_feat_single:
        return 'detr'
    if isinstance(detector, SingleStageDetector) and isinstance(head, YOLOXHead) \
            and type(head).predict_by_feat is YOLOXHead.predict_by_feat \
            and type(head)._bbox_decode is YOLOXHead._bbox_decode \
            and plain_nms(head.test_cfg):
        return 'yolox'
    if isinstance(detector, SingleStageDetector) and isinstance(head, AnchorHead) \
            and type(head)._predict_by_feat_single is BaseDenseHead._predict_by_feat_single \
            and isinstance(head.bbox_coder, DeltaXYWHBBoxCoder) and head.use_sigmoid_cls \
            and plain_nms(head.test_cfg):
        return 'dense'
    kind = rcnn_kind(detector)
    if kind:
        return kind
    heads = [type(getattr(detector, name)).__name__
             for name in ('rpn_head', 'roi_head', 'bbox_head', 'panoptic_head')
             if getattr(detector, name, None) is not None]
    parts = type(detector).__name__ + (f' with {" and ".join(heads)}' if heads else '')
    reason = next((reason for kind, reason in REFUSED if isinstance(detector, kind)), '')
    if getattr(getattr(detector, 'roi_head', None), 'with_mask', False):
        reason = 'mask heads are not exported (boxes only); '
    raise UnsupportedModelError(f'cannot export {parts}: {reason}supported are {SUPPORTED}')


def detr_detections(cls_scores: Tensor, bbox_preds: Tensor, max_per_img: int,
                    image_shape: Tuple[int, int], sigmoid: bool = True
                    ) -> Tuple[Tensor, Tensor, Tensor]:
    """The last decoder layer's cls_scores (bs, num_queries, cls_out_channels) and
    bbox_preds (bs, num_queries, 4) normalised (cx, cy, w, h) -> boxes (bs, k, 4) xyxy
    in pixels clipped to the image, scores (bs, k), labels (bs, k), ``k = max_per_img``,
    as mmdet's ``DETRHead``: with ``sigmoid`` the top-k sigmoid scores over
    queries x classes, else a softmax over the classes and background (the last
    column), each query's best class, and the top-k queries."""
    if sigmoid:
        num_classes = cls_scores.shape[-1]
        scores, index = cls_scores.sigmoid().flatten(1).topk(max_per_img, dim=1)
        queries, labels = index // num_classes, index % num_classes
    else:
        scores, labels = cls_scores.softmax(-1)[..., :-1].max(-1)
        scores, queries = scores.topk(max_per_img, dim=1)
        labels = labels.gather(1, queries)
    height, width = image_shape
    size = bbox_preds.new_tensor([width, height, width, height])
    boxes = bbox_cxcywh_to_xyxy(bbox_preds.gather(1, queries[..., None].expand(-1, -1, 4)))
    return torch.minimum((boxes * size).clamp(min=0), size), scores, labels


class ExportableDetector(nn.Module):
    """``detector`` (eval mode) as images (bs, 3, H, W) -> (boxes, scores, labels) for
    images of ``image_shape`` (H, W); see the module docstring for the conventions.

    Raises:
        UnsupportedModelError: see :func:`detector_kind`.
        ValueError: H or W is not a multiple of the preprocessor's pad_size_divisor.
    """

    def __init__(self, detector: nn.Module, image_shape: Tuple[int, int]) -> None:
        super().__init__()
        self.kind = detector_kind(detector)
        preprocessor = detector.data_preprocessor
        divisor = preprocessor.pad_size_divisor
        if any(size % divisor for size in image_shape):
            raise ValueError(f'image shape {tuple(image_shape)} must be a multiple of the '
                             f"model's pad_size_divisor {divisor}")
        self.detector = detector.eval()
        self.image_shape = tuple(int(size) for size in image_shape)
        self.bgr_to_rgb = bool(preprocessor._channel_conversion)
        self.normalize = bool(preprocessor._enable_normalize)

    def forward(self, images: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """images (bs, 3, H, W) -> boxes (bs, k, 4), scores (bs, k), labels (bs, k)."""
        if self.bgr_to_rgb:
            images = images.flip(1)
        if self.normalize:
            preprocessor = self.detector.data_preprocessor
            images = (images - preprocessor.mean) / preprocessor.std
        features = self.detector.extract_feat(images)
        if self.kind in ('rcnn', 'cascade-rcnn'):
            return rcnn_detections(self.detector, features, self.image_shape)
        head = self.detector.bbox_head
        if self.kind == 'dense':
            return dense_detections(head, *head(features), self.image_shape)
        if self.kind == 'yolox':
            return yolox_detections(head, *head(features))
        # one sample stands for the batch: all images share the exported shape, so the
        # transformer gets no padding mask
        sample = DetDataSample(metainfo=dict(batch_input_shape=self.image_shape,
                                             img_shape=self.image_shape))
        head_inputs = self.detector.forward_transformer(features, [sample])
        if self.kind == 'detr':
            cls_scores, bbox_preds = head(head_inputs['hidden_states'])
        else:
            cls_scores, bbox_preds = head(head_inputs['hidden_states'],
                                          head_inputs['references'])
        max_per_img = head.test_cfg.get('max_per_img', cls_scores.shape[2])
        return detr_detections(cls_scores[-1], bbox_preds[-1], max_per_img, self.image_shape,
                               sigmoid=head.loss_cls.use_sigmoid)
