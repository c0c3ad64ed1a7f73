"""Co-DETR's customised positive queries: the auxiliary heads' positive anchors as
extra, training-only decoder queries with known targets.

An auxiliary dense head (ATSS) assigns its anchors one-to-many: every object gets
several positive anchors on the levels that fit its size. Co-DETR (Zong et al. 2023)
turns those anchors into decoder queries the way two-stage Deformable DETR turns encoder
proposals into queries: the anchor box (normalised by its image's size) is the query's
reference box, and its sine embedding through a linear layer and a LayerNorm (one pair
per auxiliary head) gives the query's position and content. The decoder runs once per
head on these queries alone (they never meet the detector's own queries), and each
query is trained towards the object its anchor was assigned to, with the detector
head's classification, L1 and GIoU losses on every decoder layer: no Hungarian
matching, so from the first iteration every object has several well-placed queries
that teach the decoder's cross-attention where to look. Training only: inference runs
the detector's own queries and never builds these.

Per image the positives are capped at ``max_per_image`` (a random subset) and padded
to the batch's largest count by repeating the image's own positives with weight 0: a
padded query looks like a real one to the others' self-attention and adds no loss.
"""
from typing import Dict, List, NamedTuple, Sequence, Tuple

import torch
from mmdet.models.dense_heads import ATSSHead
from mmdet.models.losses import QualityFocalLoss
from mmdet.models.utils import unpack_gt_instances
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps, bbox_xyxy_to_cxcywh
from mmdet.utils import reduce_mean
from mmengine.model import BaseModule, ModuleList
from torch import Tensor, nn

# per image: anchors (P, 4) and the assigned boxes (P, 4), xyxy in pixels; labels (P,)
ImagePositives = Tuple[Tensor, Tensor, Tensor]


class PositiveBatch(NamedTuple):
    """One head's positive anchors for a batch, padded to P queries per image.

    anchors: (bs, P, 4) normalised (cx, cy, w, h) anchor boxes, the queries' references.
    labels: (bs, P) class of each anchor's object.
    targets: (bs, P, 4) normalised (cx, cy, w, h) box of each anchor's object.
    weights: (bs, P) 1 for a positive, 0 for padding.
    """
    anchors: Tensor
    labels: Tensor
    targets: Tensor
    weights: Tensor


def anchor_positives(head: nn.Module, featmap_sizes: Sequence[torch.Size],
                     batch_data_samples: SampleList, device: torch.device
                     ) -> List[ImagePositives]:
    """The anchors that ``head`` (an ATSSHead regressing boxes, see
    :func:`check_positive_head`) assigns to objects, as its loss does (ignored
    instances included), per image: (anchors (P, 4), assigned boxes (P, 4), labels (P,))."""
    gt_instances, gt_ignored, metas = unpack_gt_instances(batch_data_samples)
    anchor_list, valid_flags = head.get_anchors(featmap_sizes, metas, device=device)
    anchors, labels, _, boxes, _, _ = head.get_targets(
        anchor_list, valid_flags, gt_instances, metas, gt_ignored)
    anchors, labels, boxes = (torch.cat(levels, 1) for levels in (anchors, labels, boxes))
    positive = (labels >= 0) & (labels < head.num_classes)
    return [(a[p], b[p], lab[p]) for a, b, lab, p in zip(anchors, boxes, labels, positive)]


def check_positive_head(head: nn.Module) -> None:
    """A clear error for a head whose assignment cannot make positive queries: they
    need ATSSHead's ``get_targets`` (anchors first) with boxes as regression targets."""
    name = type(head).__name__
    if not isinstance(head, ATSSHead):
        raise ValueError(f'positive_queries need ATSSHead (or a subclass) as the auxiliary '
                         f'head, got {name}')
    if not head.reg_decoded_bbox:
        raise ValueError(f'positive_queries need a head with reg_decoded_bbox=True (boxes, '
                         f'not deltas, as targets); {name} has it off')


class PositiveQueries(BaseModule):
    """The query projections (one per auxiliary head) and settings.

    Args:
        embed_dims (int): C, the decoder's width.
        num_heads (int): auxiliary heads, each with its own projection.
        max_per_image (int): at most this many positive queries per image and head.
            Default 300 (Co-DETR's).
        loss_weight (float): weight of their losses. Default 1.0.
    """

    def __init__(self, embed_dims: int, num_heads: int, max_per_image: int = 300,
                 loss_weight: float = 1.0, init_cfg=None) -> None:
        super().__init__(init_cfg)
        if max_per_image < 1 or loss_weight < 0:
            raise ValueError(f'positive_queries need max_per_image >= 1 and loss_weight '
                             f'>= 0, got {max_per_image} and {loss_weight}')
        self.embed_dims = embed_dims
        self.max_per_image = max_per_image
        self.loss_weight = loss_weight
        self.projections = ModuleList(
            nn.Sequential(nn.Linear(2 * embed_dims, 2 * embed_dims),
                          nn.LayerNorm(2 * embed_dims)) for _ in range(num_heads))

    def batch(self, positives: List[ImagePositives],
              batch_data_samples: SampleList) -> PositiveBatch:
        """Per-image positives (pixels) as a padded, normalised :class:`PositiveBatch`."""
        device = batch_data_samples[0].gt_instances.bboxes.device
        counts = [min(len(labels), self.max_per_image) for _, _, labels in positives]
        size = max(max(counts), 1)
        rows = []
        for (anchors, boxes, labels), count, sample in zip(positives, counts,
                                                           batch_data_samples):
            height, width = sample.metainfo['img_shape'][:2]
            factor = anchors.new_tensor([width, height, width, height])
            if len(labels) == 0:  # no object: one whole-image query with weight 0
                whole = factor.new_tensor([[0.0, 0.0, width, height]])
                anchors, boxes, labels = whole, whole, labels.new_zeros(1)
            keep = torch.randperm(len(labels), device=device)[:max(count, 1)]
            index = keep[torch.arange(size, device=device) % len(keep)]
            weights = (torch.arange(size, device=device) < count).float()
            rows.append((bbox_xyxy_to_cxcywh(anchors[index] / factor).clamp(0, 1),
                         labels[index], bbox_xyxy_to_cxcywh(boxes[index] / factor), weights))
        return PositiveBatch(*(torch.stack(column) for column in zip(*rows)))

    def queries(self, head_index: int, box_embedding: Tensor) -> Tuple[Tensor, Tensor]:
        """(query, query_pos), each (bs, P, C), from the anchors' sine embedding
        (bs, P, 2C) through head ``head_index``'s projection."""
        query_pos, query = self.projections[head_index](box_embedding).split(
            self.embed_dims, dim=-1)
        return query, query_pos


def class_targets(loss_cls: nn.Module, labels: Tensor, boxes: Tensor, targets: Tensor):
    """What ``loss_cls`` takes as the targets of positive queries: the labels (P,), or
    for an IoU-aware ``QualityFocalLoss`` the labels and each box's IoU with its target
    (both (P, 4) normalised (cx, cy, w, h); the IoU does not depend on the image size
    and carries no gradient), as mmdet's DETR heads give it."""
    if not isinstance(loss_cls, QualityFocalLoss):
        return labels
    quality = bbox_overlaps(bbox_cxcywh_to_xyxy(boxes.detach()), bbox_cxcywh_to_xyxy(targets),
                            is_aligned=True)
    return labels, quality


def positive_query_losses(bbox_head: nn.Module, cls_scores: Tensor, bbox_preds: Tensor,
                          batch: PositiveBatch, tag: str,
                          loss_weight: float) -> Dict[str, Tensor]:
    """The detector head's losses of the positive queries against their known targets,
    per decoder layer: ``loss_<tag>_cls``/``_bbox``/``_iou`` for the last layer,
    ``d<i>.loss_<tag>_*`` for the others, each times ``loss_weight``.

    Args:
        bbox_head: the DETR head (its ``loss_cls``, ``loss_bbox``, ``loss_iou``).
        cls_scores: (num_layers, bs, P, num_classes) logits.
        bbox_preds: (num_layers, bs, P, 4) normalised (cx, cy, w, h).
        batch: the queries' targets.
    """
    channels = cls_scores.shape[-1]
    weights = batch.weights.flatten()  # padding has weight 0: its labels add nothing
    avg_factor = reduce_mean(weights.sum()).clamp(min=1.0)  # over all processes
    labels = batch.labels.flatten()
    targets = batch.targets.flatten(0, 1)
    box_weights = weights[:, None].expand(-1, 4)
    losses = {}
    num_layers = cls_scores.shape[0]
    for layer in range(num_layers):
        boxes = bbox_preds[layer].flatten(0, 1)
        prefix = '' if layer == num_layers - 1 else f'd{layer}.'
        values = {
            'cls': bbox_head.loss_cls(cls_scores[layer].reshape(-1, channels),
                                      class_targets(bbox_head.loss_cls, labels, boxes, targets),
                                      weights, avg_factor=avg_factor),
            'bbox': bbox_head.loss_bbox(boxes, targets, box_weights, avg_factor=avg_factor),
            # GIoU does not change when x and y are scaled: normalised boxes give the
            # pixel boxes' GIoU
            'iou': bbox_head.loss_iou(bbox_cxcywh_to_xyxy(boxes), bbox_cxcywh_to_xyxy(targets),
                                      box_weights, avg_factor=avg_factor)}
        losses.update({f'{prefix}loss_{tag}_{name}': value * loss_weight
                       for name, value in values.items()})
    return losses
