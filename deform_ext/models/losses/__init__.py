"""Registered losses."""
from .offset_l1_loss import OffsetL1Loss  # noqa: F401
