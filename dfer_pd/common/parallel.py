"""Worker processes and threads: how many, and how they start (one choice for the whole project)."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterator
from multiprocessing.context import BaseContext


def resolve_workers(workers: int | None) -> int:
    """``workers`` as a process count: 0 or None means every CPU this process may use."""
    if workers is None or workers == 0:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0 = all CPUs), got {workers}")
    return int(workers)


def process_context() -> BaseContext:
    """Forkserver (spawn where there is none), not fork: a parent holding threads (torch, W&B) cannot
    deadlock its workers. A script that starts workers needs an ``if __name__ == "__main__":`` guard."""
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


@contextlib.contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` (0: leave it) for the block, then restored.

    On a 2-core machine two threads gain little for small networks and collapse as soon as another
    process computes (a loader worker, a second job): their threads wait for each other at every
    operation. One thread stays steady.
    """
    import torch

    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
