"""`dfer-pd train-dfer-folds`: stage 1 on every official fold in turn, then the report researchers compare.

Takes every `train-dfer` option (`--config`, `--data.*`, `--model.*`, `--trainer.*`); `--data.fold`,
`--trainer.default_root_dir`, `--ckpt_path`, `--test_ckpt` and `--skip_test` are set per fold. Fold k runs in
`<runs_dir>/fold<k>` as its own W&B run, all in one W&B group; a finished fold is not trained again and an
interrupted one resumes from its last.ckpt. Then `<runs_dir>/report.{json,md}` and
`confusion_matrix_sum.png`: per-fold and mean ± std WAR/UAR, per-class recall, and for DFEW's seven classes
(`--data.classes 7`) the published figures beside ours.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def build_parser():
    """train-dfer's LightningCLI parser plus the fold options."""
    from dfer_pd.commands.train_dfer import build_parser as train_dfer_parser

    parser = train_dfer_parser()
    parser.description = __doc__
    parser.add_argument("--folds", type=int | list[int] | None, default=None,
                        help="the official folds to run: one (3) or a list ([1,2]); default: all five")
    parser.add_argument("--runs_dir", type=str, default="runs/dfer_clip",
                        help="fold k runs in <runs_dir>/fold<k>; the report is written here")
    parser.add_argument("--wandb_group", type=str | None, default=None,
                        help="the W&B group of the folds' runs (default: the name of --runs_dir)")
    return parser


def _check_options(cfg) -> None:
    from dfer_pd.common.errors import UsageError

    for flag in ("ckpt_path", "test_ckpt"):
        if cfg.get(flag):
            raise UsageError(f"--{flag} is set per fold by train-dfer-folds (an interrupted fold resumes by itself); "
                             f"use `dfer-pd train-dfer --{flag}` for one fold")
    if cfg.get("skip_test"):
        raise UsageError("--skip_test true: train-dfer-folds reports the test folds; use `dfer-pd train-dfer` to fit only")
    init_args = cfg.data.get("init_args")
    if init_args is None or "fold" not in init_args:
        raise UsageError(f"--data.class_path {cfg.data.get('class_path')}: this dataset has no official folds "
                         "(DFEW and MAFW have five); use `dfer-pd train-dfer`")


def run(cfg) -> dict:
    from lightning.pytorch.utilities import rank_zero_only

    from dfer_pd.commands import train_dfer
    from dfer_pd.common.machine import machine_line
    from dfer_pd.stage1 import folds as folds_lib

    _check_options(cfg)
    chosen = folds_lib.check_folds(cfg.get("folds"))
    runs_dir = Path(cfg.runs_dir)
    group = cfg.get("wandb_group") or runs_dir.name
    settings = folds_lib.comparable_settings(cfg.as_dict())
    folds_lib.check_fold_splits(cfg.data.class_path, cfg.data.init_args.as_dict(), chosen)

    def train_fold(fold: int, run_dir: Path, resume: Path | None) -> dict:
        print(f"== fold {fold} of {chosen}: {run_dir}" + (f" (resuming from {resume})" if resume else ""), flush=True)
        return train_dfer.run(folds_lib.fold_namespace(cfg, fold, run_dir, group, resume))

    def is_global_zero() -> bool:
        return rank_zero_only.rank == 0

    results = folds_lib.run_folds(runs_dir, chosen, settings, train_fold, is_global_zero)
    if not is_global_zero():
        return {}
    command = shlex.join(["dfer-pd", *sys.argv[1:]]) if Path(sys.argv[0]).name in ("dfer-pd", "cli.py") else ""
    report = folds_lib.build_report(results, str(cfg.data.class_path))
    paths = folds_lib.write_report(runs_dir, report, machine_line(), command)
    print(folds_lib.report_markdown(report))
    print("report: " + ", ".join(str(p) for p in paths.values()))
    return {**report, "paths": {k: str(v) for k, v in paths.items()}}
