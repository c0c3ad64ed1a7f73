"""Registered hooks."""
from .slurm_preemption_hook import SlurmPreemptionHook  # noqa: F401
from .progressive_sampling_points_hook import ProgressiveSamplingPointsHook  # noqa: F401
from .pipeline_epoch_hook import PipelineEpochHook  # noqa: F401
