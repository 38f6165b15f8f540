"""`dfer-pd train-dfer`: LightningCLI over DferClipModule + a clip dataset (`data.class_path`); fit, then test the selected checkpoint.

Resume an interrupted run with `--ckpt_path <run>/checkpoints/last.ckpt` (same config): training, the
optimizer state and the W&B run all continue where they stopped.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import lightning.pytorch as pl
from jsonargparse import Namespace
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dfer_pd.common.loggers import (
    WandbRunIdInCheckpoint,
    finish_wandb_run,
    log_resolved_config,
    run_id_from_checkpoint,
    set_run_summary,
    sweep_trial_dir,
)
from dfer_pd.configs import ConfigFile
from dfer_pd.stage1.datasets.base import ClipDataModule
from dfer_pd.stage1.module import DferClipModule

log = logging.getLogger(__name__)

WANDB_LOGGERS = ("WandbLogger", "PrivateWandbLogger")


class _ParserBuilt(Exception):
    """Carries the parser out of LightningCLI's constructor when only the parser is wanted (`--help`, the command tree)."""

    def __init__(self, parser: LightningArgumentParser) -> None:
        super().__init__("parser built")
        self.parser = parser


_BUILD_ONLY = object()


class DferCLI(LightningCLI):
    def init_parser(self, **kwargs) -> LightningArgumentParser:
        """Lightning's parser, with a `--config` that also takes a shipped config's name (`dfer_clip`)."""
        kwargs.setdefault("dump_header", [f"lightning.pytorch=={pl.__version__}"])
        parser = self.parser_class(**kwargs)
        parser.add_argument("-c", "--config", action=ConfigFile,
                            help="YAML config(s), layered in order: a path or a shipped config's name "
                                 "(dfer_clip, dfer_demo, datasets/dfew7 ...; `dfer-pd configs` lists them)")
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # One source of truth for values the data must share with the model.
        # The dataset is any ClipDataModule subclass, chosen by `data.class_path` (experiments/datasets/*.yaml).
        parser.link_arguments("model.network.clip_name_or_path", "data.init_args.clip_name_or_path")
        parser.link_arguments("model.network.num_frames", "data.init_args.num_frames")
        parser.link_arguments("model.network.image_size", "data.init_args.image_size")
        # The network classifies into the dataset's classes, by name and in order (labels index class_names).
        parser.link_arguments("data.class_names", "model.network.class_names", apply_on="instantiate")
        parser.add_argument("--skip_test", type=bool, default=False, help="fit only; do not evaluate the test fold")
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="resume fitting from this checkpoint (e.g. <run>/checkpoints/last.ckpt); "
                                 "the W&B run it was saved under continues")
        parser.add_argument("--test_ckpt", type=str | None, default=None,
                            help="no fitting: evaluate this checkpoint on the fold's test set (e.g. on one device after DDP)")

    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        if args is _BUILD_ONLY:
            raise _ParserBuilt(parser)
        if isinstance(args, Namespace):  # already parsed by the `dfer-pd` command tree with this same parser
            self.config = args
            return
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        """Each sweep trial its own run folder; W&B files beside the run (unless the user chose a folder); a
        resumed run continues its W&B run id."""
        trainer = self.config.trainer
        # Under `wandb agent`, each trial in its own folder (<default_root_dir>/sweep-<id>/trial-<run id>).
        trainer.default_root_dir = str(sweep_trial_dir(trainer.get("default_root_dir") or os.getcwd()))
        loggers = trainer.get("logger")
        for logger in loggers if isinstance(loggers, list) else [loggers]:
            if not isinstance(logger, Namespace) or str(logger.get("class_path", "")).rsplit(".", 1)[-1] not in WANDB_LOGGERS:
                continue
            init = logger.init_args
            if not init.get("name") and not os.environ.get("WANDB_SWEEP_ID"):  # a sweep's agent names its trials
                init.name = f"stage1 {Path(trainer.default_root_dir).name}"  # stage1 fold1, stage1 dfer_clip ...
            if init.get("save_dir") in (None, ".") and not init.get("dir") and not os.environ.get("WANDB_DIR"):
                init.save_dir = str(trainer.get("default_root_dir") or os.getcwd())
            ckpt_path = self.config.get("ckpt_path")
            if ckpt_path and not init.get("id") and not init.get("version") and Path(ckpt_path).is_file():
                run_id = run_id_from_checkpoint(ckpt_path)
                if run_id:
                    init.id = run_id
                    log.info("resuming W&B run %s (stored in %s)", run_id, ckpt_path)


def cli_kwargs() -> dict:
    return dict(
        model_class=DferClipModule,
        datamodule_class=ClipDataModule,
        subclass_mode_data=True,
        run=False,
        seed_everything_default=0,
        save_config_callback=None,  # saved below, beside the checkpoints, whatever the logger
        trainer_defaults={"callbacks": [WandbRunIdInCheckpoint()]},
        parser_kwargs={"description": __doc__},
    )


def build_parser() -> LightningArgumentParser:
    """The LightningCLI parser of train-dfer, without parsing anything (for the `dfer-pd` command tree)."""
    try:
        DferCLI(**cli_kwargs(), args=_BUILD_ONLY)
    except _ParserBuilt as built:
        return built.parser
    raise RuntimeError("LightningCLI did not reach parse_arguments")


def best_checkpoint_callback(trainer) -> ModelCheckpoint:
    callbacks = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    if not callbacks:
        raise ValueError("train-dfer needs a ModelCheckpoint callback monitoring a validation metric (see experiments/dfer_clip.yaml)")
    return callbacks[0]


def run(cfg: Namespace) -> dict:
    """Fit with model selection on the validation split, then evaluate the test fold once with the best checkpoint."""
    return _fit_and_test(cfg)


def main(args: list[str] | None = None) -> dict:
    """`dfer-pd train-dfer ARGS` from Python (tests, the demo)."""
    return _fit_and_test(args)


def _fit_and_test(args) -> dict:
    import yaml

    # `dfer-pd train-dfer ...` passes its own arguments; LightningCLI would warn about sys.argv holding more.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    cli = DferCLI(**cli_kwargs(), args=args)
    trainer = cli.trainer
    checkpoint = best_checkpoint_callback(trainer)
    run_dir = Path(trainer.default_root_dir)
    if checkpoint.dirpath is None:
        checkpoint.dirpath = str(run_dir / "checkpoints")
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        cli.parser.save(cli.config, run_dir / "config.yaml", overwrite=True, skip_check=True)
    resolved = yaml.safe_load(cli.parser.dump(cli.config, skip_check=True))
    resolved.pop("config", None)
    log_resolved_config(trainer.loggers, resolved)
    if cli.config.get("test_ckpt"):
        (results,) = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.test_ckpt)
        if trainer.is_global_zero:
            print(f"test fold: WAR {results['test/war']:.3f}  UAR {results['test/uar']:.3f} ({cli.config.test_ckpt})")
        finish_wandb_run()
        return results
    trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    results = {"best_checkpoint": checkpoint.best_model_path, "best_val_uar": float(checkpoint.best_model_score or 0.0)}
    # The run summary reports the selected checkpoint's validation figures, not the last epoch's.
    selected = cli.model.selected_validation(checkpoint.best_model_path) if checkpoint.best_model_path else {}
    results.update(selected)
    if not cli.config.get("skip_test"):
        if not checkpoint.best_model_path:
            raise RuntimeError(f"no checkpoint was selected on {checkpoint.monitor}: did a validation epoch run? "
                               "(the test fold is only evaluated with the checkpoint selected on validation)")
        (test_metrics,) = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint.best_model_path)
        results.update(test_metrics)
    set_run_summary(trainer.loggers, {key: value for key, value in results.items() if key.startswith(("val/", "test/"))})
    if trainer.is_global_zero:
        print(f"best checkpoint: {results['best_checkpoint']} (val UAR {results['best_val_uar']:.3f})")
        if "test/uar" in results:
            print(f"test fold: WAR {results['test/war']:.3f}  UAR {results['test/uar']:.3f}")
    finish_wandb_run()
    return results
