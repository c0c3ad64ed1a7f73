"""Evaluate a trained detector, as mmdet's tools/test.py does.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                                           [--show-dir DIR] [--cfg-options k=v ...]
                                           [--launcher none|pytorch|slurm|mpi]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # for projects/

import deform_ext  # noqa: E402,F401  registers components and compatibility fixes
from deform_ext.utils.tool_config import (add_common_arguments, load_tool_config,  # noqa: E402
                                          parse_tool_args, run)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and evaluate) a detector')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the predictions to this pickle file')
    parser.add_argument('--show-dir', help='draw predictions into this dir under the '
                                           'timestamped work dir')
    add_common_arguments(parser)
    return parse_tool_args(parser, argv)


def build_config(args):
    """The config with the checkpoint and command-line options applied."""
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'checkpoint file {args.checkpoint} does not exist')
    cfg = load_tool_config(args)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        visualization = cfg.default_hooks.visualization
        visualization.draw = True
        visualization.test_out_dir = args.show_dir
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise ValueError(f'--out must be a .pkl or .pickle file, got {args.out}')
        evaluators = cfg.test_evaluator
        evaluators = list(evaluators) if isinstance(evaluators, (list, tuple)) else [evaluators]
        cfg.test_evaluator = evaluators + [dict(type='DumpDetResults', out_file_path=args.out)]
    return cfg


def main(argv=None):
    return run(build_config(parse_args(argv)), 'test')


if __name__ == '__main__':
    main()
