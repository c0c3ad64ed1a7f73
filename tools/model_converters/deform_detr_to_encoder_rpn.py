"""Extract a two-stage Deformable DETR checkpoint's first stage as weights of
``EncoderRPNHead`` (the key mapping is in
``deform_ext/models/dense_heads/encoder_rpn_weights.py``).

    python tools/model_converters/deform_detr_to_encoder_rpn.py two-stage.pth \
        encoder-rpn.pth [--encoder-layers 1]

The result (``{'state_dict': ...}``) loads with ``strict=True`` into an
``EncoderRPNHead`` with that many encoder layers, the detector's levels and width; in a
detector config: ``rpn_head=dict(..., init_cfg=dict(type='Pretrained',
checkpoint='encoder-rpn.pth'))``. The checkpoint is read with ``weights_only=True``.
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
from deform_ext.compat.checkpoint_loading import load_from_local  # noqa: E402
from deform_ext.models.dense_heads.encoder_rpn_weights import encoder_rpn_weights  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='two-stage DeformDETR checkpoint (.pth)')
    parser.add_argument('dst', help='EncoderRPNHead checkpoint to write')
    parser.add_argument('--encoder-layers', type=int, default=1,
                        help="the head's encoder layers (the detector's first ones)")
    args = parser.parse_args(argv)
    checkpoint = load_from_local(args.src, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint)
    try:
        head = encoder_rpn_weights(state, args.encoder_layers)
    except KeyError as err:
        raise SystemExit(f'{args.src}: {err.args[0]}') from err
    torch.save({'state_dict': head}, args.dst)
    print(f'wrote {len(head)} tensors to {args.dst}')


if __name__ == '__main__':
    main()
