"""Registered detectors."""
from .deform_detr import DeformDETR  # noqa: F401
