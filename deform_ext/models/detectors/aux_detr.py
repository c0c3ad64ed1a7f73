"""Training-only auxiliary dense heads for DETR-family detectors with a multi-scale
encoder memory: :class:`EncoderAuxMixin`, and mmdet's Deformable DETR and DINO with it.

The detector's config gets one key::

    model = dict(type='DINOWithAux',  # or 'DeformableDETRWithAux', or our 'DeformDETR'
                 ...,                 # the detector's own keys, unchanged
                 aux_head=dict(type='EncoderAuxHeads', levels=(8, 16, 32, 64)))

In ``loss`` the detector's own losses are computed as before (DINO's denoising
included) while forward hooks keep the encoder's output ``memory`` (bs,
sum(H_l * W_l), C) with its ``spatial_shapes`` and the outputs of the backbone stages
named by the extra levels (:func:`.captured_outputs.captured_outputs`, hooks that
exist during ``loss`` only); then
:class:`~deform_ext.models.dense_heads.EncoderAuxHeads` adds ``loss_aux_*``. With
``aux_head.positive_queries`` the heads' positive anchors also run through the decoder
as extra queries with known targets (Co-DETR's customised positive queries,
``loss_pq_*``; Deformable DETR only: DINO's decoder makes its query positions itself).
``predict`` and ``_forward`` never run the heads: inference costs what the detector
without ``aux_head`` costs. The heads' weights sit under
``aux_head.``; ``tools/model_converters/strip_aux_heads.py`` removes them from a
checkpoint for the config without the key.
"""
import inspect
from typing import List, Optional

from mmdet.models.detectors import DINO, DeformableDETR
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.structures import SampleList
from torch import Tensor

from deform_ext.registry import MODELS, build_in_scope
from ..layers.ms_deform_attn import offsets_unrecorded
from ..layers.positive_queries import ImagePositives, positive_query_losses
from .captured_outputs import Call, captured_outputs

AUX_PREFIX = 'aux_head.'  # the state-dict keys of the auxiliary heads


class EncoderAuxMixin:
    """Adds ``aux_head`` (an EncoderAuxHeads config, or None: off) to a subclass of
    mmdet's ``DeformableDETR``; put it before that class among the bases."""

    def __init__(self, *args, aux_head: Optional[dict] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if aux_head is None:
            self.aux_head = None
            return
        self.aux_head = build_in_scope(MODELS, aux_head, default_args=dict(
            embed_dims=self.embed_dims, num_classes=self.bbox_head.num_classes))
        self._source_modules()  # a missing module is an error at build time
        if (self.aux_head.positive_queries is not None
                and 'query_pos' not in inspect.signature(self.forward_decoder).parameters):
            raise ValueError(f'aux_head.positive_queries: {type(self).__name__} makes its '
                             'decoder query positions itself (as DINO does); positive '
                             "queries need Deformable DETR's forward_decoder(query, "
                             'query_pos, ...)')

    def _source_modules(self) -> dict:
        """{stride: the backbone stage of that extra level}."""
        modules = {}
        for stride, source in self.aux_head.sources.items():
            try:
                modules[stride] = self.get_submodule(source)
            except AttributeError as error:
                raise ValueError(f'aux_head extra level of stride {stride}: the detector '
                                 f'has no module {source!r} ({error})') from None
        return modules

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> dict:
        """The detector's losses plus the auxiliary heads' ``loss_aux_*``."""
        if self.aux_head is None:
            return super().loss(batch_inputs, batch_data_samples)
        # the encoder's memory (bs, sum(H_l * W_l), C) and spatial_shapes (num_levels, 2),
        # and each extra level's stage output (bs, C_s, H_s, W_s), as the loss computes them
        sources = self._source_modules()
        with captured_outputs({'encoder': self.encoder, **sources}) as calls:
            losses = super().loss(batch_inputs, batch_data_samples)
        encoder = calls['encoder']
        aux_losses, positives = self.aux_head.loss(
            encoder.output, encoder.kwargs['spatial_shapes'],
            {stride: calls[stride].output for stride in sources}, batch_data_samples)
        for index, head_positives in enumerate(positives):
            aux_losses.update(self._positive_query_losses(
                index, head_positives, encoder, batch_data_samples))
        clash = sorted(set(aux_losses) & set(losses))
        if clash:
            raise KeyError(f'the detector already has losses {clash}')
        losses.update(aux_losses)
        return losses

    def _positive_query_losses(self, head_index: int, positives: List[ImagePositives],
                               encoder: Call, batch_data_samples: SampleList) -> dict:
        """Auxiliary head ``head_index``'s positive anchors as decoder queries (bs, P,
        C) on the encoder's memory, and their losses (``loss_pq_*``, ``loss_pq<i>_*``
        for head i of several; :mod:`~deform_ext.models.layers.positive_queries`)."""
        queries = self.aux_head.positive_queries
        batch = queries.batch(positives, batch_data_samples)
        embedding = self.get_proposal_pos_embed(inverse_sigmoid(batch.anchors),
                                                num_pos_feats=self.embed_dims // 2)
        query, query_pos = queries.queries(head_index, embedding)
        kwargs = encoder.kwargs
        with offsets_unrecorded(self):  # the offset loss is the detector's own queries'
            decoded = self.forward_decoder(
                query=query, query_pos=query_pos, memory=encoder.output,
                memory_mask=kwargs['key_padding_mask'], reference_points=batch.anchors,
                spatial_shapes=kwargs['spatial_shapes'],
                level_start_index=kwargs['level_start_index'],
                valid_ratios=kwargs['valid_ratios'])
        # forward, not __call__: hooks on the head (distillation reads the detector's
        # own queries from its last call) never see these queries
        scores, boxes = self.bbox_head.forward(decoded['hidden_states'], decoded['references'])
        tag = 'pq' if len(self.aux_head.heads) == 1 else f'pq{head_index}'
        return positive_query_losses(self.bbox_head, scores, boxes, batch, tag,
                                     queries.loss_weight)


@MODELS.register_module()
class DeformableDETRWithAux(EncoderAuxMixin, DeformableDETR):
    """mmdet's DeformableDETR with ``aux_head`` (see the module docstring)."""


@MODELS.register_module()
class DINOWithAux(EncoderAuxMixin, DINO):
    """mmdet's DINO with ``aux_head`` (see the module docstring); the denoising
    queries and their losses are DINO's, unchanged."""
