"""The configs shipped in the repository (``configs/`` and ``projects/*/configs/``)."""
import glob
import os.path as osp
from typing import Any, List

from mmengine.config import Config

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG_ROOT = osp.join(REPO_ROOT, 'configs')


def config_path(relative: str) -> str:
    """The absolute path of ``configs/<relative>``; ``relative`` may be a glob pattern
    that matches exactly one file (e.g. ``'demo/*16e*.py'``)."""
    matches = glob.glob(osp.join(CONFIG_ROOT, relative))
    if len(matches) != 1:
        raise FileNotFoundError(
            f'configs/{relative} matches {len(matches)} files under {CONFIG_ROOT}, not one '
            '(deform_ext.testing reads the configs of a repository checkout)')
    return matches[0]


def get_config(relative: str) -> Config:
    """``Config.fromfile`` of ``configs/<relative>`` (see :func:`config_path`)."""
    return Config.fromfile(config_path(relative))


def shipped_configs() -> List[str]:
    """Every config a user can train: ``configs/**/*.py`` and
    ``projects/*/configs/**/*.py``, except the ``_base_`` parts, sorted."""
    paths = [path for pattern in ('configs/**/*.py', 'projects/*/configs/**/*.py')
             for path in glob.glob(osp.join(REPO_ROOT, pattern), recursive=True)]
    return sorted(path for path in paths if '_base_' not in path.split(osp.sep))


def without_init_cfg(node: Any) -> Any:
    """A copy of a config node with every ``init_cfg`` removed: no pretrained weights
    to download, the built model initialised as configured otherwise."""
    if isinstance(node, dict):
        return {k: without_init_cfg(v) for k, v in node.items() if k != 'init_cfg'}
    if isinstance(node, (list, tuple)):
        return type(node)(without_init_cfg(v) for v in node)
    return node
