"""Every config under configs/ and projects/ loads and builds; every detector config
runs one tiny forward/backward (pretrained weights nulled: nothing downloads here)."""
import math
import os.path as osp

import pytest
import torch
from mmdet.models.data_preprocessors import BatchFixedSizePad
from mmengine.config import Config
from mmengine.logging import MessageHub

from deform_ext.testing import build_model, demo_batch, shipped_configs, without_init_cfg
from deform_ext.utils import check_top_level_keys
from tests.conftest import REPO_ROOT

CONFIGS = shipped_configs()


def test_there_are_configs():
    assert CONFIGS


def demo_side(model) -> int:
    """The side of the padded demo batch: 128, or more for a two-stage DETR, which
    picks its ``num_queries`` among the encoder's tokens (mmdet's DINO with
    ``torch.topk``, which needs that many): ``side**2 / 64`` tokens at stride 8 alone."""
    if not getattr(model, 'as_two_stage', False):
        return 128
    return max(128, 8 * math.ceil(math.sqrt(model.num_queries)))


def shrink_fixed_size_pad(model, side: int) -> None:
    """Pad the batch to ``side`` x ``side`` where the config pads to a fixed size
    (Mask2Former's large-scale jitter: 1024 x 1024, two minutes and 10 GB a step here)."""
    for augment in model.data_preprocessor.batch_augments or []:
        if isinstance(augment, BatchFixedSizePad):
            augment.size = (side, side)


def with_untrained_teacher(model_cfg: dict, directory) -> dict:
    """A distilled detector's config with ``teacher_ckpt`` replaced by a checkpoint of
    its teacher config's model as built (its own checkpoint is trained by the user)."""
    if 'teacher_ckpt' not in model_cfg:
        return model_cfg
    teacher_cfg = Config.fromfile(osp.join(REPO_ROOT, model_cfg['teacher_cfg']))
    teacher = build_model(without_init_cfg(teacher_cfg.model.to_dict()),
                          scope=teacher_cfg.get('default_scope', 'mmdet'))
    checkpoint = osp.join(directory, 'teacher.pth')
    torch.save(dict(state_dict=teacher.state_dict()), checkpoint)
    return dict(model_cfg, teacher_ckpt=checkpoint,
                teacher_cfg=osp.join(REPO_ROOT, model_cfg['teacher_cfg']))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, REPO_ROOT))
def test_config_builds_and_trains_one_step(path, tmp_path):
    cfg = Config.fromfile(path)
    check_top_level_keys(cfg, source=path)
    for key in ('train_dataloader', 'val_dataloader', 'optim_wrapper', 'train_cfg'):
        assert key in cfg, f'{path} has no {key}'
    # built and initialised as the Runner does (init_cfg with pretrained weights removed)
    model_cfg = with_untrained_teacher(without_init_cfg(cfg.model.to_dict()), tmp_path)
    model = build_model(model_cfg, scope=cfg.get('default_scope', 'mmdet')).train()
    MessageHub.get_current_instance().update_info('iter', 0)  # read by YOLOX batch resize
    side = demo_side(model)
    shrink_fixed_size_pad(model, side)
    # masks too where the model has a mask head (demo_batch's default)
    data = demo_batch(model, image_shapes=((3, side - 32, side), (3, side, side - 32)),
                      num_items=(3, 2))
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)  # some heads return per-level lists
    assert torch.isfinite(total)
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
