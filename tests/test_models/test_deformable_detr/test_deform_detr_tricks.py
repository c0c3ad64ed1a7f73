"""Training tricks of DeformDETR: offset L1 regularisation, gradient checkpointing
of encoder layers and channels-last convolutions (the offset range limit is tested
on the module)."""
import torch
from torch.profiler import profile

from deform_ext.testing import build_model, demo_batch, tiny_deformable_detr_cfg, total_loss


def offset_params(model):
    return [p for n, p in model.named_parameters() if 'sampling_offsets' in n]


def test_offset_loss_is_logged_weighted_and_shrinks_offsets():
    base = tiny_deformable_detr_cfg(encoder_layers=1, decoder_layers=1)
    plain = build_model(base).double().train()
    cfg = dict(base, offset_loss=dict(type='OffsetL1Loss', loss_weight=0.5))
    model = build_model(cfg).double().train()
    model.load_state_dict(plain.state_dict())
    data = demo_batch(model)
    torch.manual_seed(1)
    expected = plain(**data, mode='loss')
    torch.manual_seed(1)
    losses = model(**data, mode='loss')
    assert set(losses) == set(expected) | {'loss_offset'}
    for key in expected:  # recording the offsets changes nothing else
        torch.testing.assert_close(losses[key], expected[key], rtol=0, atol=0)
    # loss_offset = weight * mean |offset| over both attention calls.
    offsets = []
    original = model.offset_loss.forward
    model.offset_loss.forward = lambda recorded: offsets.extend(recorded) or original(recorded)
    torch.manual_seed(1)
    model(**data, mode='loss')
    del model.offset_loss.forward
    assert len(offsets) == 2
    assert offsets[0].shape == (2, offsets[0].shape[1], 4, 4, 4, 2)
    mean = sum(o.abs().sum() for o in offsets) / sum(o.numel() for o in offsets)
    torch.testing.assert_close(losses['loss_offset'], 0.5 * mean)
    assert all(not m.recorded_offsets for m in model.deform_attn_modules())  # nothing kept
    # Its gradient pulls the offsets in.
    optimizer = torch.optim.SGD(offset_params(model), lr=0.5)
    before = losses['loss_offset'].item()
    for _ in range(3):
        optimizer.zero_grad()
        model(**data, mode='loss')['loss_offset'].backward()
        optimizer.step()
    assert model(**data, mode='loss')['loss_offset'].item() < 0.97 * before


def peak_cpu_memory(model, data):
    """Peak bytes allocated by one forward + backward, from the profiler's memory
    events (allocations and frees, in time order)."""
    with profile(profile_memory=True) as prof:
        total_loss(model(**data, mode='loss')).backward()
    events = sorted((e.time_range.start, e.self_cpu_memory_usage) for e in prof.events())
    current = peak = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


def test_encoder_gradient_checkpointing_same_gradients_less_memory():
    cfg = dict(tiny_deformable_detr_cfg(encoder_layers=2, decoder_layers=1, embed_dims=64),
               offset_loss=dict(type='OffsetL1Loss', loss_weight=0.1))
    plain = build_model(cfg).train()
    cfg['encoder']['num_cp'] = 2
    checkpointed = build_model(cfg).train()
    checkpointed.load_state_dict(plain.state_dict())

    data = demo_batch(plain, dtype=torch.float64)
    grads = []
    for model in (plain, checkpointed):
        model.double()
        torch.manual_seed(1)  # checkpointing replays the same dropout masks
        total_loss(model(**data, mode='loss')).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()
                      if p.grad is not None})
        model.zero_grad()
    assert grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[1][name], grads[0][name], rtol=1e-10, atol=1e-12)

    data = demo_batch(plain, image_shapes=((3, 192, 192), (3, 192, 192)), dtype=torch.float32)
    peaks = []
    for model in (plain, checkpointed):
        model.float()
        torch.manual_seed(1)
        peaks.append(peak_cpu_memory(model, data))
    print(f'peak CPU memory, forward+backward: {peaks[0] / 2**20:.1f} MiB plain, '
          f'{peaks[1] / 2**20:.1f} MiB with 2 encoder layers checkpointed')
    assert peaks[1] < 0.85 * peaks[0]


def test_channels_last_same_losses_gradients_and_checkpoints():
    cfg = tiny_deformable_detr_cfg(encoder_layers=1, decoder_layers=1)
    plain = build_model(cfg).train()
    fast = build_model(dict(cfg, channels_last=True)).train()
    fast.load_state_dict(plain.state_dict())
    channels_last = torch.channels_last
    for module in (fast.backbone, fast.neck):
        convs = [p for p in module.parameters() if p.dim() == 4]
        assert convs and all(p.is_contiguous(memory_format=channels_last) for p in convs)

    data = demo_batch(plain, dtype=torch.float32)
    results = []
    for model in (plain, fast):
        torch.manual_seed(1)
        losses = model(**data, mode='loss')
        total_loss(losses).backward()
        results.append((losses, {n: p.grad for n, p in model.named_parameters()
                                 if p.grad is not None}))
    (losses, grads), (fast_losses, fast_grads) = results
    for key in losses:  # the same numbers up to float32 rounding of the convolutions
        torch.testing.assert_close(fast_losses[key], losses[key], rtol=1e-4, atol=1e-6)
    assert grads.keys() == fast_grads.keys()
    for name in grads:
        torch.testing.assert_close(fast_grads[name], grads[name], rtol=1e-3, atol=1e-5)
    # Its checkpoints load into a model without the option, and back.
    plain.load_state_dict(fast.state_dict())
    fast.load_state_dict(plain.state_dict())
    assert fast.backbone.conv1.weight.is_contiguous(memory_format=channels_last)
