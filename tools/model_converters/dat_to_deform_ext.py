"""Convert a checkpoint of the CVPR-2022 DAT release (LeapLabTHU/DAT: DAT-T/S/B,
``models/dat.py`` + ``models/dat_blocks.py``) to deform_ext's ``DAT`` backbone.

    python tools/model_converters/dat_to_deform_ext.py dat_tiny_in1k_224.pth \
        dat-t_deform-ext.pth [--out-indices 0 1 2 3]

The result (``{'state_dict': ...}``) loads with ``strict=True`` into
``DAT(arch=..., out_indices=...)`` and works as its
``init_cfg=dict(type='Pretrained', checkpoint=...)``. Renames:

    patch_proj.{0,1.norm}                 -> patch_embed.{0,1}
    stages.i.layer_norms.{2j,2j+1}.norm   -> stages.i.blocks.j.{norm1,norm2}
    stages.i.mlps.j.chunk.linear{1,2}     -> stages.i.blocks.j.mlp.fc{1,2}
    stages.i.attns.j.<p>                  -> stages.i.blocks.j.attn.<p>
        (DAttention: conv_offset.1.norm -> conv_offset.1)
    down_projs.i.{0,1.norm}               -> downsamples.i.{0,1}
    cls_norm.norm                         -> out_norms.<last stage>

Dropped: the classifier (``cls_head``) and buffers that deform_ext recomputes
(``relative_position_index``, shifted windows' ``attn_mask``). Output norms of the
other returned stages do not exist in the release; they start as identity LayerNorms
(weight 1, bias 0), which is what a fresh LayerNorm is.
"""
import argparse
import pickle
import re
from collections import OrderedDict
from typing import Dict, Sequence

import torch

_RULES = [  # (pattern, replacement), first match wins
    (r'^patch_proj\.0\.', 'patch_embed.0.'),
    (r'^patch_proj\.1\.norm\.', 'patch_embed.1.'),
    (r'^down_projs\.(\d+)\.0\.', r'downsamples.\1.0.'),
    (r'^down_projs\.(\d+)\.1\.norm\.', r'downsamples.\1.1.'),
    (r'^stages\.(\d+)\.mlps\.(\d+)\.chunk\.linear([12])\.', r'stages.\1.blocks.\2.mlp.fc\3.'),
    (r'^stages\.(\d+)\.attns\.(\d+)\.conv_offset\.1\.norm\.',
     r'stages.\1.blocks.\2.attn.conv_offset.1.'),
    (r'^stages\.(\d+)\.attns\.(\d+)\.', r'stages.\1.blocks.\2.attn.'),
]
_DROPPED = re.compile(r'(^cls_head\.|\.relative_position_index$|\.attn_mask$)')
_LAYER_NORM = re.compile(r'^stages\.(\d+)\.layer_norms\.(\d+)\.norm\.(weight|bias)$')


def _unwrap(checkpoint) -> Dict[str, torch.Tensor]:
    if isinstance(checkpoint, dict):
        for key in ('model', 'state_dict', 'model_ema'):
            if key in checkpoint and isinstance(checkpoint[key], dict):
                checkpoint = checkpoint[key]
                break
    state = OrderedDict()
    for key, value in checkpoint.items():
        state[key[len('module.'):] if key.startswith('module.') else key] = value
    return state


def convert_dat(checkpoint, out_indices: Sequence[int] = (0, 1, 2, 3)) -> 'OrderedDict':
    """Release checkpoint (its state dict, or a dict holding it under ``model`` or
    ``state_dict``) -> deform_ext ``DAT`` state dict.

    Raises:
        KeyError: a key the release's DAT-T/S/B does not have (e.g. a stage input
            projection ``stages.i.proj``, which those models do not use).
    """
    state = _unwrap(checkpoint)
    num_stages = 1 + max(int(k.split('.')[1]) for k in state if k.startswith('stages.'))
    out = OrderedDict()
    unknown = []
    for key, value in state.items():
        if _DROPPED.search(key):
            continue
        if key.startswith('cls_norm.norm.'):
            if num_stages - 1 in out_indices:
                out[f'out_norms.{num_stages - 1}.' + key.rsplit('.', 1)[1]] = value
            continue
        match = _LAYER_NORM.match(key)
        if match:
            stage, index, name = match.groups()
            block, which = divmod(int(index), 2)
            out[f'stages.{stage}.blocks.{block}.norm{which + 1}.{name}'] = value
            continue
        for pattern, replacement in _RULES:
            new_key, hits = re.subn(pattern, replacement, key)
            if hits:
                out[new_key] = value
                break
        else:
            unknown.append(key)
    if unknown:
        raise KeyError(f'keys the DAT release models do not have: {unknown[:10]}'
                       f'{" ..." if len(unknown) > 10 else ""}')
    for index in out_indices:
        if f'out_norms.{index}.weight' not in out:
            dims = out[f'stages.{index}.blocks.0.norm1.weight'].shape[0]
            out[f'out_norms.{index}.weight'] = torch.ones(dims)
            out[f'out_norms.{index}.bias'] = torch.zeros(dims)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='release checkpoint (.pth)')
    parser.add_argument('dst', help='converted checkpoint to write')
    parser.add_argument('--out-indices', type=int, nargs='+', default=[0, 1, 2, 3],
                        help="the backbone's out_indices (one output norm each)")
    parser.add_argument('--trusted', action='store_true',
                        help='unpickle arbitrary objects (e.g. a training checkpoint that '
                        'stores its config); only for files from a source you trust')
    args = parser.parse_args(argv)
    try:
        checkpoint = torch.load(args.src, map_location='cpu', weights_only=not args.trusted)
    except pickle.UnpicklingError as err:
        raise SystemExit(f'{args.src} holds more than tensors ({err}); if you trust its '
                         'source, run again with --trusted') from err
    converted = convert_dat(checkpoint, args.out_indices)
    torch.save({'state_dict': converted}, args.dst)
    print(f'wrote {len(converted)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
