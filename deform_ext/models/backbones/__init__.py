"""Registered backbones."""
from .dat import DAT  # noqa: F401
