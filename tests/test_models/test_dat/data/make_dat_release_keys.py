"""Writes dat_tiny_release_keys.json: the state-dict keys, shapes and dtypes of DAT-T
as built by the CVPR-2022 release of LeapLabTHU/DAT (``models/dat.py`` and
``models/dat_blocks.py`` at commit 81c67ea1589a21f7610c9bcee7e82c38aa9bd0c0, config
``configs/dat_tiny.yaml``), enumerated in the order ``nn.Module.state_dict`` gives.

What the release builds, per module (read from that code):
- ``DAT``: ``patch_proj`` = Sequential(Conv2d(3, 96, 4, 4), LayerNormProxy(96)),
  ``stages`` (4 x TransformerStage), ``down_projs`` (3 x Sequential(Conv2d(d_i,
  d_{i+1}, 2, 2, bias=False), LayerNormProxy(d_{i+1}))), ``cls_norm`` =
  LayerNormProxy(768), ``cls_head`` = Linear(768, 1000). LayerNormProxy holds
  ``norm = nn.LayerNorm``.
- ``TransformerStage``: ``proj`` (Identity: the stage input already has d_i channels),
  ``layer_norms`` (2 x depth LayerNormProxy), ``mlps`` (depth x TransformerMLP:
  ``chunk.linear1`` Linear(d, 4d), ``chunk.linear2`` Linear(4d, d)), ``attns``.
- ``LocalAttention`` (L): ``relative_position_bias_table`` ((2*7-1)**2, heads),
  buffer ``relative_position_index`` (49, 49) int64, ``proj_qkv`` Linear(d, 3d),
  ``proj_out`` Linear(d, d). ``ShiftWindowAttention`` (S) adds buffer ``attn_mask``
  (num_windows, 49, 49) for the 224-px map (56 -> 64 windows, 28 -> 16).
- ``DAttentionBaseline`` (D): ``rpe_table`` (heads, 2*fmap-1, 2*fmap-1) (use_pe, not
  dwc/fixed), ``conv_offset`` = Sequential(Conv2d(c, c, k, 1, k//2, groups=c),
  LayerNormProxy(c), GELU, Conv2d(c, 2, 1, bias=False)) with c = d / groups and
  k = 5 for the 14x14 map, 3 for 7x7; ``proj_q/k/v/out`` = Conv2d(d, d, 1).

    python tests/test_models/test_dat/data/make_dat_release_keys.py
"""
import json
import os.path as osp

DIMS, DEPTHS, HEADS = [96, 192, 384, 768], [2, 2, 6, 2], [3, 6, 12, 24]
SPECS = [['L', 'S'], ['L', 'S'], ['L', 'D'] * 3, ['L', 'D']]
GROUPS = [-1, -1, 3, 6]
FMAPS = [56, 28, 14, 7]  # 224 / 4 / 2**i
OFFSET_KERNEL = {14: 5, 7: 3}


def release_keys():
    keys = []

    def add(name, shape, dtype='float32'):
        keys.append([name, list(shape), dtype])

    def layer_norm(prefix, dims):
        add(prefix + '.norm.weight', [dims])
        add(prefix + '.norm.bias', [dims])

    add('patch_proj.0.weight', [96, 3, 4, 4])
    add('patch_proj.0.bias', [96])
    layer_norm('patch_proj.1', 96)
    for i, (d, depth, heads, spec) in enumerate(zip(DIMS, DEPTHS, HEADS, SPECS)):
        s = f'stages.{i}'
        for j in range(2 * depth):
            layer_norm(f'{s}.layer_norms.{j}', d)
        for j in range(depth):
            add(f'{s}.mlps.{j}.chunk.linear1.weight', [4 * d, d])
            add(f'{s}.mlps.{j}.chunk.linear1.bias', [4 * d])
            add(f'{s}.mlps.{j}.chunk.linear2.weight', [d, 4 * d])
            add(f'{s}.mlps.{j}.chunk.linear2.bias', [d])
        for j, kind in enumerate(spec):
            a = f'{s}.attns.{j}'
            if kind in 'LS':
                add(f'{a}.relative_position_bias_table', [13 * 13, heads])
                add(f'{a}.relative_position_index', [49, 49], 'int64')
                if kind == 'S':
                    add(f'{a}.attn_mask', [(FMAPS[i] // 7)**2, 49, 49])
                add(f'{a}.proj_qkv.weight', [3 * d, d])
                add(f'{a}.proj_qkv.bias', [3 * d])
                add(f'{a}.proj_out.weight', [d, d])
                add(f'{a}.proj_out.bias', [d])
            else:
                c, k, f = d // GROUPS[i], OFFSET_KERNEL[FMAPS[i]], FMAPS[i]
                add(f'{a}.rpe_table', [heads, 2 * f - 1, 2 * f - 1])
                add(f'{a}.conv_offset.0.weight', [c, 1, k, k])
                add(f'{a}.conv_offset.0.bias', [c])
                layer_norm(f'{a}.conv_offset.1', c)
                add(f'{a}.conv_offset.3.weight', [2, c, 1, 1])
                for p in ('q', 'k', 'v', 'out'):
                    add(f'{a}.proj_{p}.weight', [d, d, 1, 1])
                    add(f'{a}.proj_{p}.bias', [d])
    for i in range(3):
        add(f'down_projs.{i}.0.weight', [DIMS[i + 1], DIMS[i], 2, 2])
        layer_norm(f'down_projs.{i}.1', DIMS[i + 1])
    layer_norm('cls_norm', 768)
    add('cls_head.weight', [1000, 768])
    add('cls_head.bias', [1000])
    return keys


if __name__ == '__main__':
    out = osp.join(osp.dirname(osp.abspath(__file__)), 'dat_tiny_release_keys.json')
    source = ('LeapLabTHU/DAT@81c67ea1589a21f7610c9bcee7e82c38aa9bd0c0 models/dat.py, '
              'models/dat_blocks.py, configs/dat_tiny.yaml')
    lines = ',\n'.join(json.dumps(key) for key in release_keys())
    with open(out, 'w') as f:  # one key per line
        f.write(f'{{"source": {json.dumps(source)},\n"keys": [\n{lines}\n]}}\n')
    print(f'wrote {out}')
