"""Demo batches: ``mmdet.testing.demo_mm_inputs`` through a model's data preprocessor."""
from typing import Optional, Sequence

import numpy as np
import torch
from torch import nn


def num_classes_of(model: nn.Module) -> int:
    """The classes of a detector's head: ``bbox_head``, ``roi_head.bbox_head`` for
    two-stage detectors such as Faster R-CNN, or ``panoptic_head`` for MaskFormer and
    Mask2Former (things and stuff)."""
    if hasattr(model, 'panoptic_head'):
        return model.panoptic_head.num_classes
    head = model.bbox_head if hasattr(model, 'bbox_head') else model.roi_head.bbox_head
    if isinstance(head, nn.ModuleList):  # Cascade R-CNN: one head per stage
        head = head[-1]
    return head.num_classes


def has_mask_head(model: nn.Module) -> bool:
    """Whether ``model`` learns instance masks: a mask branch (Mask R-CNN's
    ``roi_head.mask_head``, mmdet's ``with_mask``) or a MaskFormer-style
    ``panoptic_head``."""
    return bool(getattr(model, 'with_mask', False)) or hasattr(model, 'panoptic_head')


def demo_batch(model: nn.Module,
               image_shapes: Sequence[tuple] = ((3, 64, 96), (3, 96, 64)),
               num_items: Sequence[int] = (3, 2), *, seed: int = 0,
               num_classes: Optional[int] = None,
               dtype: Optional[torch.dtype] = None,
               with_mask: Optional[bool] = None) -> dict:
    """A training batch for ``model``: random images of ``image_shapes`` (C, H, W) with
    ``num_items`` random boxes each, preprocessed by ``model.data_preprocessor``.

    Returns ``dict(inputs=(bs, C, H_pad, W_pad) tensor, data_samples=[DetDataSample]
    with gt_instances (bboxes (n, 4) xyxy, labels (n,)) and, ``with_mask``, masks
    (``BitmapMasks`` of n masks (H_pad, W_pad), each inside its box))``, on the model's
    device and in ``dtype`` (default: the model's parameters' dtype; the boxes too;
    ``with_mask`` defaults to :func:`has_mask_head`). Images of
    different shapes are padded to one size, so the padding masks take part. The
    random generators of torch and numpy are seeded with ``seed`` first; labels are
    drawn below ``num_classes`` (default: :func:`num_classes_of`)."""
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(seed)
    np.random.seed(seed)
    packed = demo_mm_inputs(batch_size=len(image_shapes), image_shapes=list(image_shapes),
                            num_items=list(num_items),
                            num_classes=num_classes or num_classes_of(model),
                            with_mask=has_mask_head(model) if with_mask is None else with_mask)
    data = model.data_preprocessor(packed, True)
    parameter = next(model.parameters())
    if dtype is None:
        dtype = parameter.dtype
    data['inputs'] = data['inputs'].to(parameter.device, dtype)
    samples = [sample.to(parameter.device) for sample in data['data_samples']]
    for sample in samples:
        sample.gt_instances.bboxes = sample.gt_instances.bboxes.to(dtype)
    data['data_samples'] = samples
    return data
