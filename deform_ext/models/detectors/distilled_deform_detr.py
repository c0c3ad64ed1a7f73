"""``DistilledDeformDETR``: a :class:`DeformDETR` student that learns from a frozen
DETR-family teacher while it trains.

A student config becomes a distilled one by its ``type`` and three keys::

    model = dict(student_model,  # any DeformDETR config of ours
                 type='DistilledDeformDETR',
                 teacher_cfg='configs/deformable_detr/detr_r18-tiny_1xb8-120e_synthetic.py',
                 teacher_ckpt='work_dirs/teacher/epoch_120.pth',
                 distill=dict(match=dict(), extra_targets=dict(score_thr=0.5),
                              feature=dict(stride=32)))

The teacher (any mmdet DETR-family detector: DETR, Conditional / DAB-DETR, Deformable
DETR, DINO, ours) is built from ``teacher_cfg`` (a config file or a model dict) and
loaded from ``teacher_ckpt`` through the weights-only checkpoint path; it runs in eval
mode under ``no_grad`` (under bf16 autocast with ``teacher_dtype='bfloat16'``),
predict-style, on the student's images converted to its own preprocessing. It is
held outside the module tree: not in ``parameters()`` (DDP needs no
``find_unused_parameters``), ``state_dict()`` or saved checkpoints; ``.to()`` /
``.cuda()`` move it along. ``state_dict()`` also leaves out the feature adapter, so a
checkpoint is the student's alone and loads into the plain student config with no
missing or unexpected keys (``tools/test.py`` with the student config needs no
teacher). Resuming restores the student, optimizer and schedule; the adapter (a 1x1
convolution used only by the feature loss) restarts from its initialisation.

The losses (:mod:`deform_ext.models.distillation.losses`) are added to the
student's own, under ``loss_distill_*`` and ``loss_teacher_*``.
"""
from typing import Optional, Union

import torch
from mmdet.structures import SampleList
from torch import Tensor

from deform_ext.registry import MODELS
from ..distillation import DistillationLosses, build_teacher, teacher_outputs
from ..distillation.encoder_outputs import encoder_memory, is_two_stage, proposal_tokens
from ..distillation.losses import StudentOutputs
from ..distillation.teacher import preprocessor_conversion
from .captured_outputs import captured_outputs
from .deform_detr import DeformDETR

ADAPTER_PREFIX = 'distill_losses.'


@MODELS.register_module()
class DistilledDeformDETR(DeformDETR):
    """A DeformDETR student with a frozen teacher (see the module docstring).

    Args:
        teacher_cfg: the teacher's config file (its ``model``) or model dict.
        teacher_ckpt: the teacher's checkpoint file.
        distill: the losses' options: ``match``, ``extra_targets``, ``feature``,
            ``memory``, ``proposals`` (each a dict, None or absent: off; see
            DistillationLosses; ``proposals`` needs a two-stage student and teacher).
        teacher_dtype: 'bfloat16' or 'float16' to run the teacher under autocast.
        *args, **kwargs: the student's, as :class:`DeformDETR`.
    """

    def __init__(self, *args, teacher_cfg: Union[str, dict], teacher_ckpt: str,
                 distill: dict, teacher_dtype: Optional[str] = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        teacher = build_teacher(teacher_cfg, teacher_ckpt)
        self.__dict__['teacher'] = teacher  # outside _modules: see the module docstring
        self.__dict__['_teacher_input'] = preprocessor_conversion(self, teacher)
        self.teacher_dtype = getattr(torch, teacher_dtype) if teacher_dtype else None
        self.distill_losses = DistillationLosses(
            self.embed_dims, teacher.embed_dims, **distill)
        if self.distill_losses.proposals:
            for who, detector in (('student', self), ('teacher', teacher)):
                if not is_two_stage(detector):
                    raise ValueError(f'distillation proposals: the {who} '
                                     f'({type(detector).__name__}) is not two-stage, so it '
                                     'scores no encoder tokens; drop distill.proposals')

    def _apply(self, fn, recurse=True):
        """Device and dtype moves reach the teacher too."""
        super()._apply(fn, recurse)
        if 'teacher' in self.__dict__:  # None during DeformDETR.__init__
            self.teacher._apply(fn, recurse)
        return self

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()
        return self

    def state_dict(self, *args, destination=None, prefix: str = '', keep_vars: bool = False):
        """The student's weights alone (no adapter, no teacher)."""
        state = super().state_dict(*args, destination=destination, prefix=prefix,
                                   keep_vars=keep_vars)
        for key in [k for k in state if k.startswith(prefix + ADAPTER_PREFIX)]:
            del state[key]
        return state

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> dict:
        """The student's losses plus the distillation losses."""
        # the neck's features, the encoder's memory and the head's per-layer (logits,
        # boxes), as computed
        features = self.neck if self.with_neck else self.backbone
        modules = dict(features=features, encoder=self.encoder, head=self.bbox_head)
        with captured_outputs(modules) as captured:
            losses = super().loss(batch_inputs, batch_data_samples)
        teacher = teacher_outputs(self.teacher, batch_inputs, batch_data_samples,
                                  self._teacher_input, self.teacher_dtype)
        logits, boxes = captured['head'].output
        feature_maps = captured['features'].output
        encoder = captured['encoder']
        memory = encoder_memory(encoder.output, encoder.kwargs, feature_maps[-1])
        tokens = proposal_tokens(self, memory) if self.distill_losses.proposals else None
        student = StudentOutputs(logits[-1], boxes[-1], feature_maps, memory, tokens)
        losses.update(self.distill_losses(student, teacher, batch_data_samples, self.bbox_head))
        return losses
