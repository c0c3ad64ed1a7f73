"""Registered detectors."""
from .deform_detr import DeformDETR  # noqa: F401
from .distilled_deform_detr import DistilledDeformDETR  # noqa: F401
from .aux_detr import DeformableDETRWithAux, DINOWithAux  # noqa: F401
