"""W&B logging that stays on this machine unless the user turns it online."""

from __future__ import annotations

import os
import sys

from lightning.pytorch.loggers import WandbLogger


def resolve_wandb_mode(mode: str | None = None) -> str:
    """Explicit mode, else $WANDB_MODE, else online only under a `wandb agent` the user started, else offline.

    Patient data never leaves the machine by default.
    """
    mode = mode or os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_SWEEP_ID") else "offline")
    if mode == "dryrun":
        mode = "offline"
    if mode not in {"online", "offline", "disabled"}:
        raise ValueError(f"W&B mode must be online, offline or disabled, got {mode!r}")
    return mode


class PrivateWandbLogger(WandbLogger):
    """WandbLogger whose default mode is offline (set `mode: online` or WANDB_MODE=online to upload).

    Face images are never logged by the project unless a command's `log_images` flag asks for it.
    """

    def __init__(self, *args, mode: str | None = None, **kwargs) -> None:
        super().__init__(*args, mode=resolve_wandb_mode(mode), **kwargs)


def finish_wandb_run() -> bool:
    """``wandb.finish()`` if a W&B run is active (WandbLogger never finishes its own). True if one was."""
    wandb = sys.modules.get("wandb")  # a run can only be active if something imported wandb already
    if wandb is None or getattr(wandb, "run", None) is None:
        return False
    wandb.finish()
    return True
