"""`dfer-pd train-dfer`: LightningCLI over DferClipModule + a clip dataset (`data.class_path`); fit, then test the selected checkpoint."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from dfer_pd.stage1.datasets.base import ClipDataModule
from dfer_pd.common.loggers import finish_wandb_run
from dfer_pd.stage1.module import DferClipModule

log = logging.getLogger(__name__)


class DferCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        # One source of truth for values the data must share with the model.
        # The dataset is any ClipDataModule subclass, chosen by `data.class_path` (experiments/datasets/*.yaml).
        parser.link_arguments("model.network.clip_name_or_path", "data.init_args.clip_name_or_path")
        parser.link_arguments("model.network.num_frames", "data.init_args.num_frames")
        parser.link_arguments("model.network.image_size", "data.init_args.image_size")
        # The network classifies into the dataset's classes, by name and in order (labels index class_names).
        parser.link_arguments("data.class_names", "model.network.class_names", apply_on="instantiate")
        parser.add_argument("--skip_test", type=bool, default=False, help="fit only; do not evaluate the test fold")
        parser.add_argument("--ckpt_path", type=str | None, default=None, help="resume fitting from this checkpoint (e.g. last.ckpt)")
        parser.add_argument("--test_ckpt", type=str | None, default=None,
                            help="no fitting: evaluate this checkpoint on the fold's test set (e.g. on one device after DDP)")


def best_checkpoint_callback(trainer) -> ModelCheckpoint:
    callbacks = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    if not callbacks:
        raise ValueError("train-dfer needs a ModelCheckpoint callback monitoring a validation metric (see experiments/dfer_clip.yaml)")
    return callbacks[0]


def main(args: list[str] | None = None) -> dict:
    """Fit with model selection on the validation split, then evaluate the test fold once with the best checkpoint."""
    # `dfer-pd train-dfer ...` passes its own arguments; LightningCLI would warn about sys.argv holding more.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
    cli = DferCLI(
        DferClipModule,
        ClipDataModule,
        subclass_mode_data=True,
        run=False,
        args=args,
        seed_everything_default=0,
        save_config_callback=None,  # saved below, beside the checkpoints, whatever the logger
        parser_kwargs={"description": __doc__},
    )
    trainer = cli.trainer
    checkpoint = best_checkpoint_callback(trainer)
    run_dir = Path(trainer.default_root_dir)
    if checkpoint.dirpath is None:
        checkpoint.dirpath = str(run_dir / "checkpoints")
    if trainer.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        cli.parser.save(cli.config, run_dir / "config.yaml", overwrite=True, skip_check=True)
    if cli.config.get("test_ckpt"):
        (results,) = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.test_ckpt)
        if trainer.is_global_zero:
            print(f"test fold: WAR {results['test/war']:.3f}  UAR {results['test/uar']:.3f} ({cli.config.test_ckpt})")
        return results
    trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=cli.config.get("ckpt_path"))
    results = {"best_checkpoint": checkpoint.best_model_path, "best_val_uar": float(checkpoint.best_model_score or 0.0)}
    if not cli.config.get("skip_test"):
        if not checkpoint.best_model_path:
            raise RuntimeError(f"no checkpoint was selected on {checkpoint.monitor}: did a validation epoch run? "
                               "(the test fold is only evaluated with the checkpoint selected on validation)")
        (test_metrics,) = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path=checkpoint.best_model_path)
        results.update(test_metrics)
    if trainer.is_global_zero:
        print(f"best checkpoint: {results['best_checkpoint']} (val UAR {results['best_val_uar']:.3f})")
        if "test/uar" in results:
            print(f"test fold: WAR {results['test/war']:.3f}  UAR {results['test/uar']:.3f}")
    finish_wandb_run()
    return results
