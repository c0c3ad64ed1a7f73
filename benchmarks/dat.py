"""Benchmark of DAT's deformable attention (CPU or CUDA), three tables from one run:

1. ``DAttention`` against plain global multi-head self-attention (same 1x1 q/k/v/out
   projections, ``scaled_dot_product_attention`` over all H*W keys) on H x W maps of
   32x32, 64x64 and 128x128 tokens: forward+backward time and peak memory. DAttention
   keeps a fixed ``keys x keys`` grid of sampled keys (stride H / keys, as DAT++ does
   per stage), so it grows linearly with H*W while global attention grows
   quadratically; the growth columns show the factor from the previous size (4x
   tokens).
2. The key sampler: ``F.grid_sample`` against deform_ext's ``ms_deform_attn`` op used
   as a bilinear sampler (one level, one point per key, weight 1), forward and
   forward+backward, which is why DAttention uses ``grid_sample``.
3. Where to put DAT in a detector: RetinaNet R-50-FPN forward+backward at 512x512 as
   is, with the recommended DATFPN blocks (P4, P5) and with the ResNet plugin
   (stage 4, after conv2, 256-d; or stages 3-4 after conv3, 256-d).

    python benchmarks/dat.py [--device cpu|cuda] [--repeats N] [--threads T]
                             [--sections attention sampler placement]

Times are medians over the repeats after one warm-up; memory is the peak allocated on
top of the inputs during one call (CUDA: max_memory_allocated; CPU: the profiler's
allocation events).
"""
import argparse
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from bench_utils import median_ms, peak_mib


def fwd_bwd(module, x):
    def call():
        module.zero_grad(set_to_none=True)
        x.grad = None
        module(x).square().mean().backward()
    return call


class GlobalAttention(nn.Module):
    """Plain multi-head self-attention over all H*W tokens, shapes (bs, C, H, W)."""

    def __init__(self, embed_dims, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Conv2d(embed_dims, 3 * embed_dims, 1)
        self.proj_out = nn.Conv2d(embed_dims, embed_dims, 1)

    def forward(self, x):
        bs, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(bs, 3, self.num_heads, c // self.num_heads, h * w) \
            .transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj_out(out.transpose(-1, -2).reshape(bs, c, h, w))


def fmt(value, spec='.1f'):
    return 'n/a' if value is None else format(value, spec)


def attention_section(args):
    from deform_ext.models.layers import DAttention
    c, heads = args.channels, args.heads
    print(f'\n## 1. DAttention ({args.keys}x{args.keys} keys, {args.groups} groups, '
          f'table bias) vs global MHSA; batch {args.batch}, {c}-d, {heads} heads, '
          f'{args.device}, forward+backward\n')
    print('| map | tokens | DAT stride | DAT ms | MHSA ms | MHSA/DAT time | DAT MiB | MHSA MiB '
          '| MHSA/DAT mem | DAT time growth | MHSA time growth |')
    print('|---|---|---|---|---|---|---|---|---|---|---|')
    previous = None
    for size in args.sizes:
        torch.manual_seed(0)
        stride = max(1, size // args.keys)
        dat = DAttention(c, heads, groups=args.groups, stride=stride, pe_type='table',
                         pe_size=args.keys).to(args.device)
        mhsa = GlobalAttention(c, heads).to(args.device)
        x = torch.randn(args.batch, c, size, size, device=args.device, requires_grad=True)
        results = []
        for module in (dat, mhsa):
            call = fwd_bwd(module, x)
            results.append((median_ms([call], args.repeats, 1, args.device)[0],
                            peak_mib(call, args.device)))
        (dat_ms, dat_mib), (mhsa_ms, mhsa_mib) = results
        growth = ('', '') if previous is None else (
            f'x{dat_ms / previous[0]:.1f}', f'x{mhsa_ms / previous[1]:.1f}')
        print(f'| {size}x{size} | {size * size} | {stride} | {dat_ms:.1f} | {mhsa_ms:.1f} '
              f'| {mhsa_ms / dat_ms:.2f} | {fmt(dat_mib)} | {fmt(mhsa_mib)} '
              f'| {mhsa_mib / dat_mib:.2f} | {growth[0]} | {growth[1]} |')
        previous = (dat_ms, mhsa_ms)


def sampler_section(args):
    from deform_ext.ops import ms_deform_attn

    def by_grid_sample(x, points, groups):
        bs, c, h, w = x.shape
        out = F.grid_sample(x.reshape(bs * groups, c // groups, h, w), points,
                            mode='bilinear', padding_mode='zeros', align_corners=False)
        return out.reshape(bs, c, -1)

    def by_msda(x, points, groups):
        bs, c, h, w = x.shape
        num_keys = points.shape[1] * points.shape[2]
        value = x.reshape(bs, groups, c // groups, h * w).permute(0, 3, 1, 2)
        loc = (points.reshape(bs, groups, num_keys, 2).transpose(1, 2) + 1) / 2
        weights = loc.new_ones(bs, num_keys, groups, 1, 1)
        shapes = torch.tensor([[h, w]], device=x.device)
        start = torch.zeros(1, dtype=torch.int64, device=x.device)
        out = ms_deform_attn(value, shapes, start, loc[:, :, :, None, None], weights)
        return out.transpose(1, 2)  # (bs, c, num_keys) like grid_sample's

    print(f'\n## 2. Key sampler: F.grid_sample vs deform_ext ms_deform_attn '
          f'(1 level, 1 point, weight 1), {args.device}\n')
    print('| batch, C, groups, map, stride | grid_sample fwd ms | msda fwd ms | msda/gs '
          '| grid_sample f+b ms | msda f+b ms | msda/gs | max abs diff |')
    print('|---|---|---|---|---|---|---|---|')
    for bs, c, groups, size, stride in [(2, 256, 4, 32, 1), (2, 256, 4, 64, 2),
                                        (2, 256, 4, 64, 1), (2, 128, 2, 100, 4)]:
        torch.manual_seed(0)
        keys = math.ceil(size / stride)
        x = torch.randn(bs, c, size, size, device=args.device, requires_grad=True)
        points = (torch.rand(bs * groups, keys, keys, 2, device=args.device) * 2 - 1)
        points.requires_grad_()
        row = []
        for fn in (by_grid_sample, by_msda):
            def forward(fn=fn):
                with torch.no_grad():
                    fn(x, points, groups)

            def both(fn=fn):
                x.grad = points.grad = None
                fn(x, points, groups).square().mean().backward()
            row += [median_ms([forward], args.repeats, 1, args.device)[0],
                    median_ms([both], args.repeats, 1, args.device)[0]]
        with torch.no_grad():
            diff = (by_grid_sample(x, points, groups) - by_msda(x, points, groups)).abs().max()
        print(f'| {bs}, {c}, {groups}, {size}x{size}, {stride} | {row[0]:.2f} | {row[2]:.2f} '
              f'| {row[2] / row[0]:.2f} | {row[1]:.2f} | {row[3]:.2f} | {row[3] / row[1]:.2f} '
              f'| {diff.item():.1e} |')


def placement_section(args):
    from mmengine.registry import DefaultScope

    import deform_ext  # noqa: F401  registers the components
    from deform_ext.registry import MODELS

    fpn = dict(type='FPN', in_channels=[256, 512, 1024, 2048], out_channels=256,
               start_level=1, add_extra_convs='on_input', num_outs=5)
    dat_neck = dict(type='DATFPN', neck=fpn, out_channels=256, levels=(1, 2), num_heads=8,
                    attn_cfgs=[dict(type='DAttention', groups=2, stride=2),
                               dict(type='DAttention', groups=2, stride=1)])

    def plugin(stages, position, stride):
        return [dict(cfg=dict(type='DAttentionPlugin', embed_dims=256, num_heads=8,
                              attn_cfg=dict(groups=2, stride=stride)),
                     stages=stages, position=position)]

    variants = [
        ('RetinaNet R-50-FPN', None, fpn),
        ('+ DATFPN: 1 block on P4 (key stride 2) and P5 (stride 1), 256-d', None, dat_neck),
        ('+ plugin: stage 4 after conv2 (3 blocks), 256-d', plugin(
            (False, False, False, True), 'after_conv2', 1), fpn),
        ('+ plugin: stages 3-4 after conv3 (9 blocks), 256-d, key stride 2', plugin(
            (False, False, True, True), 'after_conv3', 2), fpn),
    ]
    size = args.placement_size
    print(f'\n## 3. Placement cost: RetinaNet R-50-FPN (random init), batch 1, {size}x{size}, '
          f'{args.device}, forward+backward of backbone+neck+head\n')
    print('| model | params (M) | ms | vs plain | peak MiB | vs plain |')
    print('|---|---|---|---|---|---|')
    base = None
    for name, plugins, neck in variants:
        cfg = dict(type='RetinaNet',
                   backbone=dict(type='ResNet', depth=50, out_indices=(0, 1, 2, 3),
                                 plugins=plugins),
                   neck=neck,
                   bbox_head=dict(
                       type='RetinaHead', num_classes=80, in_channels=256, feat_channels=256,
                       anchor_generator=dict(type='AnchorGenerator', octave_base_scale=4,
                                             scales_per_octave=3, ratios=[0.5, 1.0, 2.0],
                                             strides=[8, 16, 32, 64, 128]),
                       bbox_coder=dict(type='DeltaXYWHBBoxCoder')))
        torch.manual_seed(0)
        with DefaultScope.overwrite_default_scope('deform_ext'):
            model = MODELS.build(cfg).to(args.device)
        x = torch.randn(1, 3, size, size, device=args.device)

        def call(model=model):
            model.zero_grad(set_to_none=True)
            feats = model.bbox_head(model.extract_feat(x))
            sum(t.square().mean() for level in feats for t in level).backward()
        ms, mib = median_ms([call], args.repeats, 1, args.device)[0], peak_mib(call, args.device)
        base = base or (ms, mib)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f'| {name} | {params:.1f} | {ms:.0f} | x{ms / base[0]:.2f} | {mib:.0f} '
              f'| x{mib / base[1]:.2f} |')


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--sections', nargs='+', default=['attention', 'sampler', 'placement'],
                        choices=['attention', 'sampler', 'placement'])
    parser.add_argument('--sizes', type=int, nargs='+', default=[32, 64, 128])
    parser.add_argument('--channels', type=int, default=128)
    parser.add_argument('--heads', type=int, default=4)
    parser.add_argument('--groups', type=int, default=2)
    parser.add_argument('--keys', type=int, default=16, help='DAttention key grid side')
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--placement-size', type=int, default=512)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}')
    for section in args.sections:
        {'attention': attention_section, 'sampler': sampler_section,
         'placement': placement_section}[section](args)


if __name__ == '__main__':
    main()
