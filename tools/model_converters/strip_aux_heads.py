"""Remove the training-only parts from a detector checkpoint: the auxiliary heads
(``aux_head.*``) and DeformDETR's denoising label embedding (``dn_queries.*``).

    python tools/model_converters/strip_aux_heads.py IN.pth OUT.pth

``IN`` is a checkpoint of a config with ``aux_head`` (DeformDETR, DeformableDETRWithAux,
DINOWithAux) and/or DeformDETR's ``denoising``; ``OUT`` holds its ``state_dict`` without
those keys and its ``meta`` (class names), and loads with no missing and no unexpected
keys into the same config without ``aux_head`` and ``denoising`` (the plain
``DeformDETR`` / ``DeformableDETR`` / ``DINO``; DINO's own denoising stays). The
optimizer, schedulers and message hub are left out: ``OUT`` is for inference and
fine-tuning, not for resuming. The full checkpoint also works as it is with
``tools/test.py`` and the config *with* the heads: ``predict`` never runs them. The
checkpoint is read with ``weights_only=True``.
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from deform_ext.compat.checkpoint_loading import load_from_local  # noqa: E402
from deform_ext.models.detectors.aux_detr import AUX_PREFIX  # noqa: E402
from deform_ext.models.detectors.deform_detr import DENOISING_PREFIX  # noqa: E402

TRAINING_ONLY = (AUX_PREFIX, DENOISING_PREFIX)


def strip_aux_heads(checkpoint: dict) -> dict:
    """``{'state_dict': ..., 'meta': ...}`` of ``checkpoint`` (a saved dict, or a bare
    state dict) without the keys under ``aux_head.`` and ``dn_queries.``; KeyError
    when it has none."""
    state = checkpoint.get('state_dict', checkpoint)
    kept = {k: v for k, v in state.items() if not k.startswith(TRAINING_ONLY)}
    if len(kept) == len(state):
        raise KeyError(f'no {AUX_PREFIX}* or {DENOISING_PREFIX}* keys: the checkpoint has '
                       'no training-only parts')
    stripped = {'state_dict': kept}
    if 'meta' in checkpoint:
        stripped['meta'] = checkpoint['meta']
    return stripped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='checkpoint of a detector with aux_head or denoising '
                        '(.pth)')
    parser.add_argument('dst', help='checkpoint to write, without the training-only parts')
    args = parser.parse_args(argv)
    if not osp.isfile(args.src):
        raise SystemExit(f'{args.src}: no such file')
    checkpoint = load_from_local(args.src, map_location='cpu')
    try:
        stripped = strip_aux_heads(checkpoint)
    except KeyError as err:
        raise SystemExit(f'{args.src}: {err.args[0]}') from err
    removed = len(checkpoint.get('state_dict', checkpoint)) - len(stripped['state_dict'])
    torch.save(stripped, args.dst)
    print(f'removed {removed} training-only tensors ({AUX_PREFIX}*, {DENOISING_PREFIX}*); '
          f'wrote {len(stripped["state_dict"])} to {args.dst}')


if __name__ == '__main__':
    main()
