"""Patch: in a multi-process test, only the main process writes the metrics JSON.

mmengine 0.10's ``LoggerHook.after_test_epoch`` dumps the test metrics to
``<work_dir>/<timestamp>/<timestamp>.json`` on every rank; all ranks share the
timestamp, so with ``tools/dist_test.sh`` they write the same file at once and it can
end up interleaved (seen: a valid line followed by a stray ``}``, which no JSON reader
takes). Every other write of the hook goes through the visualizer, which mmengine runs
on the main process only; here the test-epoch hook runs there only too (other ranks
log at ERROR level, so they lose nothing).
"""
from mmengine.dist import master_only
from mmengine.hooks import LoggerHook

from .patch import Patch

PATCH = Patch('test_metrics_json', 'mmengine', '0.10.',
              lambda: [(LoggerHook, 'after_test_epoch', master_only(LoggerHook.after_test_epoch))],
              purpose='one writer for the test metrics JSON of multi-process tests')
