"""Registered dense heads."""
from .deform_detr_head import DeformDETRHead  # noqa: F401
from .encoder_rpn_head import EncoderRPNHead  # noqa: F401
from .encoder_aux_heads import EncoderAuxHeads  # noqa: F401
