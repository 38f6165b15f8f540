"""W&B logging that stays on this machine unless the user turns it online, one run per command, in one place.

Where runs go: the folder the user set (``--wandb.dir``, the logger's ``save_dir``, or ``$WANDB_DIR``),
else the command's own output folder; under ``wandb agent`` each sweep trial writes to its own folder.
A resumed ``train-dfer`` continues its W&B run: the run id is stored in every checkpoint.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger

# The checkpoint key that carries the W&B run id, so resuming from that checkpoint continues that run.
RUN_ID_KEY = "wandb_run_id"


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


def wandb_dir(explicit: str | Path | None, output_dir: str | Path) -> str:
    """The folder for a command's W&B files: the user's choice (``explicit``, else $WANDB_DIR), else its output folder."""
    chosen = explicit or os.environ.get("WANDB_DIR") or output_dir
    Path(chosen).mkdir(parents=True, exist_ok=True)
    return str(chosen)


def sweep_trial_dir(out_dir: str | Path) -> Path:
    """``out_dir/sweep-<id>/trial-<run id>`` when a `wandb agent` started this process, else ``out_dir``.

    The agent sets WANDB_SWEEP_ID and WANDB_RUN_ID for each trial; without this every trial of a sweep
    would overwrite the previous one's predictions, metrics and screening model.
    """
    sweep, run = os.environ.get("WANDB_SWEEP_ID"), os.environ.get("WANDB_RUN_ID")
    if sweep and run:
        return Path(out_dir) / f"sweep-{sweep}" / f"trial-{run}"
    return Path(out_dir)


class PrivateWandbLogger(WandbLogger):
    """WandbLogger whose default mode is offline (set `mode: online` or WANDB_MODE=online to upload).

    ``save_dir`` left unset means: $WANDB_DIR if set, else the trainer's ``default_root_dir`` (``train-dfer``
    fills it in), so a run's W&B files sit beside its checkpoints. Face images are never logged by the
    project unless a command's `log_images` flag asks for it.
    """

    def __init__(self, *args, mode: str | None = None, save_dir: str | None = None, job_type: str = "stage1",
                 **kwargs) -> None:
        super().__init__(*args, mode=resolve_wandb_mode(mode), save_dir=save_dir, job_type=job_type, **kwargs)


class WandbRunIdInCheckpoint(Callback):
    """Stores the W&B run id in every checkpoint, so `--ckpt_path` resumes the same W&B run (not a second one)."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                checkpoint[RUN_ID_KEY] = logger.version
                return


def run_id_from_checkpoint(path: str | Path) -> str | None:
    """The W&B run id a checkpoint was saved under (None for checkpoints from before it was stored)."""
    import torch

    checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    value = checkpoint.get(RUN_ID_KEY) if isinstance(checkpoint, dict) else None
    return str(value) if value else None


def log_resolved_config(loggers, config: dict[str, Any]) -> None:
    """The command's full resolved configuration (trainer included) into each W&B run's config."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_hyperparams(config)  # rank zero only; nested keys kept


def set_run_summary(loggers, figures: dict[str, float]) -> None:
    """``figures`` as the W&B run's summary values (what the runs table shows), replacing the last logged ones."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and figures and logger.experiment is not None:
            summary = getattr(logger.experiment, "summary", None)
            if summary is not None:
                summary.update(dict(figures))


def finish_wandb_run() -> bool:
    """``wandb.finish()`` if a W&B run is active (WandbLogger never finishes its own). True if one was."""
    wandb = sys.modules.get("wandb")  # a run can only be active if something imported wandb already
    if wandb is None or getattr(wandb, "run", None) is None:
        return False
    wandb.finish()
    return True


def sweep_parameters() -> dict[str, Any]:
    """The hyperparameters `wandb agent` drew for this trial (``{"classifier.lr": 0.001, ...}``), read from the
    file the agent names in $WANDB_SWEEP_PARAM_PATH; empty outside a sweep."""
    path = os.environ.get("WANDB_SWEEP_PARAM_PATH")
    if not path or not Path(path).is_file():
        return {}
    import yaml

    drawn = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    return {key: spec.get("value") if isinstance(spec, dict) else spec for key, spec in drawn.items()
            if key != "wandb_version"}


def trial_name(parameters: dict[str, Any]) -> str:
    """A sweep trial's run name from its drawn values: ``hidden_size=32 lr=0.0012 residual=false`` (last key part)."""
    def short(value) -> str:
        if isinstance(value, bool):
            return str(value).lower()
        return f"{value:.3g}" if isinstance(value, float) else str(value)

    return " ".join(f"{key.rsplit('.', 1)[-1]}={short(value)}" for key, value in sorted(parameters.items()))


def write_hyperparameters(parameters: dict[str, Any], path: Path) -> Path | None:
    """The drawn values alone as a config file (dotted keys nested), for `--config` in the honest-tuning run;
    None when there are none (not a sweep trial)."""
    if not parameters:
        return None
    import yaml

    nested: dict[str, Any] = {}
    for key, value in sorted(parameters.items()):
        *groups, leaf = key.split(".")
        node = nested
        for group in groups:
            node = node.setdefault(group, {})
        node[leaf] = value
    path.write_text("# the hyperparameters this sweep trial drew (wandb agent), and nothing else\n"
                    + yaml.safe_dump(nested, sort_keys=True), encoding="utf-8")
    return path
