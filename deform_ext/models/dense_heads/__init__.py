"""Registered dense heads."""
from .deform_detr_head import DeformDETRHead  # noqa: F401
