"""Registered data transforms."""
from .object_bank import ObjectBank
from .small_object_copy_paste import SmallObjectCopyPaste

__all__ = ['ObjectBank', 'SmallObjectCopyPaste']
