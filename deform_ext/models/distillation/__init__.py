"""Distillation from a DETR-family teacher: the teacher's loading and outputs, and the
losses (the detector is :class:`~deform_ext.models.detectors.DistilledDeformDETR`)."""
from .losses import DistillationLosses
from .teacher import TeacherOutputs, build_teacher, teacher_outputs

__all__ = ['DistillationLosses', 'TeacherOutputs', 'build_teacher', 'teacher_outputs']
