"""``PipelineEpochHook``: hand the runner's seed and the epoch to the training
pipeline's transforms that take them, such as
:class:`~deform_ext.datasets.transforms.SmallObjectCopyPaste`.

Example (after mmdet's PipelineSwitchHook, which may install a new pipeline)::

    custom_hooks = [dict(type='deform_ext.PipelineEpochHook')]

The transforms keep the values in shared memory written in the main process before
the epoch's first batch is requested, so dataloader workers, persistent ones
included, draw the epoch's images from them.
"""
from typing import Iterator

from mmengine.hooks import Hook

from deform_ext.registry import HOOKS

CHILD_ATTRIBUTES = ('dataset', 'datasets', 'pipeline', 'transforms')


def iter_pipeline_objects(root) -> Iterator[object]:
    """Every object reachable from ``root`` (a dataset) through the attributes
    ``dataset``, ``datasets`` (dataset wrappers), ``pipeline`` and ``transforms``
    (Compose, RandomChoice...) and lists of them: each transform once."""
    seen, stack = set(), [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        yield node
        if isinstance(node, (list, tuple)):
            stack.extend(reversed(node))
            continue
        stack.extend(child for name in CHILD_ATTRIBUTES
                     if (child := getattr(node, name, None)) is not None)


def set_pipeline_seed_epoch(dataset, seed: int, epoch: int) -> int:
    """Call ``set_seed_epoch(seed, epoch)`` on every transform of ``dataset``'s
    pipelines that has it; returns how many did."""
    takers = [node for node in iter_pipeline_objects(dataset)
              if callable(getattr(node, 'set_seed_epoch', None))]
    for transform in takers:
        transform.set_seed_epoch(seed, epoch)
    return len(takers)


@HOOKS.register_module()
class PipelineEpochHook(Hook):
    """Before each training epoch, ``set_seed_epoch(runner.seed, runner.epoch)`` on
    the training pipeline's transforms that have it."""

    priority = 'LOW'  # after PipelineSwitchHook (NORMAL) has switched the pipeline

    def before_train_epoch(self, runner) -> None:
        set_pipeline_seed_epoch(runner.train_dataloader.dataset, runner.seed, runner.epoch)
