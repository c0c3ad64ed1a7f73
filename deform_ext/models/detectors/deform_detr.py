"""``DeformDETR``: the Deformable DETR family on deform_ext's attention.

One detector for the four variants of the paper, chosen as in mmdet:

- single-scale: ``num_feature_levels=1`` (one backbone level, ``num_levels=1`` in
  the attention configs);
- multi-scale: ``num_feature_levels=4`` (default);
- iterative box refinement: ``with_box_refine=True``;
- two-stage: ``as_two_stage=True`` (encoder proposals, top-k, no NMS).
  The proposals come from :func:`~deform_ext.models.layers.encoder_tokens`, the
  same code as :class:`~deform_ext.models.dense_heads.EncoderRPNHead`'s.

It subclasses mmdet's ``DeformableDETR`` and keeps its
``pre_transformer → forward_encoder → pre_decoder → forward_decoder`` hooks, so with
the same weights it computes the same numbers. Differences:

- the encoder/decoder are :class:`DeformableEncoder` / :class:`DeformableDecoder`
  on :class:`MSDeformAttn` (selectable with ``type`` in ``encoder``/``decoder`` and
  the attention configs), with gradient checkpointing by ``encoder.num_cp``;
- two-stage on an image with fewer tokens than ``num_queries`` (e.g. 32×32)
  decodes every token instead of failing in ``torch.topk``;
- the two-stage proposal position embedding has ``embed_dims // 2`` features per
  box coordinate (mmdet 3.3 hard-codes 128, which only fits ``embed_dims=256``);
- ``offset_loss`` (e.g. ``dict(type='OffsetL1Loss', loss_weight=1e-4)``) adds a
  regularisation loss on the sampling offsets of every deformable attention;
- ``channels_last=True`` runs backbone and neck in the channels-last memory format
  (oneDNN's fast convolution layout on CPUs; unmeasured on GPUs). Same
  parameters and numbers up to rounding; off by default;
- ``aux_head`` (e.g. ``dict(type='EncoderAuxHeads', levels=(4, 8), ...)``) adds
  training-only dense heads on the encoder memory (:mod:`.aux_detr`); off by default;
- ``hybrid_matching`` (two-stage, e.g. ``dict(num_queries=150, gt_repeats=5)``) adds
  a training-only one-to-many query group (H-DETR,
  :mod:`~deform_ext.models.layers.hybrid_matching`); off by default;
- ``denoising`` (two-stage, e.g. ``dict(num_dn_queries=100)``) adds DINO's
  training-only contrastive denoising queries
  (:mod:`~deform_ext.models.layers.denoising`); off by default.
"""
import math
from typing import Dict, List, Optional, Tuple, Union

import torch
from mmdet.models.detectors import DeformableDETR
from mmdet.models.layers import SinePositionalEncoding
from mmdet.structures import SampleList
from torch import Tensor, nn

from deform_ext.registry import MODELS, build_in_scope
from ..layers.deformable_detr_layers import DeformableDecoder, DeformableEncoder
from ..layers.denoising import Denoising, DenoisingQueries
from ..layers.encoder_proposals import encoder_tokens, top_k_tokens
from ..layers.hybrid_matching import HybridMatching, group_self_attn_mask
from ..layers.ms_deform_attn import MSDeformAttn
from .aux_detr import EncoderAuxMixin

DENOISING_PREFIX = 'dn_queries.'  # the state-dict keys of the denoising label embedding


@MODELS.register_module()
class DeformDETR(EncoderAuxMixin, DeformableDETR):
    """Deformable DETR (single/multi-scale, box refinement, two-stage).

    Args:
        *args, **kwargs: as mmdet's ``DeformableDETR`` (backbone, neck, encoder,
            decoder, bbox_head, positional_encoding, num_queries,
            num_feature_levels, with_box_refine, as_two_stage, train_cfg,
            test_cfg, data_preprocessor, init_cfg) and ``aux_head`` (see
            :class:`~.aux_detr.EncoderAuxMixin`).
        offset_loss (dict, optional): a loss over the sampling offsets, shape
            (bs, num_queries, num_heads, num_levels, num_points, 2) per attention
            module, added to the losses as ``loss_offset``. None: no such loss.
        channels_last (bool): images (bs, 3, H, W) and the 4-d weights of
            backbone and neck in ``torch.channels_last`` memory format. Default False.
        hybrid_matching (dict, optional): two-stage only; the training-only
            one-to-many query group, ``dict(num_queries, gt_repeats, loss_weight)``
            (:class:`~deform_ext.models.layers.hybrid_matching.HybridMatching`).
            None: off.
        denoising (dict, optional): two-stage only; DINO's training-only contrastive
            denoising queries, ``dict(num_dn_queries, label_noise_scale,
            box_noise_scale, loss_weight)``
            (:class:`~deform_ext.models.layers.denoising.Denoising`); not with
            ``hybrid_matching``. None: off.

    Shapes: images (bs, 3, H, W) in; per image up to ``test_cfg.max_per_img``
    boxes out; internally queries are (bs, num_queries, embed_dims).
    """

    def __init__(self, *args, offset_loss: Optional[dict] = None,
                 channels_last: bool = False, hybrid_matching: Optional[dict] = None,
                 denoising: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.hybrid_matching = (HybridMatching.from_config(hybrid_matching)
                                if hybrid_matching is not None else None)
        if self.hybrid_matching is not None and not self.as_two_stage:
            raise ValueError('hybrid_matching needs as_two_stage=True (its queries are '
                             'encoder proposals)')
        self.dn_queries = self._denoising_queries(denoising) if denoising is not None else None
        self.offset_loss = (build_in_scope(MODELS, offset_loss)
                            if offset_loss is not None else None)
        self.channels_last = channels_last
        if channels_last:
            # the same Parameter objects get channels-last data; initialisers and
            # load_state_dict write into it and keep its strides
            self.backbone.to(memory_format=torch.channels_last)
            if self.with_neck:
                self.neck.to(memory_format=torch.channels_last)

    def _denoising_queries(self, denoising: dict) -> DenoisingQueries:
        if not self.as_two_stage:
            raise ValueError('denoising needs as_two_stage=True (its queries are built as '
                             "the encoder proposals' are)")
        if self.hybrid_matching is not None:
            raise ValueError('denoising and hybrid_matching together are not supported: '
                             'choose one training-only query group')
        return DenoisingQueries(Denoising.from_config(denoising),
                                num_classes=self.bbox_head.num_classes,
                                embed_dims=self.embed_dims)

    def extract_feat(self, batch_inputs: Tensor):
        """Multi-level features of images (bs, 3, H, W), as mmdet's; the images go
        in as channels-last when ``channels_last`` is set."""
        if self.channels_last:
            batch_inputs = batch_inputs.contiguous(memory_format=torch.channels_last)
        return super().extract_feat(batch_inputs)

    def _init_layers(self) -> None:
        """Positional encoding, encoder, decoder, queries and level embeddings."""
        self.positional_encoding = SinePositionalEncoding(**self.positional_encoding)
        self.encoder = build_in_scope(MODELS, self.encoder, default_type=DeformableEncoder)
        self.decoder = build_in_scope(MODELS, self.decoder, default_type=DeformableDecoder)
        self.embed_dims = self.encoder.embed_dims
        if not self.as_two_stage:
            # split into query_pos and query in pre_decoder
            self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims * 2)
        num_feats = self.positional_encoding.num_feats
        if num_feats * 2 != self.embed_dims:
            raise ValueError(f'positional_encoding.num_feats ({num_feats}) must be half of '
                             f'embed_dims ({self.embed_dims})')
        self.level_embed = nn.Parameter(torch.Tensor(self.num_feature_levels, self.embed_dims))
        if self.as_two_stage:
            self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
            self.memory_trans_norm = nn.LayerNorm(self.embed_dims)
            self.pos_trans_fc = nn.Linear(self.embed_dims * 2, self.embed_dims * 2)
            self.pos_trans_norm = nn.LayerNorm(self.embed_dims * 2)
        else:
            self.reference_points_fc = nn.Linear(self.embed_dims, 2)

    def forward_transformer(self, img_feats: Tuple[Tensor],
                            batch_data_samples: Optional[SampleList] = None) -> Dict:
        """mmdet's transformer pass (encoder, queries, decoder) → the head's inputs,
        with the batch also reaching ``pre_decoder`` (denoising queries are made from
        its ground truth)."""
        encoder_inputs, decoder_inputs = self.pre_transformer(img_feats, batch_data_samples)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        queries, head_inputs = self.pre_decoder(**encoder_outputs,
                                                batch_data_samples=batch_data_samples)
        decoder_inputs.update(queries)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        return head_inputs

    def pre_decoder(self, memory: Tensor, memory_mask: Optional[Tensor],
                    spatial_shapes: Tensor,
                    batch_data_samples: Optional[SampleList] = None) -> Tuple[Dict, Dict]:
        """Decoder queries from the encoder memory (bs, n, dim), as mmdet's; two-stage
        takes the top ``min(num_queries, n)`` encoder proposals (see
        :mod:`~deform_ext.models.layers.encoder_proposals`). With ``hybrid_matching``
        while training, the one-to-many group's proposals follow (the queries are
        (bs, num_queries + hybrid num_queries, dim) at most), with the decoder's
        ``self_attn_mask`` between the groups and the head's ``hybrid`` settings.
        With ``denoising`` while training, the denoising queries of
        ``batch_data_samples``' ground truth come first, with their mask and the
        head's ``dn_meta``."""
        if not self.as_two_stage:
            return super().pre_decoder(memory, memory_mask, spatial_shapes)
        layer = self.decoder.num_layers  # the head's extra branch pair scores proposals
        tokens = encoder_tokens(memory, memory_mask, spatial_shapes, self.memory_trans_fc,
                                self.memory_trans_norm, self.bbox_head.cls_branches[layer],
                                self.bbox_head.reg_branches[layer])
        scores = tokens.class_logits[..., 0]
        top = top_k_tokens(scores, self.num_queries)
        hybrid = self.hybrid_matching if self.training else None
        if hybrid is not None:
            one_to_many = top_k_tokens(scores, hybrid.num_queries)
            self_attn_mask = group_self_attn_mask(top.shape[1], one_to_many.shape[1],
                                                  memory.device)
            hybrid_inputs = dict(num_one_to_one=top.shape[1], gt_repeats=hybrid.gt_repeats,
                                 loss_weight=hybrid.loss_weight)
            top = torch.cat([top, one_to_many], 1)
        coords_unact = torch.gather(tokens.coords_unact, 1,
                                    top.unsqueeze(-1).expand(-1, -1, 4)).detach()
        pos_trans_out = self.pos_trans_norm(
            self.pos_trans_fc(self.get_proposal_pos_embed(coords_unact)))
        query_pos, query = torch.split(pos_trans_out, memory.shape[-1], dim=2)
        decoder_inputs_dict = dict(query=query, query_pos=query_pos, memory=memory,
                                   reference_points=coords_unact.sigmoid())
        head_inputs_dict = dict(enc_outputs_class=tokens.class_logits,
                                enc_outputs_coord=tokens.coords_unact.sigmoid()
                                ) if self.training else dict()
        if hybrid is not None:
            decoder_inputs_dict['self_attn_mask'] = self_attn_mask
            head_inputs_dict['hybrid'] = hybrid_inputs
        if self.dn_queries is not None and self.training:
            head_inputs_dict['dn_meta'] = self._prepend_denoising_queries(
                decoder_inputs_dict, batch_data_samples)
        return decoder_inputs_dict, head_inputs_dict

    def _prepend_denoising_queries(self, decoder_inputs: Dict,
                                   batch_data_samples: SampleList) -> Dict:
        """Puts the n denoising queries in front of the m in ``decoder_inputs``
        (``query``, ``query_pos`` (bs, n + m, dim), ``reference_points`` (bs, n + m, 4))
        and sets its ``self_attn_mask`` (n + m, n + m); returns the head's ``dn_meta``.
        Position embeddings come from the noised boxes as the proposals' do; contents
        are the noised labels' embeddings."""
        labels, boxes, mask, dn_meta = self.dn_queries(batch_data_samples,
                                                       decoder_inputs['query'].shape[1])
        pos_trans_out = self.pos_trans_norm(self.pos_trans_fc(self.get_proposal_pos_embed(boxes)))
        query_pos = pos_trans_out[..., :self.embed_dims]
        for key, denoising in (('query', labels), ('query_pos', query_pos),
                               ('reference_points', boxes.sigmoid())):
            decoder_inputs[key] = torch.cat([denoising, decoder_inputs[key]], 1)
        decoder_inputs['self_attn_mask'] = mask
        return dn_meta

    def forward_decoder(self, query: Tensor, query_pos: Tensor, memory: Tensor,
                        memory_mask: Optional[Tensor], reference_points: Tensor,
                        spatial_shapes: Tensor, level_start_index: Tensor,
                        valid_ratios: Tensor, self_attn_mask: Optional[Tensor] = None) -> Dict:
        """mmdet's decoder pass, queries (bs, num_queries, dim) →  hidden states
        (num_layers, bs, num_queries, dim) and references, with an optional boolean
        ``self_attn_mask`` (num_queries, num_queries), True where a query may not
        attend (hybrid matching's groups)."""
        inter_states, inter_references = self.decoder(
            query=query, value=memory, query_pos=query_pos,
            key_padding_mask=memory_mask, self_attn_mask=self_attn_mask,
            reference_points=reference_points, spatial_shapes=spatial_shapes,
            level_start_index=level_start_index, valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches if self.with_box_refine else None)
        return dict(hidden_states=inter_states,
                    references=[reference_points, *inter_references])

    def deform_attn_modules(self) -> List[MSDeformAttn]:
        """The deformable attention modules of encoder and decoder."""
        return [m for m in self.modules() if isinstance(m, MSDeformAttn)]

    def get_proposal_pos_embed(self, proposals: Tensor, num_pos_feats: Optional[int] = None,
                               temperature: int = 10000) -> Tensor:
        """Sine embedding of proposals (bs, num_queries, 4), not yet sigmoid-ed, to
        (bs, num_queries, 4 * num_pos_feats) = (bs, num_queries, 2 * embed_dims).

        ``num_pos_feats`` defaults to ``embed_dims // 2`` (128 at 256 dims, as mmdet),
        so ``pos_trans_fc`` fits at any width.
        """
        if num_pos_feats is None:
            num_pos_feats = self.embed_dims // 2
        scale = 2 * math.pi
        dim_t = torch.arange(num_pos_feats, dtype=torch.float32, device=proposals.device)
        dim_t = temperature**(2 * (dim_t // 2) / num_pos_feats)
        pos = proposals.sigmoid()[:, :, :, None] * scale / dim_t  # (bs, n, 4, feats)
        return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=4).flatten(2)

    def loss(self, batch_inputs: Tensor,
             batch_data_samples: SampleList) -> Union[dict, list]:
        """Losses of a batch; ``loss_offset`` too when ``offset_loss`` is set."""
        if self.offset_loss is None:
            return super().loss(batch_inputs, batch_data_samples)
        modules = self.deform_attn_modules()
        for m in modules:
            m.recorded_offsets = []
            m.record_offsets = True
        try:
            losses = super().loss(batch_inputs, batch_data_samples)
            offsets = [o for m in modules for o in m.recorded_offsets]
        finally:
            for m in modules:
                m.record_offsets = False
                m.recorded_offsets = []
        losses['loss_offset'] = self.offset_loss(offsets)
        return losses

    def num_sampling_points(self) -> Dict[str, int]:
        """Sampling points of each deformable attention, by module name."""
        return {name: m.num_points for name, m in self.named_modules()
                if isinstance(m, MSDeformAttn)}
