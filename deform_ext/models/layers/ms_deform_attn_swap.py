"""Run any mmdet model built on mmcv's ``MultiScaleDeformableAttention`` on our op.

mmdet's layers construct mmcv's class directly (``MultiScaleDeformableAttention(**cfg)``
inside Deformable DETR, DINO, DDQ-DETR and Mask2Former's pixel decoder), so no
registry entry can redirect them. The switch is a registered *builder*:

.. code-block:: python

    # derived from any mmdet config; the one line:
    model = dict(type='deform_ext.UseDeformExtMSDA', base_type='DINO')
    # or nested:  model = dict(type='deform_ext.UseDeformExtMSDA', model=dict(type='DINO', ...))

It builds the model exactly as the config says (``base_type`` plus every other key
of ``model``, or the nested ``model``), then replaces each mmcv
``MultiScaleDeformableAttention`` by :class:`MSDeformAttn` with the same
hyper-parameters and a copy of its weights, and returns **the model itself** (not a
wrapper). Why this shape:

- explicit: the config says what runs; nothing changes on import (a patch of mmcv
  triggered by ``custom_imports`` would silently change every model in the process);
- complete: it runs wherever the config's model is built (``tools/train.py``,
  ``tools/test.py``, ``init_detector``, tests), before weight init, checkpoint
  loading, the optimizer and DDP wrapping, which a runner hook would come after;
- checkpoint-compatible: no wrapper module, so the ``state_dict`` keys are the
  model's own, and ``MSDeformAttn`` has mmcv's parameter names and shapes:
  checkpoints of the unswitched model load into the switched one and back;
- the random stream is untouched (the swap forks the RNG), so a seeded build gives
  the same weights with and without the switch; and ``MSDeformAttn`` subclasses
  mmcv's class, so mmdet's ``isinstance`` checks in ``init_weights`` still apply.

:func:`swap_ms_deform_attn` does the same on an already-built module.
"""
import copy
from typing import Optional

import torch
from mmcv.ops import MultiScaleDeformableAttention
from torch import nn

from deform_ext.registry import MODELS
from .ms_deform_attn import MSDeformAttn


def ms_deform_attn_from_mmcv(module: MultiScaleDeformableAttention) -> MSDeformAttn:
    """An :class:`MSDeformAttn` with ``module``'s settings, weights, device, dtype
    and train/eval mode."""
    embed_dims = module.embed_dims
    with torch.random.fork_rng(devices=[]):
        ours = MSDeformAttn(
            embed_dims=embed_dims, num_heads=module.num_heads, num_levels=module.num_levels,
            num_points=module.num_points, im2col_step=module.im2col_step,
            dropout=module.dropout.p, batch_first=module.batch_first,
            norm_cfg=module.norm_cfg, init_cfg=copy.deepcopy(module.init_cfg),
            value_proj_ratio=module.value_proj.out_features / embed_dims)
    reference = next(module.parameters())
    ours.to(device=reference.device, dtype=reference.dtype)
    ours.load_state_dict(module.state_dict())
    ours._is_init = getattr(module, '_is_init', False)
    ours.train(module.training)
    return ours


def swap_ms_deform_attn(model: nn.Module) -> nn.Module:
    """Replace every mmcv ``MultiScaleDeformableAttention`` in ``model`` (in place)
    by an :class:`MSDeformAttn` with the same weights; returns ``model`` (or the
    replacement when ``model`` itself is one). Subclasses of mmcv's class other
    than ours are left alone."""
    if type(model) is MultiScaleDeformableAttention:
        return ms_deform_attn_from_mmcv(model)
    replaced = {}
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is MultiScaleDeformableAttention:
                if id(child) not in replaced:  # a module shared by two parents stays shared
                    replaced[id(child)] = ms_deform_attn_from_mmcv(child)
                setattr(parent, name, replaced[id(child)])
    return model


@MODELS.register_module(name='UseDeformExtMSDA')
def use_deform_ext_ms_deform_attn(model: Optional[dict] = None, base_type=None,
                                  **kwargs) -> nn.Module:
    """Build a model, then run its deformable attention on deform_ext's op.

    Args:
        model (dict, optional): the model config (nested form).
        base_type (str or type, optional): the model's own ``type`` (flat form: the
            other keyword arguments are the rest of its config).

    Returns:
        nn.Module: the built model with :func:`swap_ms_deform_attn` applied.
    """
    if (model is None) == (base_type is None):
        raise ValueError("UseDeformExtMSDA needs exactly one of model=dict(...) or "
                         "base_type='<the model type>'")
    if model is None:
        model = dict(type=base_type, **kwargs)
    elif kwargs:
        raise ValueError(f'UseDeformExtMSDA got unexpected keys {sorted(kwargs)} with model=')
    return swap_ms_deform_attn(MODELS.build(model))
