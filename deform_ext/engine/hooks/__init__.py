"""Registered hooks."""
from .slurm_preemption_hook import SlurmPreemptionHook  # noqa: F401
