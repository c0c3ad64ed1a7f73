"""Contrastive denoising queries (DINO, Zhang et al. 2023) for the two-stage Deformable
DETR: training-only decoder queries made from noised ground truth.

While training, every ground-truth box of an image becomes decoder queries in groups of
two: a positive copy (each corner moved by less than ``box_noise_scale / 2`` of the
box's size, the label replaced by a random class with probability
``label_noise_scale / 2``) whose target is the box and its class, and a negative copy
(moved by between one and two times that) whose target is "no object". Their targets
are known, so no Hungarian matching: from the first iteration every decoder layer is
taught to pull a box onto its object and to reject a near miss, the lesson that
matching teaches slowly and noisily early in training (DN-DETR's and DINO's remedy for
DETR's slow convergence). Groups are repeated up to ``num_dn_queries`` queries per
image. They go through the decoder in front of the matching queries in the same pass;
a self-attention mask keeps the groups from seeing each other and the matching queries
from seeing any of them, so the matching queries compute what they would alone.

Each query is built as the two-stage model builds its proposals' queries: its position
embedding from the (noised) box through the detector's ``pos_trans_fc``; its content
is the embedding of its (noised) label, the only new weights
(``dn_queries.label_embedding``, (num_classes, embed_dims)). Losses: the head's
classification, L1 and GIoU losses on every decoder layer, times ``loss_weight``,
logged as ``dn_loss_*`` and ``d<i>.dn_loss_*``.

Noise, grouping, mask and targets are mmdet's DINO (``CdnQueryGenerator``, the
denoising targets of ``DINOHead``), used unchanged.
"""
from typing import NamedTuple, Tuple

from mmdet.models.layers.transformer import CdnQueryGenerator
from mmdet.structures import SampleList
from torch import Tensor


class Denoising(NamedTuple):
    """The denoising queries' settings.

    num_dn_queries: at most this many denoising queries per image (two per ground-truth
        box and group; at least one group).
    label_noise_scale: twice the fraction of labels drawn again at random.
    box_noise_scale: the corner noise, as a fraction of the box's width and height (x2).
    loss_weight: the denoising losses' weight.
    """
    num_dn_queries: int = 100
    label_noise_scale: float = 0.5
    box_noise_scale: float = 1.0
    loss_weight: float = 1.0

    @classmethod
    def from_config(cls, config: dict) -> 'Denoising':
        """From ``dict(num_dn_queries=..., ...)``; a key that is not a field, fewer
        than 2 queries, a noise scale outside (0, 2] or a negative weight is an error."""
        unknown = sorted(set(config) - set(cls._fields))
        if unknown:
            raise KeyError(f'denoising: unknown keys {unknown}; it takes {cls._fields}')
        settings = cls(**config)
        if (settings.num_dn_queries < 2 or settings.loss_weight < 0
                or not 0 < settings.label_noise_scale <= 2
                or not 0 < settings.box_noise_scale <= 2):
            raise ValueError('denoising needs num_dn_queries >= 2, noise scales in (0, 2] '
                             f'and loss_weight >= 0, got {config}')
        return settings


class DenoisingQueries(CdnQueryGenerator):
    """mmdet's contrastive denoising query generator, told per call how many matching
    queries follow (the two-stage model decodes fewer than ``num_queries`` on images
    with fewer tokens)."""

    def __init__(self, settings: Denoising, num_classes: int, embed_dims: int) -> None:
        super().__init__(num_classes=num_classes, embed_dims=embed_dims,
                         num_matching_queries=0,
                         label_noise_scale=settings.label_noise_scale,
                         box_noise_scale=settings.box_noise_scale,
                         group_cfg=dict(dynamic=True, num_dn_queries=settings.num_dn_queries))
        self.loss_weight = settings.loss_weight

    def __call__(self, batch_data_samples: SampleList,
                 num_matching_queries: int) -> Tuple[Tensor, Tensor, Tensor, dict]:
        """Denoising queries for a batch with ``num_matching_queries`` matching queries.

        Returns: label queries (bs, n, embed_dims); noised boxes (bs, n, 4), normalised
        (cx, cy, w, h) before the sigmoid; the boolean self-attention mask (n + m, n + m),
        True where a query may not attend, the n denoising queries first; and ``dn_meta``
        (``num_denoising_queries`` = n, ``num_denoising_groups``, ``loss_weight``) for
        the head. n = 2 x groups x the batch's largest box count (0 without boxes).
        """
        self.num_matching_queries = num_matching_queries  # generate_dn_mask reads it
        labels, boxes, mask, dn_meta = super().__call__(batch_data_samples)
        return labels, boxes, mask, dict(dn_meta, loss_weight=self.loss_weight)
