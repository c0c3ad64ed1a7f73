"""An epoch-based training loop that resumes a mid-epoch checkpoint where it stopped."""
import copy
import logging

from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from deform_ext.registry import LOOPS
from .skippable_batch_sampler import SkippableBatchSampler

# what the loop keeps in the message hub, which every checkpoint saves
EPOCH_KEY = 'train_epoch_in_progress'
EPOCH_START_KEY = 'train_epoch_start_iter'
EPOCH_LENGTH_KEY = 'train_iters_per_epoch'
SAMPLER_SEED_KEY = 'train_sampler_seed'


def with_skippable_batches(dataloader_cfg: dict) -> dict:
    """``dataloader_cfg`` with its batch sampler wrapped in ``SkippableBatchSampler``."""
    cfg = copy.deepcopy(dataloader_cfg)
    cfg['batch_sampler'] = dict(type='deform_ext.SkippableBatchSampler',
                                batch_sampler=cfg.pop('batch_sampler', None),
                                drop_last=cfg.pop('drop_last', False))
    return cfg


@LOOPS.register_module()
class ResumableEpochBasedTrainLoop(EpochBasedTrainLoop):
    """``EpochBasedTrainLoop`` that continues an interrupted epoch on resume.

    mmengine restarts the epoch of a checkpoint taken mid-epoch (a preemption, an
    iteration-interval checkpoint) from its first batch, with a new shuffling order
    when no seed is configured: some images are seen twice in that epoch, others not
    at all. This loop keeps in the message hub (saved with every checkpoint) the
    running epoch, the iteration at which it began, the epoch length and the sampler's
    seed. Resuming, it gives the sampler its seed back and skips the batches already
    trained, drawing only their indices; batch indices continue where they stopped.

    When that is impossible it says so and restarts the epoch, as mmengine does: the
    checkpoint was written by another loop, the epoch length changed, or the data
    loader was passed built (its batch sampler cannot be wrapped).

    Arguments as ``EpochBasedTrainLoop``; ``dataloader`` as a config dict is built with
    a ``SkippableBatchSampler`` around its batch sampler.
    """

    def __init__(self, runner, dataloader, max_epochs, **kwargs):
        if isinstance(dataloader, dict):
            dataloader = with_skippable_batches(dataloader)
        super().__init__(runner, dataloader, max_epochs, **kwargs)
        self._skip = 0

    def run(self):
        """Train; after a resume, first finish the interrupted epoch."""
        hub = self.runner.message_hub
        sampler = getattr(self.dataloader.batch_sampler, 'sampler', None)
        if self._iter > 0:  # resumed: the run's shuffling order, then the rest of its epoch
            if hub.get_info(SAMPLER_SEED_KEY) is not None and hasattr(sampler, 'seed'):
                sampler.seed = hub.get_info(SAMPLER_SEED_KEY)
            self._skip = self._batches_already_trained()
        elif hasattr(sampler, 'seed'):
            hub.update_info(SAMPLER_SEED_KEY, sampler.seed)
        hub.update_info(EPOCH_LENGTH_KEY, len(self.dataloader))
        return super().run()

    def _batches_already_trained(self) -> int:
        """How many batches of the resumed epoch were trained before the checkpoint.

        0 for a checkpoint of a finished epoch (its ``meta['epoch']`` counts it, so
        it is not the epoch in progress); all of them for one saved after the last
        iteration but before the epoch's end (the epoch then just ends).
        """
        hub = self.runner.message_hub
        start, length = hub.get_info(EPOCH_START_KEY), hub.get_info(EPOCH_LENGTH_KEY)
        if start is None or hub.get_info(EPOCH_KEY) != self._epoch or self._iter <= start:
            return 0
        done = self._iter - start
        reason = None
        if length != len(self.dataloader):
            reason = f'the epoch has {len(self.dataloader)} iterations now, not {length}'
        elif not isinstance(self.dataloader.batch_sampler, SkippableBatchSampler):
            reason = 'the data loader was passed built, so its batches cannot be skipped'
        if reason:
            print_log(f'resumed {done} iterations into epoch {self._epoch + 1}, but '
                      f'{reason}: the epoch restarts from its first batch',
                      logger='current', level=logging.WARNING)
            return 0
        print_log(f'continuing epoch {self._epoch + 1} after its first {done} of '
                  f'{length} iterations', logger='current')
        return done

    def run_epoch(self) -> None:
        """Iterate one epoch, or the rest of the interrupted one."""
        skip, self._skip = self._skip, 0
        if skip:
            self.dataloader.batch_sampler.skip_next_pass(skip)
        else:
            self.runner.message_hub.update_info(EPOCH_KEY, self._epoch)
            self.runner.message_hub.update_info(EPOCH_START_KEY, self._iter)
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        for idx, data_batch in enumerate(self.dataloader, start=skip):
            self.run_iter(idx, data_batch)
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1
