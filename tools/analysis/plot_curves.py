"""Loss and mAP curves from mmengine's JSON logs, one or several runs overlaid (PNG).

    python tools/analysis/plot_curves.py RUN [RUN ...] --out curves.png
        [--labels A B ...] [--losses loss loss_cls ...]
        [--metrics coco/bbox_mAP coco/bbox_mAP_50 ...] [--x epoch|iter] [--smooth N]
        [--title T]

RUN is a work dir (its newest ``<timestamp>/vis_data/scalars.json``), a timestamp
folder or the ``scalars.json`` itself. One panel per key that some run logged; the
last value of each metric per run is printed.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from deform_ext.visualization.curves import (  # noqa: E402
    DEFAULT_LOSSES, DEFAULT_METRICS, plot_curves)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('runs', nargs='+', help='work dirs, run folders or scalars.json files')
    parser.add_argument('--out', required=True, help='PNG file to write')
    parser.add_argument('--labels', nargs='+', help='one per run (default: work dir names)')
    parser.add_argument('--losses', nargs='*', default=list(DEFAULT_LOSSES),
                        help='training keys, none for no loss panels (default: %(default)s)')
    parser.add_argument('--metrics', nargs='*', default=list(DEFAULT_METRICS),
                        help='evaluation keys, none for no mAP panels (default: %(default)s)')
    parser.add_argument('--x', choices=('epoch', 'iter'), default='epoch',
                        help='x axis of the training curves (default: epoch)')
    parser.add_argument('--smooth', type=int, default=1,
                        help='moving average window of the training curves')
    parser.add_argument('--title', help='figure title')
    parser.add_argument('--panel-size', type=int, nargs=2, default=(480, 360),
                        metavar=('W', 'H'), help='pixels per panel (default: 480 360)')
    args = parser.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        parser.error(f'{len(args.labels)} --labels for {len(args.runs)} runs')
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    try:
        result = plot_curves(args.runs, args.out, labels=args.labels, losses=args.losses,
                             metrics=args.metrics, axis=args.x, smooth_window=args.smooth,
                             panel_size=tuple(args.panel_size), title=args.title)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'error: {error}')
    width, height = result['size']
    print(f'{args.out}: {width}x{height}, panels {", ".join(result["keys"])}')
    for label, keys in result['missing'].items():
        print(f'  {label} did not log {", ".join(keys)}')
    for label, values in result['last'].items():
        if values:
            print(f'  {label}: ' + ', '.join(f'{k} {v:.3f}' for k, v in values.items()))
    return result


if __name__ == '__main__':
    main()
