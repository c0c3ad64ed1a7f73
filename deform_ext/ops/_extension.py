"""Loading of the compiled ops (``deform_ext.ops._C``) and the run-time switches.

Importing this module never fails: when the extension is missing (or was built
against another torch), ``EXTENSION_AVAILABLE`` is False and the ops fall back to
their pure-PyTorch references, warning once how to build the fast path.
"""
import os
import warnings

import torch

try:
    from . import _C  # noqa: F401  registers the deform_ext::* ops with the dispatcher
    EXTENSION_AVAILABLE = True
    EXTENSION_ERROR = None
except ImportError as error:  # not built, or an ABI mismatch with this torch
    EXTENSION_AVAILABLE = False
    EXTENSION_ERROR = error

BUILD_HINT = ('build it with `pip install --no-build-isolation -e .` (or `make test`) '
              'in the deform_ext checkout')

_debug = os.environ.get('DEFORM_EXT_DEBUG', '0') not in ('', '0')
_warned = set()


def set_debug(enabled: bool) -> None:
    """Turn on the checks that need a device-to-host sync (on CUDA inputs).

    On CPU these checks always run. The environment variable ``DEFORM_EXT_DEBUG=1``
    sets the initial value.
    """
    global _debug
    _debug = bool(enabled)


def debug_enabled() -> bool:
    """Whether the host-syncing input checks run for CUDA inputs."""
    return _debug


def has_kernel(op_name: str, device_type: str) -> bool:
    """Whether the compiled op ``deform_ext::<op_name>`` has a kernel for a device
    type ('cpu', 'cuda')."""
    if not EXTENSION_AVAILABLE:
        return False
    key = {'cpu': 'CPU', 'cuda': 'CUDA'}.get(device_type)
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(
        f'deform_ext::{op_name}', key)


def warn_fallback_once(op_name: str, device_type: str) -> None:
    """Warn, once per (op, device type), that the slow reference runs instead."""
    if (op_name, device_type) in _warned:
        return
    _warned.add((op_name, device_type))
    if EXTENSION_AVAILABLE:
        reason = f'the compiled extension has no {device_type} kernel for it'
    else:
        reason = 'the compiled extension deform_ext.ops._C is unavailable'
        if EXTENSION_ERROR is not None:
            reason += f' ({EXTENSION_ERROR})'
    warnings.warn(
        f'deform_ext.ops.{op_name}: {reason}; running the slow pure-PyTorch reference '
        f'instead. For the fast path, {BUILD_HINT}.', RuntimeWarning, stacklevel=3)
