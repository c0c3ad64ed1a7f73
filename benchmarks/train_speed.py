"""Training speed of deform_ext's Deformable DETR against mmdet's, same config.

Both models are built from one config (mmdet's twin: ``DeformableDETR`` /
``DeformableDETRHead`` with mmcv's ``MultiScaleDeformableAttention``), get the same
weights, and run the same training steps (forward, backward, AdamW) on the same
random batch, alternating, in one process. Prints iterations/s, peak memory and the
ratios (convention 11: absolute numbers are noise on a shared machine).

    python benchmarks/train_speed.py [--config CFG] [--batch 2] [--size 256 256]
                                     [--iters 10] [--warmup 2] [--device cpu|cuda]
                                     [--amp [bfloat16|float16]]
                                     [--cfg-options model.channels_last=False ...]

Ours runs as the config builds it (e.g. ``channels_last``, which the twin drops);
``--amp`` adds a row for ours under autocast (what ``tools/train.py --amp`` does,
loss scaling aside), against the same mmdet fp32 step: mmengine's AmpOptimWrapper
refuses CPUs, so fp32 is what mmdet trains with there.

Step time: the median over ``--iters`` alternating steps after ``--warmup`` each
(bench_utils.median_ms). Peak memory: bench_utils.peak_mib of one step.

Then the attention core's share: every call of the core function (ours:
``deform_ext.ops.ms_deform_attn``; mmdet: mmcv's ``multi_scale_deformable_attn_pytorch``
on CPU, ``MultiScaleDeformableAttnFunction`` on CUDA) in one step is recorded and
replayed, forward and backward, and the rest of the step is the step time less that.
``T_mmdet / rest_ours`` is the most any attention op can speed this step up.
"""
import argparse
import contextlib
import os.path as osp
import sys
from typing import Optional

import torch
from bench_utils import median_ms, peak_mib
from mmengine.config import DictAction

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)
from deform_ext.testing import (build_model, demo_batch, mmdet_twin,  # noqa: E402
                                total_loss, without_init_cfg)

DEFAULT_CONFIG = osp.join(REPO_ROOT, 'configs', 'deformable_detr',
                          'deformable-detr_r18-tiny_1xb8-24e_synthetic.py')


def build_pair(config: str, device: str, cfg_options: Optional[dict] = None):
    """Ours as the config builds it, and mmdet's twin with the same weights."""
    from deform_ext.utils import check_top_level_keys, load_config
    cfg = load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
        check_top_level_keys(cfg, source='--cfg-options')
    model_cfg = without_init_cfg(cfg.model.to_dict())
    try:
        theirs_cfg = mmdet_twin(model_cfg)
    except ValueError as error:
        raise SystemExit(f'{error}; pick another config')
    ours, theirs = build_model(model_cfg), build_model(theirs_cfg)
    theirs.load_state_dict(ours.state_dict())
    return ours.to(device).train(), theirs.to(device).train()


def make_batch(model, batch: int, size):
    """``batch`` random images of ``size`` (H, W) with 6 boxes each, preprocessed."""
    return demo_batch(model, [(3, *size)] * batch, [6] * batch, seed=1)


def step(model, optimizer, data, amp_dtype=None):
    """One training step; the forward under autocast when ``amp_dtype`` is set."""
    with torch.autocast(data['inputs'].device.type, dtype=amp_dtype,
                        enabled=amp_dtype is not None):
        losses = model(**data, mode='loss')
    optimizer.zero_grad(set_to_none=True)
    total_loss(losses).backward()
    optimizer.step()


@contextlib.contextmanager
def recording(owner, name: str, calls: list):
    """Record the arguments of every call of ``owner.name`` (tensors as detached copies);
    an autograd Function is recorded at its ``apply``."""
    original = getattr(owner, name)
    call = original.apply if isinstance(original, type) else original

    def record(*args):
        calls.append([a.detach().clone() if torch.is_tensor(a) else a for a in args])
        return call(*args)

    replacement = type(name, (), {'apply': staticmethod(record)}) \
        if isinstance(original, type) else record
    setattr(owner, name, replacement)
    try:
        yield call
    finally:
        setattr(owner, name, original)


def core_sites(device: str):
    """(owner, name) of the attention core each side calls, ours first."""
    import mmcv.ops.multi_scale_deform_attn as mmcv_msda
    ours = sys.modules['deform_ext.models.layers.ms_deform_attn']
    theirs = ('MultiScaleDeformableAttnFunction' if device == 'cuda'
              else 'multi_scale_deformable_attn_pytorch')
    return (ours, 'ms_deform_attn'), (mmcv_msda, theirs)


def replay(function, calls):
    """A closure that runs every recorded call forward and backward, with gradients
    for the floating-point inputs (value, sampling locations, attention weights)."""
    leaves = [[a.requires_grad_() if torch.is_tensor(a) and a.is_floating_point() else a
               for a in args] for args in calls]

    def run():
        for args in leaves:
            for a in args:
                if torch.is_tensor(a):
                    a.grad = None
            output = function(*args)
            output.backward(torch.ones_like(output))
    return run


def core_ms(models, optimizers, data, device, repeats):
    """Median fwd+bwd time in ms of each model's attention-core calls in one step."""
    runs = []
    for (owner, name), (key, model) in zip(core_sites(device), models.items()):
        calls = []
        with recording(owner, name, calls) as function:
            step(model, optimizers[key], data)
        runs.append(replay(function, calls))
    return median_ms(runs, repeats, 1, device)


def training_parser(description: str, iters: int) -> argparse.ArgumentParser:
    """The options of the training benchmarks: config, batch, image size, steps, device."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, nargs=2, default=[256, 256])
    parser.add_argument('--iters', type=int, default=iters)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    return parser


def run_line(args) -> str:
    """What ran, for the first line of a training benchmark's output."""
    return (f'config {osp.relpath(args.config, REPO_ROOT)}, batch {args.batch} x '
            f'{args.size[0]}x{args.size[1]}, {args.iters} steps, device {args.device}, '
            f'{torch.get_num_threads()} threads')


def main(argv=None):
    parser = training_parser(__doc__.splitlines()[0], iters=10)
    parser.add_argument('--warmup', type=int, default=2)
    parser.add_argument('--amp', nargs='?', const='bfloat16', choices=['bfloat16', 'float16'],
                        help='also time ours under autocast in this dtype (default bfloat16)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, as tools/train.py')
    args = parser.parse_args(argv)

    ours, theirs = build_pair(args.config, args.device, args.cfg_options)
    data = make_batch(ours, args.batch, args.size)
    models = {'deform_ext (MSDeformAttn)': ours, 'mmdet (mmcv MSDA)': theirs}
    optimizers = {k: torch.optim.AdamW(m.parameters(), lr=1e-4) for k, m in models.items()}
    ours_name, theirs_name = list(models)
    # steps timed, in print order, and the label of each of ours in the ratio rows
    steps = {ours_name: lambda: step(ours, optimizers[ours_name], data)}
    ratio_labels = {ours_name: 'ours'}
    if args.amp:
        amp_name = f'deform_ext {args.amp} autocast'
        steps[amp_name] = lambda: step(ours, optimizers[ours_name], data,
                                       getattr(torch, args.amp))
        ratio_labels[amp_name] = f'ours {args.amp}'
    steps[theirs_name] = lambda: step(theirs, optimizers[theirs_name], data)
    # the median over alternating steps, so that load changes hit both alike
    step_ms = dict(zip(steps, median_ms(list(steps.values()), args.iters, args.warmup,
                                        args.device)))
    peaks = {name: peak_mib(call, args.device) for name, call in steps.items()}

    print(f'{run_line(args)}, ours channels_last={ours.channels_last}'
          + (f', options {args.cfg_options}' if args.cfg_options else ''))
    print(f'{"":28s} {"iter/s":>8s} {"peak MiB":>9s}')
    for name in steps:
        print(f'{name:28s} {1e3 / step_ms[name]:8.3f} {peaks[name]:9.1f}')
    for name, label in ratio_labels.items():
        ratio = f'ratio ({label} / mmdet)'
        print(f'{ratio:28s} {step_ms[theirs_name] / step_ms[name]:8.2f}x '
              f'{peaks[name] / peaks[theirs_name]:8.2f}x')
    cores = dict(zip(models, core_ms(models, optimizers, data, args.device, args.iters)))
    rest = {name: step_ms[name] - cores[name] for name in models}
    print(f'\n{"ms per step":28s} {"step":>8s} {"attn core":>9s} {"rest":>8s}')
    for name in models:
        print(f'{name:28s} {step_ms[name]:8.1f} {cores[name]:9.1f} {rest[name]:8.1f}')
    print(f'attention core: ours {cores[theirs_name] / cores[ours_name]:.2f}x faster; '
          f'step ratio with a free core: {step_ms[theirs_name] / rest[ours_name]:.2f}x at most')


if __name__ == '__main__':
    main()
