"""Compiled ops with pure-PyTorch fallbacks; importing this package needs only torch.

Build the compiled kernels with ``pip install --no-build-isolation -e .``; without
them every op still runs (its reference), and says so once.
"""
from ._extension import set_debug
from .ms_deform_attn import ms_deform_attn, ms_deform_attn_reference

__all__ = ['ms_deform_attn', 'ms_deform_attn_reference', 'set_debug']
