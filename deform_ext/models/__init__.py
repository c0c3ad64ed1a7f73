"""Registered models: layers, backbones, necks, plugins, heads, detectors and losses."""
from . import backbones, dense_heads, detectors, layers, losses, necks, plugins  # noqa: F401
from .quiet_init import init_weights_quietly

__all__ = ['init_weights_quietly']
