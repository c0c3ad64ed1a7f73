"""``EncoderRPNHead``: two-stage Deformable DETR's first stage as the RPN of any mmdet
two-stage detector (Faster R-CNN, Cascade R-CNN, ...).

A light deformable encoder (1–3 :class:`MSDeformAttn` layers) runs over the FPN
levels; every token of every level is then a class-agnostic proposal scored by
:func:`~deform_ext.models.layers.encoder_tokens` — the code two-stage
:class:`DeformDETR` uses for its queries. It meets mmdet's RPN contract
(``loss_and_predict(x, batch_data_samples, proposal_cfg)``,
``predict(x, batch_data_samples, rescale)`` → ``InstanceData(bboxes, scores,
labels=0)``), so a config swaps it for ``RPNHead``::

    rpn_head=dict(type='deform_ext.EncoderRPNHead', in_channels=256, num_levels=5)

Assignment, chosen by ``train_cfg.assigner`` (one row each in benchmarks/proposals.py):

- ``HungarianAssigner`` (one-to-one, as Deformable DETR): each ground truth matched to
  one token by predicted box and score; proposals need no NMS;
- ``MaxIoUAssigner`` (one-to-many, as DETA's first stage): tokens whose *anchor*
  overlaps a ground truth by ``pos_iou_thr`` are positive, below ``neg_iou_thr``
  negative, in between ignored; proposals then go through NMS like RPNHead's;
- ``HungarianAssigner`` with ``train_cfg.gt_repeats=k`` (one-to-many by matching, as
  H-DETR's hybrid branch): every ground truth is matched to k tokens (the assigner sees
  each box k times), by predicted box and score as one-to-one does, not by a fixed
  anchor; up to k proposals per object, so they go through NMS.

All train the objectness with ``loss_cls`` over every valid token (focal loss by
default: no sampler) and the boxes of positives with ``loss_bbox`` (L1 on normalised
cx, cy, w, h) and ``loss_iou`` (GIoU in pixels).
"""
from typing import List, Optional, Sequence, Tuple
import torch
import torch.nn.functional as F

from mmcv.ops import batched_nms
from mmdet.models.detectors import DeformableDETR
from mmdet.models.layers import SinePositionalEncoding
from mmdet.models.task_modules import HungarianAssigner
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmengine.config import ConfigDict
from mmengine.model import BaseModule, bias_init_with_prob
from mmengine.structures import InstanceData
from torch import Tensor, nn

from deform_ext.registry import MODELS, TASK_UTILS, build_in_scope
from ..layers.deformable_detr_layers import DeformableEncoder
from ..layers.encoder_proposals import EncoderTokens, encoder_tokens


def default_encoder(embed_dims: int, num_levels: int, num_layers: int = 1) -> dict:
    """A light deformable encoder: ``num_layers`` layers of 8 heads × 4 points."""
    return dict(num_layers=num_layers, layer_cfg=dict(
        self_attn_cfg=dict(type='MSDeformAttn', embed_dims=embed_dims, num_heads=8,
                           num_levels=num_levels, num_points=4, batch_first=True),
        ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=4 * embed_dims,
                     ffn_drop=0.0)))


@MODELS.register_module()
class EncoderRPNHead(BaseModule):
    """Class-agnostic proposals from a deformable encoder over FPN levels.

    Args:
        in_channels (int): channels of each FPN level, the encoder's width.
        num_levels (int): the first ``num_levels`` FPN levels are encoded.
        num_classes (int): must be 1 (set so by mmdet's TwoStageDetector).
        encoder (dict, optional): :class:`DeformableEncoder` config; default
            :func:`default_encoder` (one layer).
        anchor_size (float): level 0's anchor width and height, a fraction of the image.
        num_reg_fcs (int): hidden layers of the box branch.
        loss_cls, loss_bbox, loss_iou (dict): objectness, L1 and IoU losses.
        train_cfg (dict): ``assigner`` (``HungarianAssigner`` or ``MaxIoUAssigner``) and
            ``gt_repeats`` (default 1; above 1 with ``HungarianAssigner`` only): how
            many tokens the matcher gives each ground truth, by seeing each box that
            many times.
        test_cfg (dict): proposals at test time (see :meth:`predict_by_tokens`).

    Forward: FPN levels, each (bs, in_channels, H_l, W_l), and the images' metas →
    :class:`EncoderTokens` over n = sum(H_l * W_l) tokens.
    """

    def __init__(self, in_channels: int = 256, num_levels: int = 5, num_classes: int = 1,
                 encoder: Optional[dict] = None, anchor_size: float = 0.05,
                 num_reg_fcs: int = 2,
                 loss_cls: dict = dict(type='FocalLoss', use_sigmoid=True, gamma=2.0,
                                       alpha=0.25, loss_weight=2.0),
                 loss_bbox: dict = dict(type='L1Loss', loss_weight=5.0),
                 loss_iou: dict = dict(type='GIoULoss', loss_weight=2.0),
                 train_cfg: Optional[dict] = None, test_cfg: Optional[dict] = None,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        if num_classes != 1:
            raise ValueError(f'EncoderRPNHead is class-agnostic: num_classes must be 1, '
                             f'got {num_classes}')
        self.num_levels, self.anchor_size = num_levels, anchor_size
        self.encoder = build_in_scope(MODELS, encoder or default_encoder(in_channels, num_levels),
                                      default_type=DeformableEncoder)
        attn = self.encoder.layers[0].self_attn
        if (attn.embed_dims, attn.num_levels) != (in_channels, num_levels):
            raise ValueError(f'EncoderRPNHead: encoder attention has embed_dims='
                             f'{attn.embed_dims}, num_levels={attn.num_levels} but the head '
                             f'has in_channels={in_channels}, num_levels={num_levels}')
        self.positional_encoding = SinePositionalEncoding(
            num_feats=in_channels // 2, normalize=True, offset=-0.5)
        self.level_embed = nn.Parameter(torch.empty(num_levels, in_channels))
        self.memory_trans_fc = nn.Linear(in_channels, in_channels)
        self.memory_trans_norm = nn.LayerNorm(in_channels)
        self.cls_branch = nn.Linear(in_channels, 1)
        layers = []
        for _ in range(num_reg_fcs):
            layers += [nn.Linear(in_channels, in_channels), nn.ReLU()]
        self.reg_branch = nn.Sequential(*layers, nn.Linear(in_channels, 4))
        self.loss_cls = MODELS.build(loss_cls)
        self.loss_bbox = MODELS.build(loss_bbox)
        self.loss_iou = MODELS.build(loss_iou)
        self.train_cfg, self.test_cfg = train_cfg, test_cfg
        self.assigner = (build_in_scope(TASK_UTILS, train_cfg['assigner'])
                         if train_cfg and 'assigner' in train_cfg else None)
        self.gt_repeats = int((train_cfg or {}).get('gt_repeats', 1))
        if self.gt_repeats < 1:
            raise ValueError(f'EncoderRPNHead: train_cfg.gt_repeats must be >= 1, got '
                             f'{self.gt_repeats}')
        if self.gt_repeats > 1 and not isinstance(self.assigner, HungarianAssigner):
            raise ValueError(f'EncoderRPNHead: train_cfg.gt_repeats={self.gt_repeats} needs '
                             f'HungarianAssigner (a repeated box gets other tokens only by '
                             f'matching); {type(self.assigner).__name__} would give every '
                             f'copy the same tokens')

    def init_weights(self) -> None:
        """As Deformable DETR: xavier encoder matrices, the attention's own init,
        normal level embeddings; objectness prior 0.01; zero last box layer."""
        for p in self.encoder.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for layer in self.encoder.layers:
            layer.self_attn.init_weights()
        nn.init.normal_(self.level_embed)
        nn.init.xavier_uniform_(self.memory_trans_fc.weight)
        nn.init.constant_(self.cls_branch.bias, bias_init_with_prob(0.01))
        nn.init.zeros_(self.reg_branch[-1].weight)
        nn.init.zeros_(self.reg_branch[-1].bias)

    def forward(self, x: Sequence[Tensor], batch_img_metas: List[dict]) -> EncoderTokens:
        """Encode the first ``num_levels`` levels of ``x`` and score every token."""
        if len(x) < self.num_levels:
            raise ValueError(f'EncoderRPNHead(num_levels={self.num_levels}) got {len(x)} '
                             'feature levels')
        feats = x[:self.num_levels]
        masks = padding_masks(feats, batch_img_metas)
        spatial_shapes = torch.tensor([f.shape[-2:] for f in feats], device=feats[0].device)
        level_start_index = F.pad(spatial_shapes.prod(1).cumsum(0)[:-1], (1, 0))
        query = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], 1)
        query_pos = torch.cat([
            (self.positional_encoding(m, input=f).flatten(2).transpose(1, 2)
             + self.level_embed[i])
            for i, (f, m) in enumerate(zip(feats, masks or [None] * len(feats)))], 1)
        if masks is None:  # the same numbers as all-False masks, for any batch size
            memory_mask = None
            valid_ratios = feats[0].new_ones((feats[0].shape[0], len(feats), 2))
        else:
            memory_mask = torch.cat([m.flatten(1) for m in masks], 1)
            valid_ratios = torch.stack([DeformableDETR.get_valid_ratio(m) for m in masks], 1)
        memory = self.encoder(query=query, query_pos=query_pos, key_padding_mask=memory_mask,
                              spatial_shapes=spatial_shapes,
                              level_start_index=level_start_index, valid_ratios=valid_ratios)
        return encoder_tokens(memory, memory_mask, spatial_shapes, self.memory_trans_fc,
                              self.memory_trans_norm, self.cls_branch, self.reg_branch,
                              self.anchor_size)

    def loss(self, x: Sequence[Tensor], batch_data_samples: list) -> dict:
        """Losses ``loss_rpn_cls``, ``loss_rpn_bbox``, ``loss_rpn_iou`` of a batch."""
        metas = [s.metainfo for s in batch_data_samples]
        return self.loss_by_tokens(self(x, metas), [s.gt_instances for s in batch_data_samples],
                                   metas)

    def loss_and_predict(self, x: Sequence[Tensor], batch_data_samples: list,
                         proposal_cfg: Optional[dict] = None) -> Tuple[dict, List[InstanceData]]:
        """Losses and the (detached) proposals of one forward, for R-CNN training."""
        metas = [s.metainfo for s in batch_data_samples]
        tokens = self(x, metas)
        losses = self.loss_by_tokens(tokens, [s.gt_instances for s in batch_data_samples], metas)
        return losses, self.predict_by_tokens(tokens, metas, proposal_cfg or self.test_cfg)

    def predict(self, x: Sequence[Tensor], batch_data_samples: list,
                rescale: bool = False) -> List[InstanceData]:
        """Proposals per image with ``test_cfg``; ``rescale`` maps them to the original
        image size."""
        metas = [s.metainfo for s in batch_data_samples]
        return self.predict_by_tokens(self(x, metas), metas, self.test_cfg, rescale)

    def loss_by_tokens(self, tokens: EncoderTokens, batch_gt_instances: List[InstanceData],
                       batch_img_metas: List[dict]) -> dict:
        """Objectness loss over every valid token, box losses over positives."""
        if self.assigner is None:
            raise ValueError('EncoderRPNHead needs train_cfg.assigner to compute losses')
        logits = tokens.class_logits[..., 0]
        boxes = tokens.coords_unact.sigmoid()
        labels = torch.ones_like(logits, dtype=torch.long)  # 1: background
        weights = torch.zeros_like(logits)
        pos_boxes, pos_targets, pos_factors = [], [], []
        for i, (gt, meta) in enumerate(zip(batch_gt_instances, batch_img_metas)):
            valid = tokens.valid[i]
            factor = image_factor(meta, boxes)
            pred = InstanceData(
                scores=tokens.class_logits[i][valid].detach(),
                bboxes=bbox_cxcywh_to_xyxy(boxes[i][valid].detach()) * factor,
                priors=bbox_cxcywh_to_xyxy(tokens.anchors_unact[i][valid].sigmoid()) * factor)
            repeated = gt.bboxes.repeat(self.gt_repeats, 1)  # box j is row j + m * n
            agnostic = InstanceData(bboxes=repeated,
                                    labels=repeated.new_zeros(len(repeated), dtype=torch.long))
            gt_inds = self.assigner.assign(pred, agnostic, img_meta=meta).gt_inds
            token_ids = valid.nonzero().squeeze(1)
            weights[i, token_ids[gt_inds >= 0]] = 1.0
            positive = gt_inds > 0
            labels[i, token_ids[positive]] = 0
            pos_boxes.append(boxes[i, token_ids[positive]])
            pos_targets.append(repeated[gt_inds[positive] - 1] / factor)
            pos_factors.append(factor.expand(int(positive.sum()), 4))
        pos_boxes, pos_factors = torch.cat(pos_boxes), torch.cat(pos_factors)
        pos_targets = bbox_xyxy_to_cxcywh(torch.cat(pos_targets).to(boxes.dtype))
        num_pos = max(len(pos_boxes), 1)
        loss_cls = self.loss_cls(logits.reshape(-1, 1), labels.flatten(), weights.flatten(),
                                 avg_factor=num_pos)
        if len(pos_boxes) == 0:  # no ground truth: the box branch still joins the graph
            zero = boxes[tokens.valid].sum() * 0
            return dict(loss_rpn_cls=loss_cls, loss_rpn_bbox=zero, loss_rpn_iou=zero)
        loss_iou = self.loss_iou(bbox_cxcywh_to_xyxy(pos_boxes) * pos_factors,
                                 bbox_cxcywh_to_xyxy(pos_targets) * pos_factors,
                                 avg_factor=num_pos)
        loss_bbox = self.loss_bbox(pos_boxes, pos_targets, avg_factor=num_pos)
        return dict(loss_rpn_cls=loss_cls, loss_rpn_bbox=loss_bbox, loss_rpn_iou=loss_iou)

    def predict_by_tokens(self, tokens: EncoderTokens, batch_img_metas: List[dict],
                          cfg: dict, rescale: bool = False) -> List[InstanceData]:
        """Per image, the best valid tokens as xyxy boxes clipped to the image.

        ``cfg``: ``max_per_img`` proposals; with ``nms`` (e.g. ``dict(type='nms',
        iou_threshold=0.7)``) the best ``nms_pre`` go through class-agnostic NMS
        first; ``min_bbox_size`` drops smaller boxes. Fewer valid tokens than asked
        for gives fewer proposals.
        """
        cfg = ConfigDict(cfg)
        results = []
        for i, meta in enumerate(batch_img_metas):
            valid = tokens.valid[i]
            scores = tokens.class_logits[i, valid, 0].detach().sigmoid()
            factor = image_factor(meta, scores)
            boxes = bbox_cxcywh_to_xyxy(tokens.coords_unact[i, valid].detach().sigmoid()) * factor
            boxes = torch.minimum(boxes.clamp_min(0), factor)
            k = cfg.get('nms_pre', cfg.max_per_img) if cfg.get('nms') else cfg.max_per_img
            scores, top = scores.topk(min(k, len(scores)))
            boxes = boxes[top]
            min_size = cfg.get('min_bbox_size', 0)
            if min_size > 0:
                large = ((boxes[:, 2] - boxes[:, 0]) > min_size) & \
                        ((boxes[:, 3] - boxes[:, 1]) > min_size)
                boxes, scores = boxes[large], scores[large]
            if cfg.get('nms') and len(boxes):
                dets, _ = batched_nms(boxes, scores, torch.zeros_like(scores), cfg.nms)
                boxes, scores = dets[:cfg.max_per_img, :4], dets[:cfg.max_per_img, 4]
            if rescale:
                boxes = boxes / boxes.new_tensor(meta['scale_factor']).repeat(2)
            results.append(InstanceData(bboxes=boxes, scores=scores,
                                        labels=scores.new_zeros(len(scores), dtype=torch.long)))
        return results


def image_factor(meta: dict, like: Tensor) -> Tensor:
    """(1, 4) tensor [w, h, w, h] of the unpadded image, to scale normalised boxes."""
    height, width = meta['img_shape'][:2]
    return like.new_tensor([[width, height, width, height]])


def padding_masks(feats: Sequence[Tensor], batch_img_metas: List[dict]
                  ) -> Optional[List[Tensor]]:
    """Per level, (bs, H_l, W_l) bool masks, True on the padding of the batch; None
    when no image is padded (as mmdet's ``DeformableDETR``): then nothing depends on
    the number of metas, and one meta may stand for a traced batch of any size."""
    batch_h, batch_w = batch_img_metas[0]['batch_input_shape']
    if all(tuple(meta['img_shape'][:2]) == (batch_h, batch_w) for meta in batch_img_metas):
        return None
    image_mask = feats[0].new_ones((len(batch_img_metas), batch_h, batch_w))
    for i, meta in enumerate(batch_img_metas):
        height, width = meta['img_shape'][:2]
        image_mask[i, :height, :width] = 0
    return [F.interpolate(image_mask[None], size=f.shape[-2:]).to(torch.bool)[0] for f in feats]
