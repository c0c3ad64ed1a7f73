"""The frozen teacher of a distilled detector: built from a config, its weights loaded
through the safe checkpoint path, run in eval mode under ``no_grad`` without a loss.

The teacher is kept outside the student's module tree (see
:class:`~deform_ext.models.detectors.DistilledDeformDETR`), so it is in neither
``parameters()`` nor ``state_dict()`` nor any saved checkpoint.
"""
from typing import NamedTuple, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.runner.checkpoint import CheckpointLoader
from mmdet.structures import SampleList
from torch import Tensor, nn

from deform_ext.registry import MODELS, build_in_scope
from ..detectors.captured_outputs import captured_outputs
from ..layers.encoder_proposals import EncoderTokens
from .encoder_outputs import EncoderMemory, encoder_memory, is_two_stage, proposal_tokens


class TeacherOutputs(NamedTuple):
    """What the student learns from, for a batch of bs images.

    probs: (bs, num_queries, num_classes) class probabilities at temperature 1
        (sigmoid heads: per-class sigmoid; softmax heads: the foreground classes
        of the softmax over classes + background).
    logits: (bs, num_queries, C) the raw classifier outputs (C = num_classes, plus
        one for softmax heads' background).
    boxes: (bs, num_queries, 4) normalised (cx, cy, w, h).
    features: the teacher's neck outputs, each (bs, channels, h, w).
    sigmoid: whether ``logits`` are per-class sigmoid logits.
    memory: the teacher's encoder output.
    tokens: every encoder token as a proposal (two-stage teachers), else None.
    """
    probs: Tensor
    logits: Tensor
    boxes: Tensor
    features: Tuple[Tensor, ...]
    sigmoid: bool
    memory: EncoderMemory
    tokens: Optional[EncoderTokens]


def build_teacher(teacher_cfg: Union[str, dict], teacher_ckpt: str) -> nn.Module:
    """The teacher detector of ``teacher_cfg`` (a config file, whose ``model`` is
    used, or a model dict) with the weights of ``teacher_ckpt``, in eval mode,
    parameters frozen.

    Raises:
        FileNotFoundError: ``teacher_ckpt`` does not exist.
        ValueError: the checkpoint's weights do not fit the teacher (names the file
            and the first missing, unexpected and mis-shaped keys).
    """
    model_cfg = Config.fromfile(teacher_cfg).model if isinstance(teacher_cfg, str) \
        else teacher_cfg
    model_cfg = dict(model_cfg)
    model_cfg.pop('init_cfg', None)  # the checkpoint sets every weight
    teacher = build_in_scope(MODELS, model_cfg)
    checkpoint = CheckpointLoader.load_checkpoint(teacher_ckpt, map_location='cpu')
    state = checkpoint.get('state_dict', checkpoint)
    state = {key[len('module.'):] if key.startswith('module.') else key: value
             for key, value in state.items()}
    problems = state_dict_mismatch(teacher.state_dict(), state)
    if problems:
        raise ValueError(f'teacher checkpoint {teacher_ckpt} does not fit the teacher '
                         f'config ({type(teacher).__name__}): {problems}')
    teacher.load_state_dict(state, strict=True)
    teacher.eval()
    teacher.requires_grad_(False)
    return teacher


def state_dict_mismatch(expected: dict, found: dict, shown: int = 5) -> str:
    """'' when ``found`` has exactly ``expected``'s keys and shapes, else which keys
    are missing, unexpected or mis-shaped (the first ``shown`` of each)."""
    missing = [key for key in expected if key not in found]
    unexpected = [key for key in found if key not in expected]
    shapes = [f'{key} {tuple(found[key].shape)} vs model {tuple(expected[key].shape)}'
              for key in expected if key in found and found[key].shape != expected[key].shape]
    parts = [f'{len(keys)} {what} (first: {keys[:shown]})'
             for what, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                                ('shape mismatches', shapes)) if keys]
    return '; '.join(parts)


def preprocessor_conversion(student: nn.Module, teacher: nn.Module
                            ) -> Optional[Tuple[Tensor, Tensor, bool]]:
    """How to turn the student's preprocessed images into the teacher's: (scale,
    shift, flip_channels) with ``teacher_input = flip(student_input) * scale +
    shift`` per channel, or None when the two preprocessors agree."""
    s, t = student.data_preprocessor, teacher.data_preprocessor
    flip = bool(s._channel_conversion) != bool(t._channel_conversion)
    s_mean, s_std = (s.mean, s.std) if s._enable_normalize else (torch.zeros(3, 1, 1),
                                                                 torch.ones(3, 1, 1))
    t_mean, t_std = (t.mean, t.std) if t._enable_normalize else (torch.zeros(3, 1, 1),
                                                                 torch.ones(3, 1, 1))
    if flip:  # the teacher's channel c is the student's channel 2 - c
        s_mean, s_std = s_mean.flip(0), s_std.flip(0)
    scale, shift = s_std / t_std, (s_mean - t_mean) / t_std
    if not flip and torch.allclose(scale, torch.ones_like(scale)) \
            and torch.allclose(shift, torch.zeros_like(shift)):
        return None
    return scale, shift, flip


@torch.no_grad()
def teacher_outputs(teacher: nn.Module, images: Tensor, samples: SampleList,
                    conversion: Optional[Tuple[Tensor, Tensor, bool]],
                    dtype: Optional[torch.dtype] = None) -> TeacherOutputs:
    """The teacher's last decoder layer, neck features and encoder output on the
    student's images (bs, 3, H, W) (converted to the teacher's preprocessing),
    predict-style: no loss, no denoising queries; under autocast to ``dtype`` when
    given."""
    if conversion is not None:
        scale, shift, flip = conversion
        images = (images.flip(1) if flip else images) * scale.to(images) + shift.to(images)
    autocast = torch.autocast(images.device.type, dtype=dtype, enabled=dtype is not None)
    with autocast, captured_outputs(dict(encoder=teacher.encoder)) as captured:
        features = teacher.extract_feat(images)
        head_inputs = teacher.forward_transformer(features, samples)
        inputs = {key: head_inputs[key] for key in ('hidden_states', 'references')
                  if key in head_inputs}
        logits, boxes = teacher.bbox_head(**inputs)
        encoder = captured['encoder']
        memory = encoder_memory(encoder.output, encoder.kwargs, features[-1])
        tokens = proposal_tokens(teacher, memory) if is_two_stage(teacher) else None
    logits, boxes = logits[-1].float(), boxes[-1].float()
    sigmoid = bool(teacher.bbox_head.loss_cls.use_sigmoid)
    memory = memory._replace(memory=memory.memory.float())
    return TeacherOutputs(class_probabilities(logits, sigmoid, 1.0), logits, boxes,
                          tuple(f.float() for f in features), sigmoid, memory, tokens)


def class_probabilities(logits: Tensor, sigmoid: bool, temperature: float) -> Tensor:
    """(..., C) logits -> (..., num_classes) probabilities at ``temperature``."""
    logits = logits / temperature
    return logits.sigmoid() if sigmoid else logits.softmax(-1)[..., :-1]


def binary_kl(teacher: Tensor, student_logits: Tensor) -> Tensor:
    """(n, C) teacher probabilities, (n, C) student logits -> (n,) sum over classes
    of KL(Bernoulli(teacher) || Bernoulli(sigmoid(student_logits)))."""
    eps = 1e-6
    t = teacher.clamp(eps, 1 - eps)
    log_s = F.logsigmoid(student_logits)
    log_not_s = F.logsigmoid(-student_logits)
    kl = t * (t.log() - log_s) + (1 - t) * ((1 - t).log() - log_not_s)
    return kl.sum(-1)
