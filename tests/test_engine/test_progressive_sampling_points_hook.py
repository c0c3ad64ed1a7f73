"""ProgressiveSamplingPointsHook: at a milestone the output is unchanged, the new
points are in the optimizer, get gradients and move away from the old ones; a resume
across a milestone restores the right number of points."""
import os.path as osp
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import OptimWrapper
from mmengine.runner.checkpoint import _load_checkpoint

from deform_ext.engine.hooks import ProgressiveSamplingPointsHook
from deform_ext.testing import build_model, demo_batch, tiny_deformable_detr_cfg, total_loss
from tests.conftest import DEMO_CONFIG, tiny_training_options


def attention_points(model):
    return sorted({m.num_points for m in model.deform_attn_modules()})


def fake_runner(model, optimizer, epoch=0):
    return SimpleNamespace(model=model, optim_wrapper=OptimWrapper(optimizer), epoch=epoch,
                           logger=MMLogger.get_current_instance())


def train_steps(model, optimizer, data, steps):
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        torch.manual_seed(0)
        total_loss(model(**data, mode='loss')).backward()
        optimizer.step()


def outputs(model, data):
    model.eval()
    with torch.no_grad():
        return model(**data, mode='tensor')


def test_milestones_must_grow_by_whole_factors():
    with pytest.raises(ValueError):
        ProgressiveSamplingPointsHook(milestones={2: 8, 4: 12})
    hook = ProgressiveSamplingPointsHook(milestones={4: 8, 8: 16})
    assert [hook.target(e) for e in (0, 3, 4, 7, 8, 20)] == [None, None, 8, 8, 16, 16]


def test_switch_keeps_output_then_new_points_train_and_move():
    model = build_model(tiny_deformable_detr_cfg('deformable-detr-refine', encoder_layers=1,
                                                 decoder_layers=1))
    params = dict(model.named_parameters())
    offsets = [p for n, p in params.items() if 'sampling_offsets' in n]
    others = [p for n, p in params.items() if 'sampling_offsets' not in n]
    optimizer = torch.optim.AdamW([dict(params=others), dict(params=offsets, lr=1e-3)],
                                  lr=1e-3)
    data = demo_batch(model, dtype=torch.float32)
    train_steps(model, optimizer, data, 2)  # Adam state exists before the switch

    hook = ProgressiveSamplingPointsHook(milestones={1: 8, 2: 16})
    hook.before_train_epoch(fake_runner(model, optimizer, epoch=0))
    assert attention_points(model) == [4]
    before = outputs(model, data)
    hook.before_train_epoch(fake_runner(model, optimizer, epoch=1))
    assert attention_points(model) == [8]
    after = outputs(model, data)
    for a, b in zip(before, after):
        assert (a - b).abs().max() <= 1e-6 * max(1.0, a.abs().max())

    # The grown parameters are the optimizer's own objects, with grown state.
    attn = model.deform_attn_modules()[0]
    weight = attn.sampling_offsets.weight
    assert any(weight is p for group in optimizer.param_groups for p in group['params'])
    assert optimizer.param_groups[1]['lr'] == 1e-3  # its group (lr multiplier) kept
    state = optimizer.state[weight]
    assert state['exp_avg'].shape == weight.shape == state['exp_avg_sq'].shape
    assert state['exp_avg'].view(4, 4, 8, 2, -1)[:, :, 4:].abs().sum() == 0

    # The copies get gradients and drift away from the points they were copied from.
    start = attn.sampling_offsets.bias.detach().view(4, 4, 8, 2).clone()
    assert torch.equal(start[:, :, 4:], start[:, :, :4])
    model.train()
    optimizer.zero_grad()
    torch.manual_seed(0)
    total_loss(model(**data, mode='loss')).backward()
    assert weight.grad.view(4, 4, 8, 2, -1)[:, :, 4:].abs().sum() > 0
    assert attn.attention_weights.weight.grad.view(4, 4, 8, -1)[:, :, 4:].abs().sum() > 0
    train_steps(model, optimizer, data, 5)
    bias = attn.sampling_offsets.bias.detach().view(4, 4, 8, 2)
    drift = (bias[:, :, 4:] - bias[:, :, :4]).abs()
    assert drift.max() > 1e-3

    hook.before_train_epoch(fake_runner(model, optimizer, epoch=2))
    assert attention_points(model) == [16]
    train_steps(model, optimizer, data, 1)


@pytest.mark.slow
def test_resume_across_a_switch(tiny_coco, tmp_path):
    from mmengine.runner import Runner
    import deform_ext  # noqa: F401

    def config(work_dir, max_epochs, resume_from=None):
        cfg = Config.fromfile(DEMO_CONFIG)
        options = {}
        for option in tiny_training_options(tiny_coco, max_epochs=max_epochs):
            key, value = option.split('=', 1)
            options[key] = value
        cfg.merge_from_dict(dict(
            (k, eval(v) if v[:1].isdigit() or v in ('True', 'False') else v)
            for k, v in options.items()))
        cfg.merge_from_dict({'model.num_queries': 10, 'model.test_cfg.max_per_img': 10,
                             'train_dataloader.batch_size': 8,
                             'train_cfg.val_interval': 100,
                             'default_hooks.visualization.draw': False})
        cfg.custom_hooks = [dict(type='ProgressiveSamplingPointsHook', milestones={1: 8})]
        cfg.work_dir = str(work_dir)
        cfg.log_level = 'WARNING'
        if resume_from:
            cfg.resume, cfg.load_from = True, resume_from
        return cfg

    first = tmp_path / 'first'
    runner = Runner.from_cfg(config(first, max_epochs=2))
    runner.train()
    assert attention_points(runner.model) == [8]
    saved = _load_checkpoint(osp.join(first, 'epoch_2.pth'), map_location='cpu')
    key = 'encoder.layers.0.self_attn.attention_weights.bias'
    attn = runner.model.encoder.layers[0].self_attn
    assert saved['state_dict'][key].shape[0] == attn.num_heads * attn.num_levels * 8

    for checkpoint, points_at_load, epochs in (('epoch_1.pth', 4, 2), ('epoch_2.pth', 8, 3)):
        runner = Runner.from_cfg(config(tmp_path / checkpoint, max_epochs=epochs,
                                        resume_from=osp.join(first, checkpoint)))
        loaded = []
        original = runner.load_or_resume

        def load_and_record():
            original()
            loaded.append(attention_points(runner.model))

        runner.load_or_resume = load_and_record
        runner.train()
        assert loaded == [[points_at_load]]
        assert attention_points(runner.model) == [8]
        weight = runner.model.encoder.layers[0].self_attn.sampling_offsets.weight
        state = runner.optim_wrapper.optimizer.state[weight]
        assert state['exp_avg'].shape == weight.shape
