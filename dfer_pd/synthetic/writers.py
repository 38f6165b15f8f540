"""Many synthetic recordings written at once: in a process pool, with one progress bar, each failure named."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

from dfer_pd.common.parallel import process_context, resolve_workers
from dfer_pd.common.progress import progress_bar, track

T = TypeVar("T")

# Recordings per task sent to a worker: enough to hide the per-task cost, few enough for a lively bar.
_MAX_CHUNK = 32


def _write_named(write: Callable[[T], object], tasks: Sequence[T], names: Sequence[str], what: str) -> None:
    for task, name in zip(tasks, names):
        try:
            write(task)
        except Exception as error:  # name the recording: a worker's traceback alone does not say which
            raise RuntimeError(f"{what} {name} failed: {type(error).__name__}: {error}") from error


def write_recordings(
    write: Callable[[T], object],
    tasks: Sequence[T],
    names: Sequence[str],
    workers: int | None,
    description: str,
    unit: str,
) -> None:
    """Run ``write(task)`` for every task (each writes its own files), in ``workers`` processes when > 1.

    Each task carries its own seed, so the files do not depend on ``workers``. Workers start by
    forkserver (spawn where there is none), not fork: a parent holding threads (torch, W&B) cannot
    deadlock them, but a script calling this needs an ``if __name__ == "__main__":`` guard. The first
    failure is raised as a RuntimeError naming its ``unit`` and task name.
    """
    if len(tasks) != len(names):
        raise ValueError(f"{len(tasks)} tasks but {len(names)} names")
    workers = min(resolve_workers(workers), len(tasks))
    if workers <= 1:
        for task, name in track(zip(tasks, names), len(tasks), description, unit):
            _write_named(write, [task], [name], unit)
        return
    size = max(1, min(_MAX_CHUNK, len(tasks) // (8 * workers)))
    chunks = [(list(tasks[i:i + size]), list(names[i:i + size])) for i in range(0, len(tasks), size)]
    with progress_bar(len(tasks), description, unit) as bar, \
            ProcessPoolExecutor(workers, mp_context=process_context()) as pool:
        pending = {pool.submit(_write_named, write, chunk, chunk_names, unit): len(chunk)
                   for chunk, chunk_names in chunks}
        try:
            while pending:
                # FIRST_COMPLETED: FIRST_EXCEPTION waits for all of them when none fails, so the bar
                # stood still until the end (and its time left read 33 min for a 70 s step).
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # a worker's error, raised here
                    bar.advance(pending.pop(future))
        except BaseException as error:  # do not wait for the chunks not yet started
            pool.shutdown(wait=True, cancel_futures=True)
            if isinstance(error, BrokenProcessPool):
                raise RuntimeError(
                    f"{description}: a worker process died (out of memory, or a script calling this without "
                    "`if __name__ == '__main__':`?); workers=1 renders in this process"
                ) from error
            raise
