"""Timing and memory helpers shared by the benchmarks (run as scripts from benchmarks/)."""
import contextlib
import os
import statistics
import sys
import time

import torch


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


def median_ms(calls, repeats, warmup, device):
    """Median time in ms of each call; the calls take turns in every repeat, so a
    machine whose load changes over the run slows them alike."""
    for call in calls:
        for _ in range(warmup):
            call()
    times = [[] for _ in calls]
    for _ in range(repeats):
        for call, samples in zip(calls, times):
            sync(device)
            start = time.perf_counter()
            call()
            sync(device)
            samples.append(1e3 * (time.perf_counter() - start))
    return [statistics.median(samples) for samples in times]


@contextlib.contextmanager
def quiet_stderr():
    """Silence file descriptor 2: kineto logs a line on each profiler start and stop."""
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def peak_mib(call, device):
    """Peak bytes allocated by one call on top of what was live before, in MiB."""
    if device == 'cuda':
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        call()
        torch.cuda.synchronize()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    from torch._C._profiler import _EventType  # private, hence the fallback below
    with quiet_stderr(), torch.profiler.profile(
            activities=[torch.profiler.ProfilerActivity.CPU], profile_memory=True) as prof:
        call()
    events, allocs = list(prof.profiler.kineto_results.experimental_event_tree()), []
    while events:
        event = events.pop()
        events.extend(event.children)
        if event.tag == _EventType.Allocation and str(event.extra_fields.device) == 'cpu':
            allocs.append((event.start_time_ns, event.extra_fields.alloc_size))
    live = peak = 0
    for _, size in sorted(allocs):
        live += size
        peak = max(peak, live)
    return peak / 2**20
