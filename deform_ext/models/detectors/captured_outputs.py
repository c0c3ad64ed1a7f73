"""What a detector's ``loss`` computes anyway, kept for a training-only addition
(distillation losses, auxiliary heads) by forward hooks that live only while it runs:
inference never sees them."""
from contextlib import contextmanager
from typing import Any, Dict, Hashable, Iterator, NamedTuple

from torch import nn


class Call(NamedTuple):
    """A module's last call: its output and the keyword arguments it got."""
    output: Any
    kwargs: dict


@contextmanager
def captured_outputs(modules: Dict[Hashable, nn.Module]) -> Iterator[Dict[Hashable, Call]]:
    """Within the block, ``captured[key]`` is the last :class:`Call` of
    ``modules[key]``; the hooks are removed when the block ends."""
    captured = {}

    def keep(key):
        def hook(module, args, kwargs, output):
            captured[key] = Call(output, kwargs)
        return hook
    hooks = [module.register_forward_hook(keep(key), with_kwargs=True)
             for key, module in modules.items()]
    try:
        yield captured
    finally:
        for hook in hooks:
            hook.remove()
