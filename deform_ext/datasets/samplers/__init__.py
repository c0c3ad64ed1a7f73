"""Registered data samplers."""
from .curriculum_sampler import CurriculumSampler, difficulty_scores

__all__ = ['CurriculumSampler', 'difficulty_scores']
