"""Tiny detectors with and without ``aux_head``: ours (DeformDETR) and mmdet's
Deformable DETR and DINO."""
from deform_ext.testing import tiny_deformable_detr_cfg, tiny_mmdet_detr_cfg

BACKBONE_CHANNELS = 16  # the tiny ResNet-18's base width: layer1 16, layer2 32 channels


def aux_head(levels=(4, 8, 16, 32, 64), **kwargs) -> dict:
    """EncoderAuxHeads on ``levels``; the stride-4 level (when asked) from the tiny
    ResNet's ``layer1`` (the tiny models' memory has strides 8-64)."""
    extra = [dict(stride=4, source='backbone.layer1', in_channels=BACKBONE_CHANNELS)]
    return dict(type='EncoderAuxHeads', levels=levels,
                extra_levels=extra if 4 in levels else [], **kwargs)


def tiny_ours(variant='deformable-detr', **aux) -> dict:
    """Our tiny DeformDETR without dropout (runs compare numbers), ``aux_head`` from
    ``aux`` (keyword arguments of :func:`aux_head`) when given."""
    cfg = tiny_deformable_detr_cfg(variant, dropout=0.0,
                                   backbone_channels=BACKBONE_CHANNELS)
    if aux:
        cfg['aux_head'] = aux_head(**aux)
    return cfg


def tiny_mmdet(name: str) -> dict:
    """mmdet's ``name`` ('DeformableDETR' or 'DINO') at test size (strides 8-64)."""
    return tiny_mmdet_detr_cfg(name, backbone_channels=BACKBONE_CHANNELS)
