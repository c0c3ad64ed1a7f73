"""mmengine's distributed launchers on a CPU-only torch.

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
    if getattr(launch, '_deform_ext_cpu_safe', False):
        return launch

    @functools.wraps(launch)
    def cpu_safe_launch(backend, *args, **kwargs):
        if torch.cuda.is_available():
            return launch(backend, *args, **kwargs)
        with _no_cuda_device_selection():
            return launch('gloo' if backend == 'nccl' else backend, *args, **kwargs)

    cpu_safe_launch._deform_ext_cpu_safe = True
    return cpu_safe_launch


def _cpu_safe_ddp_init(init):
    if getattr(init, '_deform_ext_cpu_safe', False):
        return init

    @functools.wraps(init)
    def ddp_init(self, module, *args, device_ids=None, **kwargs):
        on_cpu = all(p.device.type == 'cpu' for p in module.parameters())
        init(self, module, *args, device_ids=None if on_cpu else device_ids, **kwargs)

    ddp_init._deform_ext_cpu_safe = True
    return ddp_init


def install() -> None:
    """Patch the launchers and the DDP wrapper (idempotent)."""
    dist_utils._init_dist_pytorch = _cpu_safe_launcher(dist_utils._init_dist_pytorch)
    dist_utils._init_dist_slurm = _cpu_safe_launcher(dist_utils._init_dist_slurm)
    MMDistributedDataParallel.__init__ = _cpu_safe_ddp_init(MMDistributedDataParallel.__init__)
