"""The encoder's dense distillation losses (memory imitation, per-token proposals) with
a two-stage Deformable DETR teacher of ours: they vanish where the student computes
what the teacher does, train the student's encoder, and refuse what cannot match."""
import pytest
import torch

from deform_ext.models.distillation.encoder_losses import memory_loss
from deform_ext.models.distillation.encoder_outputs import EncoderMemory
from deform_ext.testing import build_model, demo_batch
from deform_ext.testing.tiny_deformable_detr import tiny_deformable_detr_cfg
from test_distilled_deform_detr import NUM_CLASSES, TEACHERS, distilled_cfg, tiny_detr_cfg

ENCODER_LOSSES = dict(memory=dict(), proposals=dict())


def save_model(model, path) -> str:
    torch.save(dict(state_dict=model.state_dict()), path)
    return str(path)


def two_stage_cfg() -> dict:
    """The tiny two-stage student, without dropout (train and eval mode agree)."""
    return tiny_deformable_detr_cfg('deformable-detr-refine-twostage', num_classes=NUM_CLASSES,
                                    dropout=0.0)


def distilled_from_two_stage(tmp_path, teacher_seed: int, distill=ENCODER_LOSSES):
    """A distilled student (built with seed 0) whose teacher is the same two-stage
    model built with ``teacher_seed``."""
    teacher = build_model(two_stage_cfg(), seed=teacher_seed)
    checkpoint = save_model(teacher, tmp_path / f'teacher{teacher_seed}.pth')
    model = dict(two_stage_cfg(), type='DistilledDeformDETR', teacher_cfg=two_stage_cfg(),
                 teacher_ckpt=checkpoint, distill=distill)
    return build_model(model, seed=0).train()


def encoder_losses(model, batch):
    losses = model.loss(batch['inputs'], batch['data_samples'])
    return losses, {k: v for k, v in losses.items() if k.startswith('loss_distill')}


def test_proposal_losses_vanish_when_the_student_is_the_teacher(tmp_path):
    """Token for token, the same weights give the same proposals: KL and L1 are 0
    (the tokens line up, valid ones only); another teacher's are not."""
    model = distilled_from_two_stage(tmp_path, teacher_seed=5, distill=dict(proposals=dict()))
    torch.nn.init.normal_(model.teacher.bbox_head.reg_branches[-1][-1].weight, std=0.1)
    for child in model.children():  # batch norm and dropout as the teacher's
        child.eval()  # (the detector itself stays in training: it computes its losses)
    batch = demo_batch(model)
    _, other = encoder_losses(model, batch)
    model.teacher.load_state_dict(model.state_dict())
    _, same = encoder_losses(model, batch)
    assert set(same) == {'loss_distill_prop_cls', 'loss_distill_prop_l1'}
    for name, value in same.items():
        assert abs(float(value)) < 1e-5, name
        assert float(other[name]) > 1e-3, name


def test_encoder_losses_train_the_student_encoder_only(tmp_path):
    model = distilled_from_two_stage(tmp_path, teacher_seed=3)
    batch = demo_batch(model)
    losses, distilled = encoder_losses(model, batch)
    assert set(distilled) == {'loss_distill_memory', 'loss_distill_prop_cls',
                              'loss_distill_prop_l1'}
    sum(distilled.values()).backward()
    encoder_grads = [p.grad for p in model.encoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in encoder_grads)
    assert any(g.abs().sum() > 0 for g in encoder_grads)
    assert model.distill_losses.memory_adapter.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())
    assert not any(k.startswith('distill_losses.') for k in model.state_dict())


def test_encoder_losses_fall_as_the_student_learns_them(tmp_path):
    model = distilled_from_two_stage(tmp_path, teacher_seed=3)
    batch = demo_batch(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def encoder_loss():
        return sum(encoder_losses(model, batch)[1].values())
    first = float(encoder_loss())
    for _ in range(10):
        optimizer.zero_grad()
        encoder_loss().backward()
        optimizer.step()
    assert float(encoder_loss()) < 0.8 * first


def test_proposals_need_a_two_stage_teacher(tmp_path):
    checkpoint = save_model(build_model(tiny_detr_cfg(), seed=1), tmp_path / 'detr.pth')
    with pytest.raises(ValueError, match=r'the teacher \(DETR\) is not two-stage'):
        build_model(distilled_cfg(checkpoint, dict(proposals=dict())))


def test_memory_imitation_names_a_level_the_student_lacks():
    student = EncoderMemory(torch.zeros(1, 20, 8), torch.tensor([[4, 4], [2, 2]]), None)
    teacher = EncoderMemory(torch.zeros(1, 9, 8), torch.tensor([[3, 3]]), None)
    with pytest.raises(ValueError, match=r'\(h, w\) = \(3, 3\).*\[\(4, 4\), \(2, 2\)\]'):
        memory_loss(torch.nn.Identity(), student, teacher)


def test_memory_imitation_skips_padding():
    """Tokens padded in either memory do not count; a one-level teacher (DETR's C5)
    is compared with the student's level of the same shape."""
    shapes = torch.tensor([[2, 2], [1, 1]])
    student = torch.zeros(1, 5, 4)
    student[0, 3] = 100.0  # a padded token, far off
    padding = torch.tensor([[False, False, False, True, False]])
    teacher = EncoderMemory(torch.ones(1, 4, 4), torch.tensor([[2, 2]]), None)
    loss = memory_loss(torch.nn.Identity(), EncoderMemory(student, shapes, padding), teacher)
    assert float(loss) == pytest.approx(1.0)


def test_proposals_from_an_mmdet_dino_teacher(tmp_path):
    """mmdet's DINO scores its encoder tokens as ours do: its proposals teach ours."""
    teacher_cfg = TEACHERS['DINO']()
    teacher = build_model(teacher_cfg, seed=1, scope='mmdet')
    torch.nn.init.normal_(teacher.bbox_head.reg_branches[-1][-1].weight, std=0.1)  # not 0
    checkpoint = save_model(teacher, tmp_path / 'dino.pth')
    model = build_model(distilled_cfg(checkpoint, ENCODER_LOSSES, teacher_cfg=teacher_cfg)).train()
    losses, distilled = encoder_losses(model, demo_batch(model))
    assert set(distilled) == {'loss_distill_memory', 'loss_distill_prop_cls',
                              'loss_distill_prop_l1'}
    assert all(torch.isfinite(v) and v > 0 for v in distilled.values())
