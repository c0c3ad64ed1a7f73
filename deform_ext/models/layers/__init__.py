"""Registered layers."""
from .dattention import DAttention  # noqa: F401
from .dat_local_attention import DATLocalAttention  # noqa: F401
