"""Helpers shared by the package and its tools: config loading and checking, atomic
file writes, the end of a distributed run."""
from .config_check import check_top_level_keys, load_config

__all__ = ['check_top_level_keys', 'load_config']
