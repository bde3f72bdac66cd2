"""Worker processes for the CPU-bound parts of a partition, or this process when they would not pay."""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import Executor, Future, ProcessPoolExecutor

DEFAULT_WORKERS = min(os.cpu_count() or 1, 8)


def worker_pool(workers: int, parallel: bool) -> Executor:
    """`workers` spawned processes when `parallel`, else an executor that runs each task at once, here.
    spawn, not fork: the parent may run DuckDB's threads."""
    if parallel and workers > 1:
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    return _InProcess()


class _InProcess(Executor):
    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_result(fn(*args, **kwargs))
        return future
