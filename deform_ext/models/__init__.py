"""Registered models: layers, backbones, necks, plugins, heads, detectors and losses."""
from . import backbones, dense_heads, detectors, layers, losses, necks, plugins  # noqa: F401
