"""Registered plugins."""
from .dattention_plugin import DAttentionPlugin  # noqa: F401
