"""mmdet's own DETR-family configs (Deformable DETR, DINO, DDQ-DETR) at test size."""
import os.path as osp

from mmengine.config import Config

from .configs import without_init_cfg

MMDET_DETR_CONFIGS = {  # relative to mmdet's bundled configs
    'DeformableDETR': 'deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
    'DINO': 'dino/dino-4scale_r50_8xb2-12e_coco.py',
    'DDQDETR': 'ddq/ddq-detr-4scale_r50_8xb2-12e_coco.py',
}


def mmdet_config_path(relative: str) -> str:
    """A config bundled with mmdet (``mmdet/.mim/configs/<relative>``)."""
    import mmdet
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', relative)


def tiny_mmdet_detr_cfg(name: str, backbone_channels: int = 16) -> dict:
    """The model config of mmdet's ``name`` (a key of ``MMDET_DETR_CONFIGS``) at test
    size, as a plain dict without ``init_cfg``: a ResNet-18 of ``backbone_channels``
    base width (C3-C5 and one more level: strides 8-64), one encoder and two decoder
    layers, FFNs of 64, 20 queries (10 denoising), 4 classes. The width stays 256:
    DINO's and DDQ's query embeddings hard-code 128 features per coordinate."""
    cfg = without_init_cfg(
        Config.fromfile(mmdet_config_path(MMDET_DETR_CONFIGS[name])).model.to_dict())
    cfg['backbone'] = dict(type='ResNet', depth=18, base_channels=backbone_channels,
                           stem_channels=backbone_channels, num_stages=4,
                           out_indices=(1, 2, 3), norm_eval=False)
    cfg['neck']['in_channels'] = [backbone_channels * 2**i for i in (1, 2, 3)]
    cfg['encoder']['num_layers'] = 1
    cfg['decoder']['num_layers'] = 2
    for layer in ('encoder', 'decoder'):
        cfg[layer]['layer_cfg']['ffn_cfg']['feedforward_channels'] = 64
    cfg['num_queries'] = 20
    cfg['bbox_head']['num_classes'] = 4
    if 'dn_cfg' in cfg:
        cfg['dn_cfg']['group_cfg']['num_dn_queries'] = 10
    cfg['test_cfg']['max_per_img'] = 20
    return cfg
