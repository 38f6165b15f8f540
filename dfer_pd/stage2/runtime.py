"""How the stage-2 networks run (device, engine, threads, worker processes), as a context the code runs in.

As scikit-learn code runs under its ``config_context``, stage-2 code runs under :func:`running_on`: the runtime is
neither an estimator's parameter nor a CV setting, since it changes p(PD) only by float rounding. train-pd and
ablation run the whole job inside it (``Stage2Job.runtime``, the ``--runtime.*`` options).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from dfer_pd.stage2.settings import RuntimeSettings

_RUNTIME: contextvars.ContextVar[RuntimeSettings] = contextvars.ContextVar("stage2_runtime", default=RuntimeSettings())


@contextlib.contextmanager
def running_on(runtime: RuntimeSettings) -> Iterator[RuntimeSettings]:
    """Run the stage-2 code inside the block on ``runtime`` (device, engine, threads, worker processes).

    As scikit-learn's ``config_context`` carries its own settings, this carries how the networks run, so an
    estimator's parameters and the CV settings stay what is computed. Outside any block: ``RuntimeSettings()``.
    """
    token = _RUNTIME.set(runtime)
    try:
        yield runtime
    finally:
        _RUNTIME.reset(token)


def current_runtime() -> RuntimeSettings:
    """The :class:`RuntimeSettings` of the innermost :func:`running_on` block (default: ``RuntimeSettings()``)."""
    return _RUNTIME.get()
