"""A batch sampler that can leave out the first batches of its next pass."""
from torch.utils.data import BatchSampler

from deform_ext.registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class SkippableBatchSampler:
    """Yields the batches of an inner batch sampler; ``skip_next_pass(n)`` drops the
    first ``n`` batches of the next pass.

    Only the indices of the dropped batches are drawn (so the order of the rest is the
    one an uninterrupted pass would give); no data is loaded for them. ``len()`` is the
    full pass, so progress logging keeps its denominator. Indices are drawn in the main
    process, so this works with ``num_workers > 0`` and persistent workers.

    Args:
        sampler (Sampler): the index sampler (mmengine passes the built one).
        batch_size (int): images per batch.
        batch_sampler (dict, optional): the inner batch sampler config (e.g. mmdet's
            ``AspectRatioBatchSampler``); torch's ``BatchSampler`` when None.
        drop_last (bool): for torch's ``BatchSampler``. Defaults to False.
    """

    def __init__(self, sampler, batch_size, batch_sampler=None, drop_last=False):
        if batch_sampler is None:
            self.batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        else:
            self.batch_sampler = DATA_SAMPLERS.build(
                batch_sampler, default_args=dict(sampler=sampler, batch_size=batch_size))
        self.sampler = sampler
        self._skip = 0

    def skip_next_pass(self, batches: int) -> None:
        self._skip = batches

    def __iter__(self):
        iterator = iter(self.batch_sampler)
        skip, self._skip = self._skip, 0
        for _ in range(skip):
            next(iterator, None)
        yield from iterator

    def __len__(self):
        return len(self.batch_sampler)
