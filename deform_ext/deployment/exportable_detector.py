"""A detector as one traceable function, images to fixed-size detections.

Input: ``images`` (bs, 3, H, W) float32, pixel values 0-255 in the channel order of the
files as mmcv reads them (BGR), at the exported (H, W): resize (and pad) an image to it
as the config's test pipeline would; the model's data preprocessor (BGR to RGB when
configured, mean/std) runs inside. Output: ``boxes`` (bs, k, 4) xyxy in input pixels,
``scores`` (bs, k), ``labels`` (bs, k) int64, best first, ``k = test_cfg.max_per_img``.

Supported (:func:`detector_kind`): the Deformable DETR family (mmdet's
``DeformableDETR`` and subclasses such as our ``DeformDETR``, single/multi-scale,
refine, two-stage) with a sigmoid classifier: the head's top-k over queries x classes,
as mmdet's; and single-stage detectors with an anchor-based dense head on mmdet's
generic decoding with sigmoid scores (RetinaNet, with any backbone or neck such as
DAT or ``DATFPN``): see :mod:`.dense_detections`.
"""
from typing import Tuple

import torch
from mmdet.models.dense_heads import AnchorHead, DeformableDETRHead
from mmdet.models.dense_heads.base_dense_head import BaseDenseHead
from mmdet.models.detectors import DeformableDETR, SingleStageDetector
from mmdet.models.task_modules.coders import DeltaXYWHBBoxCoder
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn

from .dense_detections import dense_detections

SUPPORTED = ('the Deformable DETR family (DeformableDETR, DeformDETR) with a sigmoid '
             'classifier; single-stage detectors with an anchor-based dense head on '
             "mmdet's generic sigmoid decoding, DeltaXYWHBBoxCoder and NMS of type 'nms' "
             '(RetinaNet)')


class UnsupportedModelError(ValueError):
    """The detector's kind has no export path (see :data:`SUPPORTED`)."""


def detector_kind(detector: nn.Module) -> str:
    """``'detr'`` or ``'dense'``; raises :class:`UnsupportedModelError` otherwise."""
    head = getattr(detector, 'bbox_head', None)
    if isinstance(detector, DeformableDETR) and isinstance(head, DeformableDETRHead) \
            and head.loss_cls.use_sigmoid:
        return 'detr'
    if isinstance(detector, SingleStageDetector) and isinstance(head, AnchorHead) \
            and type(head)._predict_by_feat_single is BaseDenseHead._predict_by_feat_single \
            and isinstance(head.bbox_coder, DeltaXYWHBBoxCoder) and head.use_sigmoid_cls \
            and head.test_cfg.get('nms', {}).get('type') == 'nms':
        return 'dense'
    parts = type(detector).__name__ + (f' with {type(head).__name__}' if head else '')
    raise UnsupportedModelError(f'cannot export {parts}: supported are {SUPPORTED}')


def detr_detections(cls_scores: Tensor, bbox_preds: Tensor, max_per_img: int,
                    image_shape: Tuple[int, int]) -> Tuple[Tensor, Tensor, Tensor]:
    """The last decoder layer's cls_scores (bs, num_queries, num_classes) and
    bbox_preds (bs, num_queries, 4) normalised (cx, cy, w, h) -> boxes (bs, k, 4) xyxy
    in pixels clipped to the image, scores (bs, k), labels (bs, k): the top
    ``k = max_per_img`` sigmoid scores over queries x classes, as mmdet's head."""
    num_classes = cls_scores.shape[-1]
    scores, index = cls_scores.sigmoid().flatten(1).topk(max_per_img, dim=1)
    queries = (index // num_classes)[..., None].expand(-1, -1, 4)
    height, width = image_shape
    size = bbox_preds.new_tensor([width, height, width, height])
    boxes = bbox_cxcywh_to_xyxy(bbox_preds.gather(1, queries)) * size
    return torch.minimum(boxes.clamp(min=0), size), scores, index % num_classes


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
        head = self.detector.bbox_head
        if self.kind == 'dense':
            return dense_detections(head, *head(features), self.image_shape)
        # one sample stands for the batch: all images share the exported shape
        sample = DetDataSample(metainfo=dict(batch_input_shape=self.image_shape,
                                             img_shape=self.image_shape))
        head_inputs = self.detector.forward_transformer(features, [sample])
        cls_scores, bbox_preds = head(head_inputs['hidden_states'], head_inputs['references'])
        max_per_img = head.test_cfg.get('max_per_img', cls_scores.shape[2])
        return detr_detections(cls_scores[-1], bbox_preds[-1], max_per_img, self.image_shape)
