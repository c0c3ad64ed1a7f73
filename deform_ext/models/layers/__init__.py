"""Registered layers."""
from .deformable_detr_layers import (DeformableDecoder, DeformableDecoderLayer,  # noqa: F401
                                     DeformableEncoder, DeformableEncoderLayer)
from .ms_deform_attn import MSDeformAttn  # noqa: F401
from .ms_deform_attn_swap import swap_ms_deform_attn, use_deform_ext_ms_deform_attn  # noqa: F401
from .dattention import DAttention  # noqa: F401
from .dat_local_attention import DATLocalAttention  # noqa: F401
from .encoder_proposals import EncoderTokens, encoder_tokens, top_k_tokens  # noqa: F401
from .encoder_pyramid import EncoderPyramid  # noqa: F401
