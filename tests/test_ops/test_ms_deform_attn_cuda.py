"""The CUDA kernels of ms_deform_attn against the CPU kernel and the reference.

Skipped without a CUDA device or without the CUDA kernels in deform_ext.ops._C.
Runs under pytest, or without it as ``python tests/test_ops/test_ms_deform_attn_cuda.py``
(a minimal runner below, for machines without pytest).

Tolerances: float64 against the CPU kernel and the reference 1e-10; float32 against the
float64 reference 1e-5 (outputs) and 1e-4 (gradients); float16 / bfloat16: the error
against the float64 reference (on the same rounded inputs) is at most twice the error
of the reference implementation run natively in that dtype (grid_sample in half
precision, as mmcv's pytorch path does), plus one unit of the dtype's rounding.
"""
import contextlib
import os
import sys

import torch
import torch.nn.functional as F

try:
    import pytest
except ImportError:  # the runner at the bottom stands in
    pytest = None

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..')))
from deform_ext.ops import _extension, ms_deform_attn, ms_deform_attn_reference  # noqa: E402

CUDA_OK = torch.cuda.is_available()
KERNEL_OK = CUDA_OK and _extension.has_kernel('ms_deform_attn', 'cuda')
if not CUDA_OK:
    SKIP_REASON = 'CUDA is not available (no GPU or a CPU-only torch): CUDA kernel tests skipped'
elif not KERNEL_OK:
    SKIP_REASON = ('deform_ext.ops._C has no CUDA kernel: build it with FORCE_CUDA=1 '
                   'python setup.py build_ext --inplace')
else:
    SKIP_REASON = ''

ENCODER_LEVELS = ((100, 167), (50, 84), (25, 42), (13, 21))


# ---------------------------------------------------------------------------------------
# A minimal stand-in for pytest's marks when pytest is absent
# ---------------------------------------------------------------------------------------
class _Mark:
    @staticmethod
    def parametrize(names, values):
        def wrap(fn):
            fn.__dict__.setdefault('_params', []).insert(0, (names, values))
            return fn
        return wrap

    @staticmethod
    def skipif(cond, reason=''):
        def wrap(fn):
            return fn
        return wrap


mark = pytest.mark if pytest else _Mark()
if pytest:
    pytestmark = pytest.mark.skipif(not KERNEL_OK, reason=SKIP_REASON or 'unused')


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------
def make_inputs(bs=2, shapes=((6, 5), (3, 3)), num_heads=2, head_dims=8, num_queries=7,
                num_points=3, dtype=torch.float64, loc_dtype=None, loc_range=(-0.1, 1.1),
                device='cuda', seed=0, requires_grad=False):
    """(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)."""
    gen = torch.Generator().manual_seed(seed)
    loc_dtype = loc_dtype or dtype
    spatial_shapes = torch.tensor(shapes, dtype=torch.int64).reshape(-1, 2)
    sizes = spatial_shapes[:, 0] * spatial_shapes[:, 1]
    level_start_index = torch.cat([sizes.new_zeros(1), sizes.cumsum(0)[:-1]])
    num_levels, num_keys = len(shapes), int(sizes.sum())
    value = torch.randn(bs, num_keys, num_heads, head_dims, generator=gen, dtype=torch.float64)
    lo, hi = loc_range
    loc = lo + (hi - lo) * torch.rand(bs, num_queries, num_heads, num_levels, num_points, 2,
                                      generator=gen, dtype=torch.float64)
    attn = torch.rand(bs, num_queries, num_heads, num_levels, num_points, generator=gen,
                      dtype=torch.float64)
    out = [value.to(device, dtype), spatial_shapes.to(device), level_start_index.to(device),
           loc.to(device, loc_dtype), attn.to(device, loc_dtype)]
    if requires_grad:
        for i in (0, 3, 4):
            out[i].requires_grad_()
    return tuple(out)


def leaves(inputs, device=None, dtype=None):
    """Fresh leaves (requires_grad) of the float inputs, optionally moved / cast."""
    out = []
    for i, t in enumerate(inputs):
        t = t.detach().to(device or t.device)
        if i in (0, 3, 4):
            t = t.to(dtype or t.dtype).requires_grad_()
        out.append(t)
    return tuple(out)


def fwd_bwd(fn, inputs, grad_output):
    """(output, grad_value, grad_locations, grad_weights) of fn for grad_output."""
    out = fn(*inputs)
    grads = torch.autograd.grad(out, [inputs[0], inputs[3], inputs[4]],
                                grad_output.to(out.device, out.dtype))
    return (out, *grads)


def grad_for(inputs, seed=1):
    """A random grad_output, float64, already rounded to value's dtype (so that a
    float64 reference sees the same numbers as the kernel)."""
    value, _, _, loc, _ = inputs
    g = torch.randn(value.shape[0], loc.shape[1], value.shape[2] * value.shape[3],
                    generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return g.to(value.dtype).double()


def reference_native(value, spatial_shapes, level_start_index, sampling_locations,
                     attention_weights):
    """The reference run entirely in value's dtype (grid_sample in half precision),
    as mmcv's multi_scale_deformable_attn_pytorch does: the yardstick for fp16/bf16."""
    bs, _, num_heads, head_dims = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    dtype = value.dtype
    grids = 2 * sampling_locations.to(dtype) - 1
    sampled = []
    for level, ((h, w), start) in enumerate(zip(spatial_shapes.tolist(),
                                                level_start_index.tolist())):
        lv = value[:, start:start + h * w].permute(0, 2, 3, 1).reshape(
            bs * num_heads, head_dims, h, w)
        grid = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)
        sampled.append(F.grid_sample(lv, grid, mode='bilinear', padding_mode='zeros',
                                     align_corners=False))
    sampled = torch.stack(sampled, dim=-2).flatten(-2)
    weights = attention_weights.to(dtype).transpose(1, 2).reshape(
        bs * num_heads, 1, num_queries, num_levels * num_points)
    out = (sampled * weights).sum(-1).view(bs, num_heads * head_dims, num_queries)
    return out.transpose(1, 2).contiguous()


def max_err(a, b):
    return (a.double() - b.double()).abs().max().item()


@contextlib.contextmanager
def deterministic(enabled):
    before = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=warn_only)


def cuda_op(*inputs):
    return torch.ops.deform_ext.ms_deform_attn(*inputs)


# ---------------------------------------------------------------------------------------
# Tests
# ---------------------------------------------------------------------------------------
@mark.parametrize('head_dims', [1, 3, 30, 32, 64, 71, 1025])
def test_double_matches_cpu_kernel_and_reference(head_dims):
    small = head_dims > 100
    inputs = make_inputs(bs=1 if small else 3, shapes=((7, 5), (4, 3), (2, 2)),
                         num_heads=1 if small else 2, head_dims=head_dims,
                         num_queries=3 if small else 9, requires_grad=True)
    g = grad_for(inputs)
    ours = fwd_bwd(ms_deform_attn, inputs, g)
    cpu = fwd_bwd(ms_deform_attn, leaves(inputs, 'cpu'), g)
    ref = fwd_bwd(ms_deform_attn_reference, leaves(inputs), g)
    for name, a, b, c in zip(('out', 'grad_value', 'grad_loc', 'grad_attn'), ours, cpu, ref):
        torch.testing.assert_close(a.cpu(), b, atol=1e-10, rtol=1e-10,
                                   msg=lambda m: f'{name} vs CPU: {m}')
        torch.testing.assert_close(a, c, atol=1e-10, rtol=1e-10,
                                   msg=lambda m: f'{name} vs ref: {m}')


@mark.parametrize('head_dims', [30, 32, 64, 71])
def test_float32_matches_cpu_and_double_reference(head_dims):
    inputs = make_inputs(dtype=torch.float32, head_dims=head_dims, num_queries=50,
                         requires_grad=True)
    g = grad_for(inputs)
    ours = fwd_bwd(ms_deform_attn, inputs, g)
    cpu = fwd_bwd(ms_deform_attn, leaves(inputs, 'cpu'), g)
    ref = fwd_bwd(ms_deform_attn_reference, leaves(inputs, dtype=torch.float64), g)
    tols = [(1e-5, 1e-5)] + 3 * [(1e-4, 1e-4)]
    for a, b, c, (at, rt) in zip(ours, cpu, ref, tols):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a.cpu(), b, atol=at, rtol=rt)
        torch.testing.assert_close(a.double(), c, atol=at, rtol=rt)


@mark.parametrize('dtype,loc_dtype', [(torch.float16, torch.float32),
                                      (torch.float16, torch.float16),
                                      (torch.bfloat16, torch.float32),
                                      (torch.bfloat16, torch.bfloat16)])
def test_half_precision_error_at_most_twice_the_reference(dtype, loc_dtype):
    inputs = make_inputs(bs=2, shapes=((12, 10), (6, 5), (3, 3)), num_heads=4, head_dims=32,
                         num_queries=200, num_points=4, dtype=dtype, loc_dtype=loc_dtype,
                         requires_grad=True)
    g = grad_for(inputs)
    ours = fwd_bwd(ms_deform_attn, inputs, g)
    native = fwd_bwd(reference_native, leaves(inputs), g)
    exact = fwd_bwd(ms_deform_attn_reference, leaves(inputs, dtype=torch.float64), g)
    assert ours[0].dtype == dtype and ours[1].dtype == dtype
    assert ours[2].dtype == loc_dtype and ours[3].dtype == loc_dtype
    if dtype == torch.bfloat16 or loc_dtype == torch.bfloat16:
        cpu = fwd_bwd(ms_deform_attn, leaves(inputs, 'cpu'), g)
        for a, b in zip(ours, cpu):  # both accumulate in float32: close, not bitwise
            unit = torch.finfo(a.dtype).eps * b.double().abs().max().item()
            assert max_err(a.cpu(), b) <= 2 * unit + 1e-6
    names = ('output', 'grad_value', 'grad_locations', 'grad_weights')
    for name, a, n, e in zip(names, ours, native, exact):
        unit = torch.finfo(a.dtype).eps * e.abs().max().item()
        ours_err, ref_err = max_err(a, e), max_err(n, e)
        assert ours_err <= 2 * ref_err + unit, (
            f'{name}: error {ours_err:.3g} vs the native {dtype} reference\'s {ref_err:.3g}')


def test_gradcheck_double():
    inputs = make_inputs(bs=2, shapes=((3, 4), (2, 2)), num_heads=2, head_dims=3,
                         num_queries=3, num_points=2, requires_grad=True)
    assert torch.autograd.gradcheck(ms_deform_attn, inputs, eps=1e-6, atol=1e-6)
    inputs = make_inputs(bs=1, shapes=((3, 4), (2, 2)), num_heads=2, head_dims=8,
                         num_queries=3, num_points=2, requires_grad=True)
    with deterministic(True):
        assert torch.autograd.gradcheck(ms_deform_attn, inputs, eps=1e-6, atol=1e-6)


def test_deterministic_mode_is_bitwise_reproducible():
    # Tiny maps, many queries: each value element gets thousands of float atomics.
    inputs = make_inputs(bs=1, shapes=((4, 4), (2, 2)), num_heads=2, head_dims=32,
                         num_queries=4096, num_points=4, dtype=torch.float32,
                         requires_grad=True)
    g = grad_for(inputs)
    default = [fwd_bwd(ms_deform_attn, inputs, g)[1] for _ in range(5)]
    assert any(not torch.equal(default[0], d) for d in default[1:]), (
        'the default (atomic) grad_value did not vary between runs: the shape does not '
        'exercise the deterministic mode')
    with deterministic(True):
        runs = [fwd_bwd(ms_deform_attn, inputs, g) for _ in range(3)]
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)
    # Fixed point loses nothing visible: the float32 rounding of the result dominates.
    exact = fwd_bwd(ms_deform_attn_reference, leaves(inputs, dtype=torch.float64), g)[1]
    torch.testing.assert_close(runs[0][1].double(), exact, atol=1e-5, rtol=1e-5)
    # ~6,500 float32 atomics per element: the default path drifts more.
    torch.testing.assert_close(runs[0][1], default[0], atol=1e-3, rtol=1e-4)


@mark.parametrize('dtype', [torch.float16, torch.bfloat16, torch.float64])
def test_deterministic_mode_other_dtypes(dtype):
    inputs = make_inputs(bs=2, shapes=((5, 4), (2, 3)), num_heads=2, head_dims=16,
                         num_queries=500, num_points=4, dtype=dtype,
                         loc_dtype=torch.float64 if dtype == torch.float64 else torch.float32,
                         requires_grad=True)
    g = grad_for(inputs)
    default = fwd_bwd(ms_deform_attn, inputs, g)
    with deterministic(True):
        runs = [fwd_bwd(ms_deform_attn, inputs, g) for _ in range(3)]
    for run in runs[1:]:
        for a, b in zip(runs[0], run):
            assert torch.equal(a, b)
    tol = 1e-10 if dtype == torch.float64 else 4 * torch.finfo(dtype).eps
    for a, b in zip(runs[0], default):
        scale = b.double().abs().max().item()
        assert max_err(a, b) <= tol * scale + 1e-12


def test_encoder_n8_matches_reference():
    # Deformable DETR's encoder: batch 8, 22,223 tokens as queries, 8 heads x 32.
    torch.cuda.empty_cache()
    inputs = make_inputs(bs=8, shapes=ENCODER_LEVELS, num_heads=8, head_dims=32,
                         num_queries=22223, num_points=4, dtype=torch.float32,
                         loc_range=(0.0, 1.0), requires_grad=True)
    g = grad_for(inputs)
    ours = fwd_bwd(ms_deform_attn, inputs, g)
    ref = fwd_bwd(ms_deform_attn_reference, inputs, g)  # float32 grid_sample on the GPU
    for name, a, b in zip(('output', 'grad_value', 'grad_loc', 'grad_attn'), ours, ref):
        scale = b.abs().max().item()
        err = max_err(a, b)
        assert err <= 1e-4 * max(scale, 1.0), f'{name}: max error {err:.3g} (scale {scale:.3g})'
    with deterministic(True):
        det = fwd_bwd(ms_deform_attn, inputs, g)
    assert max_err(det[1], ref[1]) <= 1e-4 * max(ref[1].abs().max().item(), 1.0)
    del ours, ref, det
    torch.cuda.empty_cache()


def test_non_contiguous_inputs():
    value, shapes, starts, loc, attn = make_inputs(bs=2, head_dims=32, num_heads=4,
                                                   num_queries=20, dtype=torch.float32)
    # value as a view of a (bs, keys, dims, heads) buffer; locations with a stride-2 last
    # dim via slicing; weights transposed back and forth; shapes / starts strided.
    value_nc = value.transpose(2, 3).contiguous().transpose(2, 3).detach()
    loc_nc = torch.stack([loc, torch.zeros_like(loc)], -1)[..., 0].detach()
    attn_nc = attn.transpose(1, 3).contiguous().transpose(1, 3).detach()
    shapes_nc = torch.stack([shapes, shapes], 0)[0]
    starts_nc = torch.stack([starts, starts], 1)[:, 0]
    misaligned = torch.empty(value.numel() + 1, device='cuda')[1:].view_as(value).copy_(value)
    misaligned = misaligned.detach()  # a leaf that keeps the 4-byte offset: scalar loads
    for v in (value_nc, misaligned):
        assert not v.is_contiguous() or v.data_ptr() % 16 != 0
        for i in (v, loc_nc, attn_nc):
            i.requires_grad_()
        nc = (v, shapes_nc, starts_nc, loc_nc, attn_nc)
        c = leaves((value, shapes, starts, loc, attn))
        g = grad_for(c)
        a, b = fwd_bwd(ms_deform_attn, nc, g), fwd_bwd(ms_deform_attn, c, g)
        torch.testing.assert_close(a[0], b[0], atol=1e-6, rtol=1e-6)
        for x, y in zip(a[1:], b[1:]):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)
        for t in (v, loc_nc, attn_nc):
            t.requires_grad_(False)


def test_bad_locations_and_levels_never_crash():
    value, shapes, starts, loc, attn = make_inputs(dtype=torch.float32, head_dims=8)
    loc = loc.clone()
    loc[0, 0, 0, 0, 0] = float('nan')
    loc[0, 1, 0, 0, 0] = float('inf')
    loc[0, 2, 0, 0, 0] = -1e30
    loc[0, 3, 0, 0, 0, 0] = 1e30
    leaves_ = leaves((value, shapes, starts, loc, attn))
    g = grad_for(leaves_)
    ours = fwd_bwd(ms_deform_attn, leaves_, g)
    ref = fwd_bwd(ms_deform_attn_reference, leaves(leaves_, dtype=torch.float64), g)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=1e-4)
    for q in range(4):
        assert ours[2][0, q, 0, 0, 0].abs().sum() == 0 and ours[3][0, q, 0, 0, 0] == 0
    # Levels that do not fit value's keys (no host sync checks on CUDA): skipped on the
    # device, never read out of bounds.
    bad_shapes = shapes.clone()
    bad_shapes[1] = torch.tensor([1000, 1000])
    bad_starts = starts.clone()
    bad_starts[0] = -5
    out = cuda_op(value, bad_shapes, bad_starts, loc, attn)
    grads = torch.ops.deform_ext.ms_deform_attn_backward(
        torch.ones_like(out), value, bad_shapes, bad_starts, loc, attn)
    torch.cuda.synchronize()
    assert torch.equal(out, torch.zeros_like(out))
    assert all(torch.isfinite(t).all() for t in grads)


@mark.parametrize('bs,num_queries', [(1, 1), (3, 0), (0, 5), (5, 1000)])
def test_any_batch_size(bs, num_queries):
    inputs = make_inputs(bs=bs, num_queries=num_queries, dtype=torch.float32, head_dims=16,
                         requires_grad=True)
    g = grad_for(inputs)
    ours = fwd_bwd(ms_deform_attn, inputs, g)
    ref = fwd_bwd(ms_deform_attn_reference, leaves(inputs, dtype=torch.float64), g) \
        if bs * num_queries else ours
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a.double(), b.double(), atol=1e-4, rtol=1e-4)


def test_cuda_graph_capture():
    inputs = make_inputs(bs=2, head_dims=32, num_heads=4, num_queries=64,
                         dtype=torch.float32, requires_grad=True)
    g = grad_for(inputs).float().cuda()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm-up on a side stream, as the docs require
        for _ in range(2):
            fwd_bwd(ms_deform_attn, inputs, g)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = fwd_bwd(ms_deform_attn, inputs, g)
    graph.replay()
    torch.cuda.synchronize()
    eager = fwd_bwd(ms_deform_attn, inputs, g)
    for a, b in zip(captured, eager):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@mark.parametrize('backend', ['aot_eager', 'inductor'])
def test_torch_compile_fullgraph(backend):
    if backend == 'inductor':
        try:
            import triton  # noqa: F401
        except ImportError:
            if pytest:
                pytest.skip('triton is not installed: inductor cannot compile for CUDA')
            return
    compiled = torch.compile(ms_deform_attn, backend=backend, fullgraph=True, dynamic=True)
    for bs, nq in ((2, 9), (3, 17)):
        inputs = make_inputs(bs=bs, num_queries=nq, dtype=torch.float32, head_dims=32,
                             requires_grad=True)
        g = grad_for(inputs)
        a, b = fwd_bwd(compiled, inputs, g), fwd_bwd(ms_deform_attn, inputs, g)
        torch.testing.assert_close(a[0], b[0], atol=0, rtol=0)
        for x, y in zip(a[1:], b[1:]):
            torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-5)


def test_bfloat16_autocast():
    value, shapes, starts, loc, attn = make_inputs(dtype=torch.float32, head_dims=16)
    proj = torch.nn.Linear(16, 16).cuda()
    with torch.autocast('cuda', dtype=torch.bfloat16):
        v = proj(value)
        out = ms_deform_attn(v, shapes, starts, loc, attn)
    assert v.dtype == out.dtype == torch.bfloat16
    expected = ms_deform_attn_reference(v.double(), shapes, starts, loc.double(), attn.double())
    torch.testing.assert_close(out.double(), expected, atol=2e-2, rtol=2e-2)


# ---------------------------------------------------------------------------------------
# Runner without pytest
# ---------------------------------------------------------------------------------------
def _main():
    if pytest is not None and '--no-pytest' not in sys.argv:
        return pytest.main([__file__, '-v', '-rs'] + [a for a in sys.argv[1:]])
    print('running the tests with the minimal runner (pytest '
          f'{"not installed" if pytest is None else "bypassed by --no-pytest"})')
    if not KERNEL_OK:
        print(f'SKIPPED all: {SKIP_REASON}')
        return 0
    import itertools
    import traceback
    failures = 0
    for name, fn in sorted(globals().items()):
        if not (name.startswith('test_') and callable(fn)):
            continue
        params = getattr(fn, '_params', None)
        if params is None:  # pytest's own marks
            params = [tuple(m.args[:2]) for m in getattr(fn, 'pytestmark', [])
                      if m.name == 'parametrize']
        grids = [[dict(zip([n.strip() for n in names.split(',')],
                           v if isinstance(v, tuple) else (v,))) for v in values]
                 for names, values in params]
        for combo in itertools.product(*grids) if grids else [()]:
            kwargs = {k: v for d in combo for k, v in d.items()}
            label = f'{name}[{kwargs}]' if kwargs else name
            try:
                fn(**kwargs)
                print(f'PASSED {label}')
            except KeyboardInterrupt:
                raise
            except BaseException as error:  # noqa: BLE001  (pytest.skip raises one)
                if type(error).__name__ == 'Skipped':
                    print(f'SKIPPED {label}: {error}')
                    continue
                failures += 1
                print(f'FAILED {label}')
                traceback.print_exc()
    print(f'{failures} failed')
    return 1 if failures else 0


if __name__ == '__main__':
    sys.exit(_main())
