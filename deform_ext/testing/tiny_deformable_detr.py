"""Deformable DETR at test size, shrunk from a shipped synthetic config."""
from .configs import get_config

SHIPPED = 'deformable_detr/{variant}_r18-tiny_*_synthetic.py'


def tiny_deformable_detr_cfg(variant: str = 'deformable-detr', *, embed_dims: int = 32,
                             num_heads: int = 4, encoder_layers: int = 2,
                             decoder_layers: int = 2, num_queries: int = 12,
                             num_classes: int = 4, backbone_channels: int = 16,
                             dropout: float = 0.1) -> dict:
    """The model config of ``configs/deformable_detr/<variant>_r18-tiny_*_synthetic.py``
    (``variant``: ``'deformable-detr'``, ``'deformable-detr-refine'``,
    ``'deformable-detr-refine-twostage'``, ``'deformable-detr-singlescale'``, ...) at test
    size, as a plain dict for :func:`~deform_ext.testing.build_model`.

    Shrunk: ``embed_dims`` and ``num_heads`` everywhere, FFNs of ``2 * embed_dims``,
    GroupNorm of 8 groups in the neck, the layer counts, ``num_queries`` (and at most as
    many detections), ``num_classes``, a ResNet-18 of ``backbone_channels`` base width;
    ``dropout`` in the FFNs and the decoder's self-attention (tests draw the same masks
    on both sides of a comparison), channels-last off. The config's ``num_feature_levels``
    is kept but laid out as in mmdet's COCO recipe: C5, C4-C5 or C3-C5 and extra levels
    from the neck (the shipped stride-4 level would quadruple the encoder tokens).
    Everything else (detector, head, attention type and points, variant flags, losses,
    matcher) is the config's.
    """
    model = get_config(SHIPPED.format(variant=variant)).model.to_dict()
    num_levels = model['num_feature_levels']
    out_indices = tuple(range(max(1, 4 - num_levels), 4))
    model.update(num_queries=num_queries, channels_last=False)
    model['backbone'].update(base_channels=backbone_channels, stem_channels=backbone_channels,
                             out_indices=out_indices)
    model['neck'].update(  # ResNet-18's stage i has base width * 2**i channels
        in_channels=[backbone_channels * 2**i for i in out_indices], out_channels=embed_dims,
        norm_cfg=dict(type='GN', num_groups=8))
    width = dict(embed_dims=embed_dims, num_heads=num_heads)
    ffn = dict(embed_dims=embed_dims, feedforward_channels=2 * embed_dims, ffn_drop=dropout)
    encoder, decoder = model['encoder'], model['decoder']
    encoder['num_layers'] = encoder_layers
    encoder['layer_cfg']['self_attn_cfg'].update(width)
    encoder['layer_cfg']['ffn_cfg'].update(ffn)
    decoder['num_layers'] = decoder_layers
    decoder['layer_cfg']['self_attn_cfg'].update(width, dropout=dropout)
    decoder['layer_cfg']['cross_attn_cfg'].update(width)
    decoder['layer_cfg']['ffn_cfg'].update(ffn)
    model['positional_encoding']['num_feats'] = embed_dims // 2
    model['bbox_head'].update(num_classes=num_classes, embed_dims=embed_dims)
    model['test_cfg']['max_per_img'] = num_queries
    return model
