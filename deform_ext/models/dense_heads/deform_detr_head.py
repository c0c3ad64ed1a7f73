"""``DeformDETRHead``: the Deformable DETR head for :class:`DeformDETR`.

mmdet's ``DeformableDETRHead`` (classification and box branches per decoder layer,
shared unless box refinement; an extra pair for the two-stage encoder proposals;
Hungarian matching; focal, L1 and GIoU losses), registered in deform_ext's scope so
our detectors' configs name their own head. It adds a check that the head width
matches the detector's ``embed_dims``, which mmdet reports only as a shape error
deep in a forward.
"""
from mmdet.models.dense_heads import DeformableDETRHead

from deform_ext.registry import MODELS


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
