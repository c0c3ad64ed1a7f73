"""The distillation losses of :class:`~deform_ext.models.detectors.DistilledDeformDETR`,
each switched on by its config dict (None: off):

- ``match``: Hungarian matching of the teacher's queries to the student's (last
  decoder layer; cost: L1 of class probabilities, L1 and GIoU of boxes), then per
  matched pair a binary KL divergence of the class probabilities at ``temperature``
  (times temperature², every teacher query, background ones included) and L1 + GIoU
  to the teacher's box weighted by the teacher's confidence (its best class
  probability);
- ``extra_targets``: the teacher's detections above ``score_thr`` as a second set of
  ground truth for the student's last layer, through the student head's own
  one-to-one loss (Teach-DETR's auxiliary targets);
- ``feature``: imitation of the teacher's neck feature at ``stride`` (the level the
  two share, e.g. DETR's C5 and a Deformable DETR's stride-32 level) through a
  learned 1x1 adapter, mean squared error over the images' unpadded positions;
- ``memory`` and ``proposals``: the encoder's, dense (:mod:`.encoder_losses`).
"""
import math
from typing import Dict, NamedTuple, Optional, Sequence

import numpy as np
import torch
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

from ..layers.encoder_proposals import EncoderTokens
from .encoder_losses import MEMORY_DEFAULTS, PROPOSAL_DEFAULTS, memory_loss, proposal_losses
from .encoder_outputs import EncoderMemory
from .teacher import TeacherOutputs, binary_kl, class_probabilities

MATCH_DEFAULTS = dict(weight=1.0, temperature=2.0, box_weight=1.0, cost_class=2.0,
                      cost_l1=5.0, cost_giou=2.0)
EXTRA_TARGET_DEFAULTS = dict(weight=1.0, score_thr=0.5)
FEATURE_DEFAULTS = dict(weight=1.0, stride=32)


class StudentOutputs(NamedTuple):
    """What the student computed in its own loss pass, for a batch of bs images.

    logits, boxes: its last decoder layer, (bs, Ns, C) and (bs, Ns, 4) normalised
        (cx, cy, w, h).
    features: its neck outputs, each (bs, channels, h, w).
    memory: its encoder output.
    tokens: every encoder token as a proposal (when ``proposals`` is on), else None.
    """
    logits: Tensor
    boxes: Tensor
    features: Sequence[Tensor]
    memory: EncoderMemory
    tokens: Optional[EncoderTokens]


def _options(given: Optional[dict], defaults: dict, name: str) -> Optional[dict]:
    if given is None:
        return None
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f'distillation {name}: unknown keys {sorted(unknown)}; '
                         f'known: {sorted(defaults)}')
    return dict(defaults, **given)


@torch.no_grad()
def match_queries(teacher_probs: Tensor, teacher_boxes: Tensor, student_logits: Tensor,
                  student_boxes: Tensor, costs: dict) -> Sequence[Tensor]:
    """Per image, (2, k) indices (teacher query, student query) of the
    minimum-cost one-to-one matching, k = min(teacher, student queries).

    Args: teacher_probs (bs, Nt, C), teacher_boxes (bs, Nt, 4), student_logits
    (bs, Ns, C), student_boxes (bs, Ns, 4); boxes normalised (cx, cy, w, h).
    """
    pairs = []
    for t_prob, t_box, s_logit, s_box in zip(teacher_probs, teacher_boxes, student_logits,
                                             student_boxes):
        giou = bbox_overlaps(bbox_cxcywh_to_xyxy(t_box), bbox_cxcywh_to_xyxy(s_box),
                             mode='giou')
        cost = (costs['cost_class'] * torch.cdist(t_prob, s_logit.sigmoid(), p=1)
                + costs['cost_l1'] * torch.cdist(t_box, s_box, p=1)
                - costs['cost_giou'] * giou)
        rows, cols = linear_sum_assignment(cost.float().cpu().numpy())
        pairs.append(torch.as_tensor(np.stack([rows, cols]), dtype=torch.long,
                                     device=t_prob.device))
    return pairs


class DistillationLosses(nn.Module):
    """The switched-on losses (module docstring); holds the adapters.

    Args:
        student_dims, teacher_dims: channels of the two necks' and encoders' outputs.
        match, extra_targets, feature, memory, proposals: each loss's options (None:
            off); keys and defaults in ``MATCH_DEFAULTS``, ``EXTRA_TARGET_DEFAULTS``,
            ``FEATURE_DEFAULTS``, ``MEMORY_DEFAULTS``, ``PROPOSAL_DEFAULTS``.
    """

    def __init__(self, student_dims: int, teacher_dims: int, match: Optional[dict] = None,
                 extra_targets: Optional[dict] = None, feature: Optional[dict] = None,
                 memory: Optional[dict] = None, proposals: Optional[dict] = None):
        super().__init__()
        self.match = _options(match, MATCH_DEFAULTS, 'match')
        self.extra_targets = _options(extra_targets, EXTRA_TARGET_DEFAULTS, 'extra_targets')
        self.feature = _options(feature, FEATURE_DEFAULTS, 'feature')
        self.memory = _options(memory, MEMORY_DEFAULTS, 'memory')
        self.proposals = _options(proposals, PROPOSAL_DEFAULTS, 'proposals')
        if not (self.match or self.extra_targets or self.feature or self.memory
                or self.proposals):
            raise ValueError('distillation: every loss is off; set at least one of match, '
                             'extra_targets, feature, memory, proposals')
        # training only: dropped from saved checkpoints with the teacher
        self.adapter = nn.Conv2d(student_dims, teacher_dims, 1) if self.feature else None
        self.memory_adapter = nn.Linear(student_dims, teacher_dims) if self.memory else None

    def forward(self, student: StudentOutputs, teacher: TeacherOutputs, samples: SampleList,
                head: nn.Module) -> Dict[str, Tensor]:
        """The losses of the student's outputs against the teacher's, for the batch's
        data samples; ``head`` is the student's (its one-to-one loss)."""
        losses = {}
        if self.match:
            losses.update(self._match_losses(student.logits, student.boxes, teacher))
        if self.extra_targets:
            losses.update(self._extra_target_losses(student.logits, student.boxes, teacher,
                                                    samples, head))
        if self.feature:
            losses['loss_distill_feat'] = self.feature['weight'] * self._feature_loss(
                student.features, teacher.features, samples)
        if self.memory:
            losses['loss_distill_memory'] = self.memory['weight'] * memory_loss(
                self.memory_adapter, student.memory, teacher.memory)
        if self.proposals:
            cfg = self.proposals
            kl, l1 = proposal_losses(student.tokens, teacher.tokens, cfg['temperature'])
            losses['loss_distill_prop_cls'] = cfg['weight'] * kl
            losses['loss_distill_prop_l1'] = cfg['weight'] * cfg['box_weight'] * l1
        return losses

    def _match_losses(self, logits, boxes, teacher) -> Dict[str, Tensor]:
        cfg = self.match
        if teacher.probs.shape[-1] != logits.shape[-1]:
            raise ValueError(f'distillation: the teacher has {teacher.probs.shape[-1]} '
                             f'classes, the student {logits.shape[-1]}')
        pairs = match_queries(teacher.probs, teacher.boxes, logits, boxes, cfg)
        t_idx = [p[0] for p in pairs]
        s_idx = [p[1] for p in pairs]
        batch = torch.cat([torch.full_like(i, b) for b, i in enumerate(t_idx)])
        t_idx, s_idx = torch.cat(t_idx), torch.cat(s_idx)
        temperature = cfg['temperature']
        soft = class_probabilities(teacher.logits, teacher.sigmoid, temperature)[batch, t_idx]
        kl = binary_kl(soft, logits[batch, s_idx] / temperature).mean() * temperature ** 2
        confidence = teacher.probs[batch, t_idx].max(-1).values
        t_box, s_box = teacher.boxes[batch, t_idx], boxes[batch, s_idx]
        norm = confidence.sum().clamp(min=1e-6)
        l1 = ((s_box - t_box).abs().sum(-1) * confidence).sum() / norm
        giou = bbox_overlaps(bbox_cxcywh_to_xyxy(s_box), bbox_cxcywh_to_xyxy(t_box),
                             mode='giou', is_aligned=True)
        giou_loss = ((1 - giou) * confidence).sum() / norm
        box_weight = cfg['box_weight']
        return dict(loss_distill_cls=cfg['weight'] * kl,
                    loss_distill_l1=cfg['weight'] * box_weight * l1,
                    loss_distill_giou=cfg['weight'] * box_weight * giou_loss)

    def _extra_target_losses(self, logits, boxes, teacher, samples, head) -> Dict[str, Tensor]:
        """The student head's one-to-one loss against the teacher's confident boxes."""
        cfg = self.extra_targets
        scores, labels = teacher.probs.max(-1)
        targets = []
        for sample, image_scores, image_labels, image_boxes in zip(
                samples, scores, labels, teacher.boxes):
            keep = image_scores > cfg['score_thr']
            height, width = sample.metainfo['img_shape'][:2]
            scale = image_boxes.new_tensor([width, height, width, height])
            targets.append(InstanceData(bboxes=bbox_cxcywh_to_xyxy(image_boxes[keep]) * scale,
                                        labels=image_labels[keep]))
        loss_cls, loss_bbox, loss_iou = head.loss_by_feat_single(
            logits, boxes, batch_gt_instances=targets,
            batch_img_metas=[s.metainfo for s in samples])
        weight = cfg['weight']
        return dict(loss_teacher_cls=weight * loss_cls, loss_teacher_bbox=weight * loss_bbox,
                    loss_teacher_iou=weight * loss_iou)

    def _feature_loss(self, student_features, teacher_features, samples) -> Tensor:
        """MSE between adapter(student level) and the teacher level at ``stride``."""
        stride = self.feature['stride']
        pad_h, pad_w = samples[0].metainfo['batch_input_shape']
        shape = (math.ceil(pad_h / stride), math.ceil(pad_w / stride))
        student = _level(student_features, shape, 'student', stride)
        target = _level(teacher_features, shape, 'teacher', stride)
        squared = (self.adapter(student) - target).pow(2).mean(1)  # (bs, h, w)
        valid = torch.zeros_like(squared, dtype=torch.bool)
        for mask, sample in zip(valid, samples):
            height, width = sample.metainfo['img_shape'][:2]
            mask[:math.ceil(height / stride), :math.ceil(width / stride)] = True
        return squared[valid].mean()


def _level(features: Sequence[Tensor], shape, who: str, stride: int) -> Tensor:
    for feature in features:
        if tuple(feature.shape[-2:]) == shape:
            return feature
    raise ValueError(f'distillation feature: no {who} neck level of stride {stride}, '
                     f'i.e. of shape {shape}; its levels are '
                     f'{[tuple(f.shape[-2:]) for f in features]}')
