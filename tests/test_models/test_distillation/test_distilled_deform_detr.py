"""DistilledDeformDETR with a tiny DETR teacher (one level, softmax) and a tiny
two-stage Deformable DETR student (four levels, sigmoid): the teacher stays out of
parameters and checkpoints, every loss trains the student and only the student, and
bad teacher checkpoints are named."""
import copy

import pytest
import torch
from mmengine.config import Config

from deform_ext.models.distillation.teacher import preprocessor_conversion
from deform_ext.testing import (build_model, demo_batch, get_config, mmdet_config_path,
                                tiny_mmdet_detr_cfg, without_init_cfg)
from deform_ext.testing.tiny_deformable_detr import tiny_deformable_detr_cfg

NUM_CLASSES = 4
ALL_LOSSES = dict(match=dict(), extra_targets=dict(score_thr=0.0), feature=dict(stride=32),
                  memory=dict())


def tiny_detr_cfg(embed_dims: int = 32, num_queries: int = 8) -> dict:
    """mmdet's DETR of configs/deformable_detr/detr_r18-tiny_*.py at test size."""
    model = get_config('deformable_detr/detr_r18-tiny_1xb8-120e_synthetic.py').model.to_dict()
    model['backbone'].update(base_channels=16, stem_channels=16)
    model['neck'].update(in_channels=[128], out_channels=embed_dims)
    attention = dict(embed_dims=embed_dims, num_heads=4)
    ffn = dict(embed_dims=embed_dims, feedforward_channels=2 * embed_dims)
    encoder, decoder = model['encoder']['layer_cfg'], model['decoder']['layer_cfg']
    encoder['self_attn_cfg'].update(attention)
    encoder['ffn_cfg'].update(ffn)
    decoder['self_attn_cfg'].update(attention)
    decoder['cross_attn_cfg'].update(attention)
    decoder['ffn_cfg'].update(ffn)
    model['positional_encoding']['num_feats'] = embed_dims // 2
    model['bbox_head'].update(num_classes=NUM_CLASSES, embed_dims=embed_dims)
    model.update(num_queries=num_queries)
    return model


@pytest.fixture(scope='module')
def teacher_ckpt(tmp_path_factory):
    teacher = build_model(tiny_detr_cfg(), seed=1)
    path = tmp_path_factory.mktemp('teacher') / 'detr.pth'
    torch.save(dict(meta=dict(), state_dict=teacher.state_dict()), path)
    return str(path)


def student_cfg() -> dict:
    return tiny_deformable_detr_cfg('deformable-detr-refine-twostage', num_classes=NUM_CLASSES)


def distilled_cfg(teacher_ckpt, distill=ALL_LOSSES, teacher_cfg=None) -> dict:
    return dict(student_cfg(), type='DistilledDeformDETR',
                teacher_cfg=teacher_cfg or tiny_detr_cfg(), teacher_ckpt=teacher_ckpt,
                distill=copy.deepcopy(distill))


def test_teacher_is_outside_parameters_and_checkpoints(teacher_ckpt, tmp_path):
    model = build_model(distilled_cfg(teacher_ckpt))
    plain = build_model(student_cfg())
    teacher_params = {id(p) for p in model.teacher.parameters()}
    assert teacher_params and not teacher_params & {id(p) for p in model.parameters()}
    state = model.state_dict()
    assert list(state) == list(plain.state_dict())
    result = plain.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    torch.save(state, tmp_path / 'distilled.pth')
    torch.save(plain.state_dict(), tmp_path / 'plain.pth')
    size = (tmp_path / 'distilled.pth').stat().st_size
    assert size <= 1.05 * (tmp_path / 'plain.pth').stat().st_size
    model.train()
    assert model.training and not model.teacher.training


@pytest.mark.parametrize('distill', [
    dict(match=dict()), dict(extra_targets=dict(score_thr=0.0)), dict(feature=dict()),
    dict(memory=dict()), ALL_LOSSES], ids=['match', 'extra_targets', 'feature', 'memory', 'all'])
def test_each_loss_trains_every_student_parameter_and_no_teacher_one(teacher_ckpt, distill):
    model = build_model(distilled_cfg(teacher_ckpt, distill)).train()
    batch = demo_batch(model)
    losses = model.loss(batch['inputs'], batch['data_samples'])
    names = {'match': ('loss_distill_cls', 'loss_distill_l1', 'loss_distill_giou'),
             'extra_targets': ('loss_teacher_cls', 'loss_teacher_bbox', 'loss_teacher_iou'),
             'feature': ('loss_distill_feat',), 'memory': ('loss_distill_memory',)}
    for key, expected in names.items():
        assert all((name in losses) == (key in distill) for name in expected), list(losses)
    distill_total = sum(v for k, v in losses.items()
                        if k.startswith(('loss_distill', 'loss_teacher')))
    assert torch.isfinite(distill_total) and distill_total > 0
    total, _ = model.parse_losses(losses)
    total.backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not without_grad  # DDP without find_unused_parameters
    assert all(p.grad is None for p in model.teacher.parameters())


def test_distillation_gradients_move_the_student_toward_the_teacher(teacher_ckpt):
    """A few steps on the distillation losses alone lower them."""
    model = build_model(distilled_cfg(teacher_ckpt, dict(match=dict(), feature=dict()))).train()
    batch = demo_batch(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def distillation_loss():
        losses = model.loss(batch['inputs'], batch['data_samples'])
        return sum(v for k, v in losses.items() if k.startswith('loss_distill'))
    first = distillation_loss()
    for _ in range(10):
        optimizer.zero_grad()
        distillation_loss().backward()
        optimizer.step()
    assert distillation_loss() < 0.8 * first.detach()


def test_teacher_gets_its_own_preprocessing(teacher_ckpt):
    """Student BGR->RGB with ImageNet mean/std; a teacher without either sees its own."""
    teacher_cfg = tiny_detr_cfg()
    teacher_cfg['data_preprocessor'].update(bgr_to_rgb=False, mean=[0, 0, 0], std=[1, 1, 1])
    model = build_model(distilled_cfg(teacher_ckpt, teacher_cfg=teacher_cfg))
    raw = torch.rand(2, 3, 32, 32) * 255  # BGR, as mmcv reads files
    student_input = (raw.flip(1) - model.data_preprocessor.mean) / model.data_preprocessor.std
    scale, shift, flip = preprocessor_conversion(model, model.teacher)
    converted = (student_input.flip(1) if flip else student_input) * scale + shift
    torch.testing.assert_close(converted, raw, atol=1e-3, rtol=1e-5)


def test_bad_teacher_checkpoints_are_named(teacher_ckpt, tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        build_model(distilled_cfg(str(tmp_path / 'missing.pth')))
    state = torch.load(teacher_ckpt, weights_only=True)['state_dict']
    state.pop('query_embedding.weight')
    state['bbox_head.fc_cls.weight'] = torch.zeros(3, 32)
    state['extra.weight'] = torch.zeros(1)
    bad = tmp_path / 'bad.pth'
    torch.save(dict(state_dict=state), bad)
    with pytest.raises(ValueError, match=r'bad\.pth does not fit the teacher config \(DETR\): '
                       r"1 missing keys \(first: \['query_embedding.weight'\]\); 1 unexpected "
                       r"keys \(first: \['extra.weight'\]\); 1 shape mismatches \(first: "
                       r"\['bbox_head.fc_cls.weight \(3, 32\) vs model \(5, 32\)'\]\)"):
        build_model(distilled_cfg(str(bad)))


def tiny_single_scale_teacher(relative: str) -> dict:
    """A one-level mmdet DETR variant (Conditional / DAB-DETR) at test size, 256-d."""
    cfg = without_init_cfg(Config.fromfile(mmdet_config_path(relative)).model.to_dict())
    cfg['backbone'] = dict(type='ResNet', depth=18, base_channels=16, stem_channels=16,
                           num_stages=4, out_indices=(3, ), norm_eval=False)
    cfg['neck']['in_channels'] = [128]
    cfg['encoder']['num_layers'] = 1
    cfg['decoder']['num_layers'] = 2
    for layer in ('encoder', 'decoder'):
        cfg[layer]['layer_cfg']['ffn_cfg']['feedforward_channels'] = 64
    cfg['num_queries'] = 20
    cfg['bbox_head']['num_classes'] = NUM_CLASSES
    return cfg


TEACHERS = {
    'ConditionalDETR': lambda: tiny_single_scale_teacher(
        'conditional_detr/conditional-detr_r50_8xb2-50e_coco.py'),
    'DABDETR': lambda: tiny_single_scale_teacher('dab_detr/dab-detr_r50_8xb2-50e_coco.py'),
    'DeformableDETR': lambda: tiny_mmdet_detr_cfg('DeformableDETR'),
    'DINO': lambda: tiny_mmdet_detr_cfg('DINO'),
}


@pytest.mark.parametrize('name', list(TEACHERS))
def test_every_detr_family_teacher_distils(name, tmp_path):
    """mmdet's other DETR variants as teachers (sigmoid heads, 1 or 4 levels)."""
    teacher_cfg = TEACHERS[name]()
    teacher = build_model(teacher_cfg, seed=1, scope='mmdet')
    checkpoint = tmp_path / 'teacher.pth'
    torch.save(dict(state_dict=teacher.state_dict()), checkpoint)
    model = build_model(distilled_cfg(str(checkpoint), teacher_cfg=teacher_cfg)).train()
    assert type(model.teacher).__name__ == name
    batch = demo_batch(model)
    losses = model.loss(batch['inputs'], batch['data_samples'])
    distilled = {k: v for k, v in losses.items() if k.startswith(('loss_distill', 'loss_teacher'))}
    assert len(distilled) == 8 and all(torch.isfinite(v) for v in distilled.values())
    model.parse_losses(losses)[0].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
