"""Where deformable attention looks: the sampling points of a Deformable DETR's
attention for chosen detections, coloured by attention weight, one panel per
feature level (or per head), as a PNG.

    model = deform_ext.apis.load_detector(config, checkpoint)
    record = collect_sampling(model, 'image.png', encoder_layer=-1)
    draw_sampling(record, 'sampling.png', boxes=[0, 1, 2])              # decoder
    draw_sampling(record, 'encoder.png', boxes=[0], source='encoder')  # encoder

Recording uses :class:`~deform_ext.models.layers.MSDeformAttn`'s ``record_sampling``
switch: the reference points, sampling locations and attention weights that went into
the op, exactly, from one ordinary ``inference_detector`` call. A detection's query is
found as mmdet's DETR heads find it (top-k over the last decoder layer's scores).

Coordinates: the op's locations are fractions of each level's (padded) feature map;
a level of ``(h, w)`` cells at stride ``s`` covers ``w * s`` input pixels, and the
input is the image scaled by the test pipeline's ``scale_factor``, so a location ``x``
is drawn at ``x * w * s / scale_x`` original image pixels.
"""
import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from deform_ext.models.layers.ms_deform_attn import MSDeformAttn

LEVEL_MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', 'h')
COLOUR_MAP = 'plasma'
COLOURBAR_PX, HEADER_PX = 110, 44


@contextmanager
def record_sampling(modules: Sequence[MSDeformAttn]) -> Iterator[None]:
    """Switch ``record_sampling`` on for ``modules`` within the block (each forward
    appends to ``module.recorded_sampling``); off and emptied afterwards."""
    for module in modules:
        module.recorded_sampling = []
        module.record_sampling = True
    try:
        yield
    finally:
        for module in modules:
            module.record_sampling = False


@dataclass
class AttentionSampling:
    """One attention module's sampling for every query of one image, in original
    image pixels.

    Attributes:
        locations: (num_queries, num_heads, num_levels, num_points, 2) as (x, y).
        weights: (num_queries, num_heads, num_levels, num_points), summing to 1 per head.
        references: (num_queries, num_levels, 2) points (x, y) or (…, 4) boxes
            (cx, cy, w, h).
        spatial_shapes: (num_levels, 2) (h, w) of each level; strides: (num_levels,).
        name: the module's name in the model.
    """
    locations: np.ndarray
    weights: np.ndarray
    references: np.ndarray
    spatial_shapes: np.ndarray
    strides: np.ndarray
    name: str


@dataclass
class SamplingRecord:
    """An image, its detections (best first) and the recorded sampling.

    Attributes:
        image: (H, W, 3) RGB uint8, the original image.
        boxes: (num_dets, 4) xyxy in original pixels; scores, labels: (num_dets,).
        queries: (num_dets,) the decoder query of each detection.
        decoder: the last decoder layer's cross-attention.
        encoder: the chosen encoder layer's self-attention, or None.
        classes: class names.
    """
    image: np.ndarray
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    queries: np.ndarray
    decoder: AttentionSampling
    encoder: Optional[AttentionSampling] = None
    classes: Sequence[str] = field(default_factory=tuple)


def level_strides(spatial_shapes: np.ndarray, input_shape: Sequence[int]) -> np.ndarray:
    """The stride of each level of ``(h, w)`` cells on a padded input ``(H, W)``: the
    power of two ``s`` with ``ceil(H / s) == h`` and ``ceil(W / s) == w`` (strided
    convolutions round up), else ``W / w``."""
    height, width = input_shape
    strides = []
    for h, w in spatial_shapes:
        found = [2**k for k in range(10)
                 if math.ceil(height / 2**k) == h and math.ceil(width / 2**k) == w]
        strides.append(found[0] if found else width / w)
    return np.asarray(strides, dtype=np.float64)


def _to_pixels(record: dict, name: str, input_shape, scale_factor) -> AttentionSampling:
    """Locations and references of one recorded forward (batch of one) in pixels."""
    shapes = record['spatial_shapes'].cpu().numpy()
    strides = level_strides(shapes, input_shape)
    # per level: fraction of the level map -> original pixels, (levels, 2) as (x, y)
    span = np.stack([shapes[:, 1] * strides, shapes[:, 0] * strides], -1) \
        / np.asarray(scale_factor, dtype=np.float64)[:2]
    locations = record['sampling_locations'][0].double().cpu().numpy()  # (nq, h, l, p, 2)
    references = record['reference_points'][0].double().cpu().numpy()  # (nq, l, 2|4)
    locations = locations * span[None, None, :, None, :]
    references = references * np.concatenate([span, span], -1)[None, :, :references.shape[-1]]
    return AttentionSampling(
        locations=locations, weights=record['attention_weights'][0].float().cpu().numpy(),
        references=references, spatial_shapes=shapes, strides=strides, name=name)


def detection_queries(cls_scores: torch.Tensor, max_per_img: int,
                      use_sigmoid: bool = True) -> torch.Tensor:
    """The query of each detection of a DETR head, best first, as mmdet's
    ``DETRHead._predict_by_feat_single`` ranks them: ``cls_scores`` (num_queries,
    num_classes) of the last decoder layer."""
    if use_sigmoid:
        num_classes = cls_scores.shape[-1]
        _, indexes = cls_scores.sigmoid().view(-1).topk(min(max_per_img, cls_scores.numel()))
        return indexes // num_classes
    scores, _ = cls_scores.softmax(-1)[..., :-1].max(-1)
    return scores.topk(min(max_per_img, len(scores)))[1]


def _attention_of(layers: nn.Module, index: int, attribute: str, what: str):
    layer_list = list(layers)
    if not -len(layer_list) <= index < len(layer_list):
        raise ValueError(f'{what} layer {index} does not exist: the model has '
                         f'{len(layer_list)}')
    module = getattr(layer_list[index], attribute, None)
    if not isinstance(module, MSDeformAttn):
        raise ValueError(f"the {what}'s {attribute} is {type(module).__name__}, not "
                         'deform_ext\'s MSDeformAttn: only MSDeformAttn records its sampling '
                         '(mmdet models can use it through UseDeformExtMSDA)')
    return module, index % len(layer_list)


@torch.no_grad()
def collect_sampling(model: nn.Module, image: Union[str, np.ndarray],
                     encoder_layer: Optional[int] = None) -> SamplingRecord:
    """Run ``model`` (a Deformable DETR on ``MSDeformAttn``, e.g. from
    :func:`deform_ext.apis.load_detector`) on one image (a path, or a BGR array)
    and record the sampling of its last decoder layer's cross-attention and, with
    ``encoder_layer`` (an index, -1 for the last), of that encoder layer.

    Raises:
        ValueError: the model has no such layers or they are not ``MSDeformAttn``.
    """
    from mmdet.apis import inference_detector

    from deform_ext.apis import array_test_pipeline, read_image
    if not hasattr(model, 'decoder') or not hasattr(model, 'bbox_head'):
        raise ValueError(f'{type(model).__name__} is not a DETR-style detector '
                         '(no decoder and bbox_head)')
    bgr = read_image(image) if isinstance(image, str) else image
    decoder_attn, decoder_index = _attention_of(model.decoder.layers, -1, 'cross_attn',
                                                'decoder')
    modules = [decoder_attn]
    if encoder_layer is not None:
        encoder_attn, encoder_index = _attention_of(model.encoder.layers, encoder_layer,
                                                    'self_attn', 'encoder')
        modules.append(encoder_attn)
    head_outputs = []
    hook = model.bbox_head.register_forward_hook(
        lambda module, args, output: head_outputs.append(output))
    try:
        with record_sampling(modules):
            result = inference_detector(model, bgr, test_pipeline=array_test_pipeline(model))
    finally:
        hook.remove()
    meta = result.metainfo
    input_shape, scale = meta['batch_input_shape'], meta.get('scale_factor', (1.0, 1.0))
    decoder = _to_pixels(decoder_attn.recorded_sampling[-1],
                         f'decoder.layers.{decoder_index}.cross_attn', input_shape, scale)
    encoder = None
    if encoder_layer is not None:
        encoder = _to_pixels(encoder_attn.recorded_sampling[-1],
                             f'encoder.layers.{encoder_index}.self_attn', input_shape, scale)
    for module in modules:
        module.recorded_sampling = []
    cls_scores = head_outputs[-1][0][-1][0]  # last layer, first image: (nq, classes)
    head = model.bbox_head
    max_per_img = head.test_cfg.get('max_per_img', len(cls_scores)) if head.test_cfg \
        else len(cls_scores)
    queries = detection_queries(cls_scores, max_per_img, head.loss_cls.use_sigmoid)
    pred = result.pred_instances
    if len(queries) != len(pred):
        raise ValueError(f'{len(pred)} detections but {len(queries)} ranked queries: '
                         f'{type(head).__name__} does not rank as mmdet\'s DETR heads')
    return SamplingRecord(
        image=np.ascontiguousarray(bgr[..., ::-1]), boxes=pred.bboxes.cpu().numpy(),
        scores=pred.scores.cpu().numpy(), labels=pred.labels.cpu().numpy(),
        queries=queries.cpu().numpy(), decoder=decoder, encoder=encoder,
        classes=tuple((getattr(model, 'dataset_meta', None) or {}).get('classes', ())))
