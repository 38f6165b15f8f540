"""One progress bar with an estimated time left, for every place a user waits (Lightning's own bars use tqdm).

``with progress_bar(total, "Table 3") as bar: bar.advance(1)``. On a terminal the bar redraws twice a
second; into a log file (not a terminal) it writes one line every 15 s, so logs stay short. Set
``DFER_PD_PROGRESS=0`` to switch bars off.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


class Progress:
    """A tqdm bar behind a small interface: ``advance(n)``, ``describe(text)``; a no-op when disabled."""

    def __init__(self, bar: tqdm | None) -> None:
        self._bar = bar
        self._lock = threading.Lock()  # baselines and networks report from two threads

    def advance(self, amount: float = 1.0) -> None:
        if self._bar is not None and amount:
            with self._lock:  # fractions of fits add up with rounding: never step past the total
                self._bar.update(min(amount, max(self._bar.total - self._bar.n, 0.0)))

    def describe(self, text: str) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(text, refresh=False)

    __call__ = advance


def progress_enabled() -> bool:
    return os.environ.get("DFER_PD_PROGRESS", "1").lower() not in ("0", "false", "no", "off")


@contextlib.contextmanager
def progress_bar(total: float, description: str, unit: str = "fit", enabled: bool = True) -> Iterator[Progress]:
    """A bar over ``total`` units (fractions allowed) with elapsed time, rate and time left; closed on exit."""
    if not (enabled and progress_enabled()) or total <= 0:
        yield Progress(None)
        return
    terminal = sys.stderr.isatty()
    bar = tqdm(total=total, desc=description, unit=unit, file=sys.stderr, dynamic_ncols=True, leave=True,
               mininterval=0.5 if terminal else 15.0, smoothing=0.1,
               bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} {unit}s "
                          "[{elapsed}<{remaining}, {rate_fmt}{postfix}]")
    try:
        yield Progress(bar)
    finally:
        bar.close()


def track(iterable: Iterable[T], total: int, description: str, unit: str = "item") -> Iterator[T]:
    """``for x in track(items, len(items), "writing"):``: the same bar around a loop."""
    with progress_bar(total, description, unit) as bar:
        for item in iterable:
            yield item
            bar.advance()
