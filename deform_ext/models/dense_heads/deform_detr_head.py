"""``DeformDETRHead``: the Deformable DETR head for :class:`DeformDETR`.

mmdet's ``DeformableDETRHead`` (classification and box branches per decoder layer,
shared unless box refinement; an extra pair for the two-stage encoder proposals;
Hungarian matching; focal, L1 and GIoU losses), registered in deform_ext's scope so
our detectors' configs name their own head. It adds a check that the head width
matches the detector's ``embed_dims``, which mmdet reports only as a shape error
deep in a forward, the losses of hybrid matching's one-to-many query group
(:mod:`~deform_ext.models.layers.hybrid_matching`) and those of the denoising queries
(:mod:`~deform_ext.models.layers.denoising`, mmdet's DINO losses).
"""
from typing import List, Optional

from mmdet.models.dense_heads import DeformableDETRHead, DINOHead
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

    # the denoising queries' targets and losses: DINO's, as mmdet's DINOHead has them
    loss_dn = DINOHead.loss_dn
    _loss_dn_single = DINOHead._loss_dn_single
    get_dn_targets = DINOHead.get_dn_targets
    _get_dn_targets_single = DINOHead._get_dn_targets_single

    def forward(self, hidden_states, references):
        if hidden_states.shape[-1] != self.embed_dims:
            raise ValueError(f'{type(self).__name__}: embed_dims={self.embed_dims} but the '
                             f'decoder gives {hidden_states.shape[-1]} channels')
        return super().forward(hidden_states, references)

    def loss(self, hidden_states: Tensor, references: List[Tensor],
             enc_outputs_class: Optional[Tensor], enc_outputs_coord: Optional[Tensor],
             batch_data_samples: SampleList, hybrid: Optional[dict] = None,
             dn_meta: Optional[dict] = None) -> dict:
        """mmdet's losses; with ``hybrid`` (``num_one_to_one``, ``gt_repeats``,
        ``loss_weight``, from the detector) the queries after the first
        ``num_one_to_one`` are the one-to-many group: their losses, against every
        ground-truth box repeated ``gt_repeats`` times and weighted, come as ``o2m.*``.
        With ``dn_meta`` (``num_denoising_queries``, ``num_denoising_groups``,
        ``loss_weight``) the first ``num_denoising_queries`` queries are denoising
        queries: their losses, weighted, come as ``dn_loss_*`` and ``d<i>.dn_loss_*``.
        Hidden states (num_layers, bs, num_queries, dim); references as mmdet's."""
        if dn_meta is not None:
            return self._loss_with_denoising(hidden_states, references, enc_outputs_class,
                                             enc_outputs_coord, batch_data_samples, dn_meta)
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

    def _loss_with_denoising(self, hidden_states: Tensor, references: List[Tensor],
                             enc_outputs_class: Tensor, enc_outputs_coord: Tensor,
                             batch_data_samples: SampleList, dn_meta: dict) -> dict:
        """The denoising queries' losses (first, so that the head's last call is the
        matching queries', as without them) and the matching queries' losses."""
        split = dn_meta['num_denoising_queries']
        scores, boxes = self(hidden_states[:, :, :split], [r[:, :split] for r in references])
        per_layer = self.loss_dn(scores, boxes,
                                 batch_gt_instances=[s.gt_instances for s in batch_data_samples],
                                 batch_img_metas=[s.metainfo for s in batch_data_samples],
                                 dn_meta=dn_meta)
        losses = self.loss(hidden_states[:, :, split:], [r[:, split:] for r in references],
                           enc_outputs_class, enc_outputs_coord, batch_data_samples)
        last = len(per_layer[0]) - 1
        for kind, layer_losses in zip(('cls', 'bbox', 'iou'), per_layer):
            for layer, value in enumerate(layer_losses):
                prefix = '' if layer == last else f'd{layer}.'
                losses[f'{prefix}dn_loss_{kind}'] = value * dn_meta['loss_weight']
        return losses
