"""Where deformable attention looks, for chosen detections of one image (PNG).

    python tools/analysis/visualize_sampling.py IMAGE CONFIG CHECKPOINT --out s.png
        [--boxes 0 1 2 | --queries 5 17] [--per level|head]
        [--encoder-layer K [--query-level L]] [--extent points|image]
        [--panel-size 320] [--device cpu]

For each chosen detection (``--boxes``: indices of the detections, best first; default
the best three of distinct queries, as a query ranks once per class) the last decoder layer's cross-attention is drawn: one row per
detection, one panel per feature level (``--per head``: per head), with the image, the
detected box, the reference point (and box) and every sampling point coloured and sized
by its attention weight. ``--encoder-layer K`` also writes ``<out>_encoder<K>.png`` (K counted from 0): the
encoder layer's self-attention of the token of level ``--query-level`` nearest each
detection's centre. Works for Deformable DETR models on deform_ext's ``MSDeformAttn``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import deform_ext  # noqa: E402,F401  registers components
from deform_ext.apis import CheckpointMismatchError, load_detector  # noqa: E402
from deform_ext.visualization import (collect_sampling, default_detections,  # noqa: E402
                                      draw_sampling)
from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument('--out', required=True, help='PNG file to write')
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument('--boxes', type=int, nargs='+',
                        help='detections to draw, 0 = best (default: the best 3 distinct queries)')
    chosen.add_argument('--queries', type=int, nargs='+', help='decoder queries to draw')
    parser.add_argument('--per', choices=('level', 'head'), default='level',
                        help='one panel per level (default) or per head')
    parser.add_argument('--encoder-layer', type=int,
                        help='also draw this encoder layer (-1: the last)')
    parser.add_argument('--query-level', type=int, default=0,
                        help='level of the encoder token drawn for a detection (default: 0)')
    parser.add_argument('--extent', choices=('points', 'image'), default='points',
                        help='panels show every sampling point (default) or the image only')
    parser.add_argument('--panel-size', type=int, default=320, help='pixels per panel')
    parser.add_argument('--device', default='cpu', help='cpu, cuda ... (default: cpu)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value')
    return parser.parse_args(argv)


def encoder_out_path(out: str, layer: int) -> str:
    """``<out>_encoder<layer>.png`` (``layer`` counted from 0)."""
    root, ext = osp.splitext(out)
    return f'{root}_encoder{layer}{ext or ".png"}'


def main(argv=None) -> dict:
    """Returns {PNG path: (width, height)}."""
    args = parse_args(argv)
    try:
        model = load_detector(args.config, args.checkpoint, device=args.device,
                              cfg_options=args.cfg_options)
        record = collect_sampling(model, args.image, encoder_layer=args.encoder_layer)
        written = {args.out: draw_sampling(record, args.out, boxes=args.boxes,
                                           queries=args.queries, per=args.per,
                                           extent=args.extent, panel_size=args.panel_size)}
        if args.encoder_layer is not None:
            layer = int(record.encoder.name.split('.')[2])  # encoder.layers.<i>.self_attn
            out = encoder_out_path(args.out, layer)
            written[out] = draw_sampling(record, out, source='encoder', boxes=args.boxes,
                                         per=args.per, query_level=args.query_level,
                                         extent=args.extent, panel_size=args.panel_size)
    except (FileNotFoundError, ValueError, KeyError, CheckpointMismatchError) as error:
        sys.exit(f'error: {error}')
    for index in args.boxes or default_detections(record):
        if index < len(record.boxes):
            box = ', '.join(f'{v:.0f}' for v in record.boxes[index])
            print(f'detection {index}: query {record.queries[index]}, score '
                  f'{record.scores[index]:.2f}, box ({box})')
    for out, (width, height) in written.items():
        print(f'{out}: {width}x{height}')
    return written


if __name__ == '__main__':
    main()
