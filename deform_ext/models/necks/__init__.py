"""Registered necks."""
from .dat_fpn import DATFPN  # noqa: F401
