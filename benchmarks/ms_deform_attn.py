"""Benchmark of multi-scale deformable attention: deform_ext's op against its
pure-PyTorch reference and mmcv's op (where importable).

    python benchmarks/ms_deform_attn.py [--device cpu|cuda] [--dtype float32 ...]
                                        [--repeats N] [--threads T]

Shapes: 8 heads x 32 channels x 4 points. CPU: batch 1, levels (64, 64), (32, 32),
(16, 16), (8, 8); all 5,440 tokens as queries (encoder) and 300 queries (decoder).
CUDA: levels (100, 167), (50, 84), (25, 42), (13, 21); encoder with batch 2 and 8,
decoder with 300 and 900 queries (batch 2). Sampling locations come in two kinds:
`realistic` (each query's reference point on the level grids plus Gaussian offsets
of 2 px) and `uniform` over [0, 1]. Times are medians over the repeats after a
warm-up; memory is the peak of what the call allocates on top of its inputs
(CUDA: torch.cuda.max_memory_allocated; CPU: the profiler's allocation events).
mmcv's column is its CUDA op on CUDA and, on CPU, its pure-PyTorch
multi_scale_deformable_attn_pytorch (about the reference).
"""
import argparse

import torch

from bench_utils import median_ms, peak_mib
from deform_ext.ops import _extension, ms_deform_attn, ms_deform_attn_reference

HEADS, DIMS, POINTS = 8, 32, 4
CPU_LEVELS = ((64, 64), (32, 32), (16, 16), (8, 8))
GPU_LEVELS = ((100, 167), (50, 84), (25, 42), (13, 21))
CPU_CASES = [('encoder', 1, None), ('decoder 300', 1, 300)]  # (name, batch, queries)
GPU_CASES = [('encoder N=2', 2, None), ('decoder 300 N=2', 2, 300),
             ('decoder 900 N=2', 2, 900), ('encoder N=8', 8, None)]


def make_inputs(bs, levels, num_queries, kind, dtype, device, seed=0):
    """(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
    value in ``dtype``, locations and weights in float32 (float64 for float64)."""
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor(levels, dtype=torch.int64)
    sizes = shapes[:, 0] * shapes[:, 1]
    starts = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    num_keys, num_levels = int(sizes.sum()), len(levels)
    num_queries = num_queries or num_keys
    value = torch.randn(bs, num_keys, HEADS, DIMS, generator=gen)
    loc_shape = (bs, num_queries, HEADS, num_levels, POINTS, 2)
    if kind == 'uniform':
        loc = torch.rand(loc_shape, generator=gen)
    else:  # reference point: a token centre; offsets: 2 px std on each level
        grids = [torch.stack(torch.meshgrid((torch.arange(w) + 0.5) / w,
                                            (torch.arange(h) + 0.5) / h, indexing='xy'), -1)
                 for h, w in levels]
        ref = torch.cat([g.reshape(-1, 2) for g in grids])
        if num_queries != num_keys:
            ref = ref[torch.randint(num_keys, (num_queries,), generator=gen)]
        px = shapes.flip(1).float()  # (num_levels, 2) as (w, h)
        offsets = 2.0 * torch.randn(loc_shape, generator=gen) / px[:, None, :]
        loc = ref[None, :, None, None, None, :] + offsets
    weights = torch.randn(bs, num_queries, HEADS, num_levels * POINTS, generator=gen)
    weights = weights.softmax(-1).view(bs, num_queries, HEADS, num_levels, POINTS)
    loc_dtype = torch.float64 if dtype == torch.float64 else torch.float32
    return (value.to(device, dtype), shapes.to(device), starts.to(device),
            loc.to(device, loc_dtype), weights.to(device, loc_dtype))


def implementations(device):
    """[(name, fn)] with fn taking ms_deform_attn's arguments; mmcv's where importable."""
    impls = [('ours', ms_deform_attn), ('reference', ms_deform_attn_reference)]
    try:
        if device == 'cuda':
            from mmcv.ops import MultiScaleDeformableAttnFunction

            def mmcv_fn(value, shapes, starts, loc, weights):
                return MultiScaleDeformableAttnFunction.apply(
                    value, shapes, starts, loc.to(value.dtype), weights.to(value.dtype), 64)
        else:
            from mmcv.ops.multi_scale_deform_attn import multi_scale_deformable_attn_pytorch

            def mmcv_fn(value, shapes, starts, loc, weights):
                return multi_scale_deformable_attn_pytorch(
                    value, shapes, loc.to(value.dtype), weights.to(value.dtype))
        impls.append(('mmcv', mmcv_fn))
    except ImportError:
        pass
    return impls


def make_call(fn, inputs, backward):
    """A no-argument callable running fn forward, or forward + backward."""
    if not backward:
        return lambda: fn(*inputs)
    leaves = [t.detach().requires_grad_() if t.is_floating_point() else t for t in inputs]
    diff = [leaves[0], leaves[3], leaves[4]]
    grad_out = torch.randn(fn(*inputs).shape, device=inputs[0].device).to(inputs[0].dtype)
    return lambda: torch.autograd.grad(fn(*leaves), diff, grad_out)


def measure(impls, inputs, backward, args):
    """[(median ms, peak MiB)] of the implementations, None for one that can't run."""
    calls = {}
    for name, fn in impls:
        try:
            calls[name] = make_call(fn, inputs, backward)
            calls[name]()
        except (RuntimeError, ValueError, NotImplementedError) as error:
            print(f'<!-- {name} skipped: {str(error).splitlines()[0][:150]} -->')
    times = dict(zip(calls, median_ms(list(calls.values()), args.repeats, args.warmup,
                                      args.device)))
    results = []
    for name, _ in impls:
        if name not in calls:
            results.append(None)
            continue
        try:
            mib = peak_mib(calls[name], args.device)
        except (ImportError, AttributeError, RuntimeError):
            mib = None
        results.append((times[name], mib))
    return results


def fmt(x, spec):
    return 'n/a' if x is None else format(x, spec)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu',
                        choices=['cpu', 'cuda'])
    parser.add_argument('--dtype', nargs='+', choices=['float32', 'float64', 'float16',
                                                       'bfloat16'],
                        help='value dtypes (default: float32 on CPU; fp32, fp16, bf16 on CUDA)')
    parser.add_argument('--repeats', type=int, help='timed runs (default 5 CPU, 20 CUDA)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs first')
    parser.add_argument('--threads', type=int, help='CPU threads (default: torch\'s)')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gpu = args.device == 'cuda'
    args.repeats = args.repeats or (20 if gpu else 5)
    dtypes = args.dtype or (['float32', 'float16', 'bfloat16'] if gpu else ['float32'])
    impls = implementations(args.device)
    names = [name for name, _ in impls]
    print(f'ms_deform_attn on {args.device} '
          f'({torch.cuda.get_device_name() if gpu else f"{torch.get_num_threads()} threads"}), '
          f'torch {torch.__version__}, compiled extension: {_extension.EXTENSION_AVAILABLE}, '
          f'median of {args.repeats} after {args.warmup} warm-up runs\n')
    print('| case | dtype | locations | pass | ' + ' | '.join(f'{n} ms' for n in names)
          + ' | ' + ' | '.join(f'{n}/ours' for n in names[1:]) + ' | '
          + ' | '.join(f'{n} peak MiB' for n in names) + ' | max abs diff vs reference |')
    print('|' + '---|' * (4 + 3 * len(names)))
    for case, bs, num_queries in (GPU_CASES if gpu else CPU_CASES):
        levels = GPU_LEVELS if gpu else CPU_LEVELS
        for dtype_name in dtypes:
            dtype = getattr(torch, dtype_name)
            for kind in ('realistic', 'uniform'):
                inputs = make_inputs(bs, levels, num_queries, kind, dtype, args.device)
                with torch.no_grad():
                    diff = (ms_deform_attn(*inputs).double()
                            - ms_deform_attn_reference(*inputs).double()).abs().max().item()
                for backward in (False, True):
                    results = measure(impls, inputs, backward, args)
                    ours = results[0][0] if results[0] else None
                    cells = [fmt(r and r[0], '.2f') for r in results]
                    cells += [fmt(r[0] / ours if r and ours else None, '.1f') + 'x'
                              for r in results[1:]]
                    cells += [fmt(r and r[1], '.1f') for r in results]
                    cells.append(f'{diff:.1e}' if not backward else '')
                    print(f'| {case} | {dtype_name} | {kind} | '
                          f'{"fwd+bwd" if backward else "fwd"} | ' + ' | '.join(cells) + ' |',
                          flush=True)


if __name__ == '__main__':
    main()
