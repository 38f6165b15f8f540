"""Worker processes: how many, and how they start (one choice for the whole project)."""

from __future__ import annotations

import multiprocessing
import os
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
