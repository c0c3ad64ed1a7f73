"""``DeformDETRHead``: the Deformable DETR head for :class:`DeformDETR`.

mmdet's ``DeformableDETRHead`` (classification and box branches per decoder layer,
shared unless box refinement; an extra pair for the two-stage encoder proposals;
Hungarian matching; focal, L1 and GIoU losses), registered in deform_ext's scope so
our detectors' configs name their own head. It adds a check that the head width
matches the detector's ``embed_dims``, which mmdet reports only as a shape error
deep in a forward, and the losses of hybrid matching's one-to-many query group
(:mod:`~deform_ext.models.layers.hybrid_matching`).
"""
from typing import List, Optional

from mmdet.models.dense_heads import DeformableDETRHead
from mmdet.structures import SampleList
from torch import Tensor

from deform_ext.registry import MODELS
from ..layers.hybrid_matching import repeated_targets


@MODELS.register_module()
class DeformDETRHead(DeformableDETRHead):
    """Deformable DETR head.

    Args: as mmdet's ``DeformableDETRHead`` (``num_classes``, ``embed_dims``,
    ``num_reg_fcs``, ``sync_cls_avg_factor``, ``loss_cls``, ``loss_bbox``,
    ``loss_iou``, ``train_cfg``, ``test_cfg``); ``share_pred_layer``,
    ``num_pred_layer`` and ``as_two_stage`` are set by the detector.

    Forward: hidden states (num_decoder_layers, bs, num_queries, embed_dims) and
    references → class scores (num_decoder_layers, bs, num_queries, num_classes)
    and boxes (num_decoder_layers, bs, num_queries, 4), normalised (cx, cy, w, h).
    """

    def forward(self, hidden_states, references):
        if hidden_states.shape[-1] != self.embed_dims:
            raise ValueError(f'{type(self).__name__}: embed_dims={self.embed_dims} but the '
                             f'decoder gives {hidden_states.shape[-1]} channels')
        return super().forward(hidden_states, references)

    def loss(self, hidden_states: Tensor, references: List[Tensor],
             enc_outputs_class: Optional[Tensor], enc_outputs_coord: Optional[Tensor],
             batch_data_samples: SampleList, hybrid: Optional[dict] = None) -> dict:
        """mmdet's losses; with ``hybrid`` (``num_one_to_one``, ``gt_repeats``,
        ``loss_weight``, from the detector) the queries after the first
        ``num_one_to_one`` are the one-to-many group: their losses, against every
        ground-truth box repeated ``gt_repeats`` times and weighted, come as ``o2m.*``.
        Hidden states (num_layers, bs, num_queries, dim); references as mmdet's."""
        if hybrid is None:
            return super().loss(hidden_states, references, enc_outputs_class,
                                enc_outputs_coord, batch_data_samples)
        split = hybrid['num_one_to_one']
        # the one-to-many group first, so that the head's last call (which
        # distillation reads) is the one-to-one group's, as without hybrid matching
        batch_targets = repeated_targets([s.gt_instances for s in batch_data_samples],
                                         hybrid['gt_repeats'])
        scores, boxes = self(hidden_states[:, :, split:], [r[:, split:] for r in references])
        o2m_losses = self.loss_by_feat(scores, boxes, None, None, batch_targets,
                                       [s.metainfo for s in batch_data_samples])
        losses = super().loss(hidden_states[:, :, :split], [r[:, :split] for r in references],
                              enc_outputs_class, enc_outputs_coord, batch_data_samples)
        losses.update({f'o2m.{name}': value * hybrid['loss_weight']
                       for name, value in o2m_losses.items()})
        return losses
