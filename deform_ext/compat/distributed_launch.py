"""Patch: mmengine's distributed launchers work on a CPU-only torch.

mmengine 0.10 calls ``torch.cuda.set_device`` in its ``pytorch`` and ``slurm``
launchers and hands ``device_ids=[LOCAL_RANK]`` to DistributedDataParallel; both fail
without a GPU. When CUDA is absent we skip the device selection, use gloo instead of
nccl, and wrap CPU models in DDP without device ids. With a GPU nothing changes.
"""
import contextlib
import functools

import torch
from mmengine.dist import utils as dist_utils
from mmengine.model import MMDistributedDataParallel

from .patch import Patch


@contextlib.contextmanager
def _no_cuda_device_selection():
    original = torch.cuda.set_device
    torch.cuda.set_device = lambda device: None
    try:
        yield
    finally:
        torch.cuda.set_device = original


def _cpu_safe_launcher(launch):
    """Wrap an mmengine ``_init_dist_*`` function so it works without CUDA."""

    @functools.wraps(launch)
    def cpu_safe_launch(backend, *args, **kwargs):
        if torch.cuda.is_available():
            return launch(backend, *args, **kwargs)
        with _no_cuda_device_selection():
            return launch('gloo' if backend == 'nccl' else backend, *args, **kwargs)

    return cpu_safe_launch


def _cpu_safe_ddp_init(init):

    @functools.wraps(init)
    def ddp_init(self, module, *args, device_ids=None, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        init(self, module, *args, device_ids=None if on_cpu else device_ids, **kwargs)

    return ddp_init


def _replacements():
    return [
        (dist_utils, '_init_dist_pytorch', _cpu_safe_launcher(dist_utils._init_dist_pytorch)),
        (dist_utils, '_init_dist_slurm', _cpu_safe_launcher(dist_utils._init_dist_slurm)),
        (MMDistributedDataParallel, '__init__',
         _cpu_safe_ddp_init(MMDistributedDataParallel.__init__)),
    ]


PATCH = Patch('distributed_launch', 'mmengine', '0.10.', _replacements,
              purpose='CPU-only training with --launcher pytorch/slurm')
