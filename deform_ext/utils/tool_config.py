"""What tools/train.py and tools/test.py share: common flags, config set-up, runner."""
import argparse
import os
import os.path as osp
import traceback

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from .config_check import check_top_level_keys, load_config
from .process_group import end_process_group


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--work-dir``, ``--cfg-options``, ``--launcher`` and ``--local-rank``."""
    parser.add_argument('--work-dir', help='the dir to save logs, checkpoints and metrics')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, key=value (xxx=yyy format)')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)


def parse_tool_args(parser: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def load_tool_config(args: argparse.Namespace) -> Config:
    """The config named by ``args.config`` with the common flags applied.

    The work dir is ``--work-dir``, else the config's own, else
    ``./work_dirs/<config name>``, as in mmdet.
    """
    cfg = load_config(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
        check_top_level_keys(cfg, source='--cfg-options')
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def build_runner(cfg: Config) -> Runner:
    """A Runner, or the config's own ``runner_type``."""
    return RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)


def run(cfg: Config, stage: str):
    """Build the runner, run ``stage`` (``'train'`` or ``'test'``) and return what it
    returns; then release the runner and end the process group (see
    ``deform_ext.utils.process_group``), also when the stage raises or exits."""
    runner = build_runner(cfg)
    try:
        return getattr(runner, stage)()
    except BaseException as error:
        traceback.clear_frames(error.__traceback__)  # the unwound frames hold the runner
        raise
    finally:
        del runner
        end_process_group()
