"""Generate the synthetic COCO-format shapes data set and print its statistics.

    python tools/data/generate_synthetic_coco.py --out-dir data/synthetic_coco

Nothing is regenerated when ``OUT_DIR/manifest.json`` records a complete generation
with the same arguments and generator version, unless ``--force`` is given.
"""
import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from deform_ext.datasets.synthetic_coco import generate_synthetic_coco  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out-dir', default='data/synthetic_coco',
                        help='output directory (default: %(default)s)')
    parser.add_argument('--num-train', type=int, default=300,
                        help='training images (default: %(default)s)')
    parser.add_argument('--num-val', type=int, default=100,
                        help='validation images (default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0,
                        help='random seed (default: %(default)s)')
    parser.add_argument('--image-size', type=int, nargs='+', default=[256],
                        metavar='SIDE',
                        help='image side in pixels, or LOW HIGH to draw each '
                             "image's width and height from (default: 256)")
    parser.add_argument('--force', action='store_true',
                        help='regenerate even when the manifest matches')
    args = parser.parse_args(argv)
    if len(args.image_size) > 2:
        parser.error('--image-size takes one side or a LOW HIGH pair')
    return args


def format_summary(summary: dict) -> str:
    """The summary of generate_synthetic_coco as an aligned text table."""
    splits = summary['splits']
    rows = [('', *splits), ('images', *(s['images'] for s in splits.values())),
            ('objects', *(s['objects'] for s in splits.values())),
            ('objects/image min-mean-max', *(
                '{min}-{mean}-{max}'.format(**s['objects_per_image'])
                for s in splits.values()))]
    first = next(iter(splits.values()))
    for group, title in (('per_class', 'objects per class'),
                         ('size_buckets', 'objects per COCO size (area)')):
        rows.append((title,))
        rows += [(f'  {key}', *(s[group][key] for s in splits.values()))
                 for key in first[group]]
    width = max(len(row[0]) for row in rows)
    return '\n'.join((f'{row[0]:<{width}}'
                      + ''.join(f'{value!s:>12}' for value in row[1:])).rstrip()
                     for row in rows)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    image_size = args.image_size[0] if len(args.image_size) == 1 else args.image_size
    summary = generate_synthetic_coco(
        args.out_dir, num_train=args.num_train, num_val=args.num_val,
        image_size=image_size, seed=args.seed, reuse_existing=not args.force)
    if summary['reused']:
        print(f'{args.out_dir}: up to date (manifest matches), nothing generated')
    else:
        print(f'{args.out_dir}: generated in {summary["seconds"]} s')
    print(format_summary(summary))
    return summary


if __name__ == '__main__':
    main()
