"""Train a detector from a config, as mmdet's tools/train.py does.

    python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
                                 [--resume [CHECKPOINT]] [--cfg-options k=v ...]
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
    parser = argparse.ArgumentParser(description='Train a detector')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--amp', action='store_true', help='enable mixed precision training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual total batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or from the latest one in the '
                             'work dir when no path is given')
    add_common_arguments(parser)
    return parse_tool_args(parser, argv)


def build_config(args):
    """The config with the command-line options applied."""
    cfg = load_tool_config(args)
    if args.amp:
        enable_amp(cfg)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise KeyError(f'{args.config}: --auto-scale-lr needs auto_scale_lr='
                           'dict(base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def enable_amp(cfg):
    """Switch the optimizer wrapper to mixed precision: deform_ext's
    ``AutocastOptimWrapper`` autocasts on the model's device, CPU included, in the
    config's top-level ``amp_dtype`` ('bfloat16' or 'float16'; unset: float16 with
    CUDA, else bfloat16), with dynamic loss scaling for float16. mmengine's
    ``AmpOptimWrapper`` refuses to start without a GPU."""
    wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
    if wrapper in ('AmpOptimWrapper', 'AutocastOptimWrapper', 'deform_ext.AutocastOptimWrapper'):
        return
    if wrapper != 'OptimWrapper':
        raise ValueError(f'--amp needs optim_wrapper.type OptimWrapper, got {wrapper}')
    cfg.optim_wrapper.type = 'deform_ext.AutocastOptimWrapper'
    cfg.optim_wrapper.dtype = cfg.get('amp_dtype')
    cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')


def main(argv=None):
    run(build_config(parse_args(argv)), 'train')


if __name__ == '__main__':
    main()
