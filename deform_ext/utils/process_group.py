"""The end of a distributed run: destroy the process group before the interpreter exits.

Why: gloo runs each collective on a worker thread, and that thread drops the finished
work, with the tensors it holds, just *after* the caller's ``wait()`` has returned.
Dropping a tensor that still has a Python object takes the GIL. When the main thread
reaches interpreter shutdown first, CPython ends the worker with ``pthread_exit`` as
it asks for the GIL; the unwind crosses a ``noexcept`` destructor and the process
aborts with "terminate called without an active exception" (SIGABRT, exit -6), after
a run that finished. Destroying the group joins its worker threads while the
interpreter is whole. For that nothing else may hold the group: the runner (whose DDP
wrapper holds it) must be gone first. (So must ``torch.distributed.nn.functional`` be
imported before the group is created: it evaluates ``group.WORLD`` in default
arguments at import time and would hold the group for good. Importing mmdet imports
it, so the tools are safe; a script that imports it only after
``init_process_group`` is not.)
"""
import gc

import torch.distributed as dist


def end_process_group() -> None:
    """Destroy the default process group, if any, and with it its threads."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    gc.collect()  # a runner's DDP wrapper and reducer live in reference cycles
    dist.destroy_process_group()
