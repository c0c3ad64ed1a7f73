"""deform_ext: deformable attention for detection on the OpenMMLab stack.

``import deform_ext.ops`` needs torch alone. Importing the package registers the
OpenMMLab components and installs the compatibility patches of mmengine/mmdet
(``deform_ext.compat``; ``DEFORM_EXT_NO_COMPAT=1`` keeps them off) only when mmdet is
importable, so the op stays usable where the OpenMMLab stack is absent.
"""
import importlib.util

from .version import __version__

__all__ = ['__version__']


def _mmdet_installed() -> bool:
    try:
        return importlib.util.find_spec('mmdet') is not None
    except ImportError:  # an import hook may refuse the package outright
        return False


if _mmdet_installed():
    from . import compat
    from .registry import register_all_modules
    compat.install()
    register_all_modules()
    __all__ += ['register_all_modules']
