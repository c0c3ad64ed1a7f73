"""Registered optimizer wrappers."""
from .autocast_optim_wrapper import AutocastOptimWrapper  # noqa: F401
