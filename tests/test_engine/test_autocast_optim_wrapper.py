"""AutocastOptimWrapper: mixed precision on CPU (bf16, fp16 with loss scaling), built
from a config, and a DeformDETR training step under it with our op in bfloat16."""
import pytest
import torch
from mmengine.optim import build_optim_wrapper

import deform_ext.models.layers.ms_deform_attn as ms_deform_attn_module
from deform_ext.engine.optim_wrappers import AutocastOptimWrapper
from deform_ext.testing import build_model, demo_batch, tiny_deformable_detr_cfg


def wrapper_for(model, **kwargs):
    cfg = dict(type='AutocastOptimWrapper', optimizer=dict(type='SGD', lr=0.1), **kwargs)
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('deform_ext'):
        return build_optim_wrapper(model, cfg)


@pytest.mark.parametrize('dtype,name', [(torch.bfloat16, 'bfloat16'), (torch.float16, 'fp16')])
def test_forward_runs_in_the_configured_dtype_and_updates(dtype, name):
    torch.manual_seed(0)
    model = torch.nn.Linear(8, 4)
    wrapper = wrapper_for(model, dtype=name, clip_grad=dict(max_norm=1.0))
    assert isinstance(wrapper, AutocastOptimWrapper)
    assert wrapper.cast_dtype == dtype and wrapper.device_type == 'cpu'
    before = model.weight.detach().clone()
    with wrapper.optim_context(model):
        out = model(torch.randn(16, 8))
    assert out.dtype == dtype
    wrapper.update_params(out.float().pow(2).mean())
    assert not torch.equal(model.weight, before)
    state = wrapper.state_dict()
    assert ('loss_scaler' in state) == (dtype == torch.float16)
    other = wrapper_for(torch.nn.Linear(8, 4), dtype=name)
    other.load_state_dict(state)
    if dtype == torch.float16:
        assert other.loss_scaler.get_scale() == wrapper.loss_scaler.get_scale()


def test_default_dtype_is_bfloat16_on_cpu_and_bad_dtype_is_refused():
    model = torch.nn.Linear(2, 2)
    if not torch.cuda.is_available():
        assert wrapper_for(model).cast_dtype == torch.bfloat16
    with pytest.raises(ValueError):
        wrapper_for(model, dtype='int8')


def test_deform_detr_trains_under_bfloat16_autocast(monkeypatch):
    value_dtypes = []
    original = ms_deform_attn_module.ms_deform_attn
    monkeypatch.setattr(ms_deform_attn_module, 'ms_deform_attn',
                        lambda *a: value_dtypes.append(a[0].dtype) or original(*a))
    model = build_model(tiny_deformable_detr_cfg('deformable-detr-refine', encoder_layers=1,
                                                 decoder_layers=1))
    wrapper = wrapper_for(model, dtype='bfloat16')
    data = demo_batch(model, dtype=torch.float32)
    before = model.encoder.layers[0].self_attn.value_proj.weight.detach().clone()
    log = model.train_step(dict(inputs=data['inputs'], data_samples=data['data_samples']),
                           wrapper)
    assert torch.isfinite(log['loss'])
    assert value_dtypes == [torch.bfloat16, torch.bfloat16]
    assert model.encoder.layers[0].self_attn.value_proj.weight.dtype == torch.float32
    assert not torch.equal(model.encoder.layers[0].self_attn.value_proj.weight, before)
