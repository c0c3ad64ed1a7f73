"""Training loops and their data-loading parts."""
from .resumable_epoch_loop import ResumableEpochBasedTrainLoop
from .skippable_batch_sampler import SkippableBatchSampler

__all__ = ['ResumableEpochBasedTrainLoop', 'SkippableBatchSampler']
