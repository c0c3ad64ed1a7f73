"""Helpers that tests and benchmarks share, as ``mmdet.testing`` does for mmdet: the
shipped configs shrunk to test size, the same model on mmdet's own classes, demo
batches, seeded builds and weight init without a log line per parameter."""
from .configs import config_path, get_config, shipped_configs, without_init_cfg
from .inputs import demo_batch, num_classes_of
from .models import build_model, mmdet_twin, total_loss
from .quiet_init import init_weights_quietly
from .tiny_deformable_detr import tiny_deformable_detr_cfg
from .tiny_mmdet_detr import MMDET_DETR_CONFIGS, mmdet_config_path, tiny_mmdet_detr_cfg

__all__ = [
    'MMDET_DETR_CONFIGS', 'build_model', 'config_path', 'demo_batch', 'get_config', 'init_weights_quietly',
    'mmdet_config_path', 'mmdet_twin', 'num_classes_of', 'shipped_configs', 'tiny_deformable_detr_cfg',
    'tiny_mmdet_detr_cfg', 'total_loss', 'without_init_cfg'
]
