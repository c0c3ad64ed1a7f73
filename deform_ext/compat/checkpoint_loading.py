"""Patch: mmengine-written checkpoints load under torch >= 2.6 with ``weights_only`` on.

torch 2.6 made ``torch.load(weights_only=True)`` the default; mmengine 0.10 does not
say which types its checkpoints hold, so every checkpoint with a message hub fails
to load (resume, ``load_from``, teacher models). Instead of turning the safety off we
allow exactly the extra types that mmengine checkpoints contain, for our loads only
(torch's global allow-list is left as it was): its ``HistoryBuffer`` and the numpy
arrays, dtypes and scalars that it holds. Anything
else, in particular a global that would run code, is still refused, and the error
names the file and the refused global.

One entry needs care: a ``HistoryBuffer`` pickles its statistics methods as
``getattr(HistoryBuffer, 'mean')``. Allowing ``builtins.getattr`` itself would let a
file reach any attribute of any allowed object (and from there, code), so the name
``builtins.getattr`` is bound to a stand-in that only returns HistoryBuffer's
registered statistics methods.
"""
import os.path as osp
import pickle
import re

import numpy as np
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from .patch import Patch

# HistoryBuffer registers these on first construction; others via register_statistics.
_HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')
_NUMPY_DTYPE_NAMES = ('bool', 'uint8', 'int8', 'int16', 'int32', 'int64',
                      'float16', 'float32', 'float64')


def history_buffer_getattr(owner, name: str):
    """``getattr`` restricted to what a pickled ``HistoryBuffer`` asks for.

    Raises:
        pickle.UnpicklingError: for any other object or attribute.
    """
    allowed = {*_HISTORY_BUFFER_STATISTICS, *HistoryBuffer._statistics_methods}
    if owner is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refused getattr({getattr(owner, "__name__", type(owner).__name__)}, {name!r}): '
        'checkpoints may only name HistoryBuffer statistics methods')


def mmengine_checkpoint_globals() -> list:
    """The globals, beyond torch's defaults, that an mmengine checkpoint pickles."""
    multiarray = np._core.multiarray if hasattr(np, '_core') else np.core.multiarray
    dtype_classes = [type(np.dtype(name)) for name in _NUMPY_DTYPE_NAMES]
    return [HistoryBuffer, multiarray._reconstruct, multiarray.scalar, np.ndarray,
            np.dtype, *dtype_classes, (history_buffer_getattr, 'builtins.getattr')]


def load_from_local(filename: str, map_location=None):
    """mmengine's local-file checkpoint loader, with refusals that name the file.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        pickle.UnpicklingError: the file pickles a global outside the allowed set;
            the message names the file and the global.
    """
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'checkpoint file {filename} can not be found.')
    try:
        with torch.serialization.safe_globals(mmengine_checkpoint_globals()):
            return torch.load(filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise pickle.UnpicklingError(
            f'refused to load checkpoint {filename}: {_refusal_reason(str(error))}. '
            'Load only checkpoints you trust; if you trust this one, allow the type '
            'with torch.serialization.add_safe_globals([...]).') from error


def _refusal_reason(message: str) -> str:
    """What torch's weights-only unpickler refused, in one phrase."""
    found = re.search(r'GLOBAL (\S+)', message)
    if found:
        return (f'it pickles {found.group(1)}, which is not a type that mmengine '
                'checkpoints hold, so loading it could run code')
    found = re.search(r"refused getattr\([^)]*\)", message)
    if found:
        return f'it asks for {found.group(0)[len("refused "):]}, which could reach code'
    return f'weights-only unpickling failed ({message.splitlines()[0]})'


PATCH = Patch(
    'checkpoint_loading', 'mmengine', '0.10.',
    lambda: [(CheckpointLoader._schemes, '', load_from_local)],
    purpose='loading mmengine checkpoints (resume, load_from) under torch >= 2.6')
