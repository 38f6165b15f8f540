"""W&B runs (offline, on this machine): one run per command under its output folder unless the user sets a
W&B folder; a resumed train-dfer continues the same run id; the full resolved config is logged, trainer
included; each sweep trial writes to its own folder."""

from pathlib import Path

import pytest
from lightning.pytorch.loggers import WandbLogger

from dfer_pd.commands.train_dfer import main as train_dfer
from dfer_pd.commands.train_pd import main as train_pd
from dfer_pd.common.loggers import RUN_ID_KEY, run_id_from_checkpoint, sweep_trial_dir
from dfer_pd.synthetic.dfew import make_dfew_tree
from dfer_pd.synthetic.intensities import synthetic_cohort


def offline_runs(folder: Path) -> list[Path]:
    return sorted(folder.glob("wandb/offline-run-*"))


@pytest.fixture
def offline_wandb(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    for name in ("WANDB_SWEEP_ID", "WANDB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)


def test_resumed_train_dfer_continues_its_wandb_run_and_logs_the_whole_config(offline_wandb, tmp_path, monkeypatch):
    logged: list[dict] = []
    original = WandbLogger.log_hyperparams

    def record(self, params, *args, **kwargs):
        logged.append(dict(params) if isinstance(params, dict) else vars(params))
        return original(self, params, *args, **kwargs)

    monkeypatch.setattr(WandbLogger, "log_hyperparams", record)
    root = make_dfew_tree(tmp_path / "dfew", num_clips=30, size=32, seed=1)
    out = tmp_path / "run"
    args = ["--config", "dfer_demo", "--data.root", str(root), "--data.num_workers", "0", "--data.batch_size", "4",
            "--trainer.default_root_dir", str(out), "--trainer.enable_progress_bar", "false",
            "--model.network.num_frames", "2", "--trainer.limit_val_batches", "1", "--trainer.limit_train_batches", "1",
            "--skip_test", "true"]
    train_dfer([*args, "--trainer.max_epochs", "1"])
    (first,) = offline_runs(out)  # the W&B files sit in the run's own folder (dfer_demo.yaml names no save_dir)
    run_id = first.name.rsplit("-", 1)[-1]
    last = out / "checkpoints" / "last.ckpt"
    assert run_id_from_checkpoint(last) == run_id
    # The whole resolved config reached W&B: trainer, data and model, not only the model's hyperparameters.
    full = next(p for p in logged if "trainer" in p)
    assert full["trainer"]["max_epochs"] == 1 and full["trainer"]["default_root_dir"] == str(out)
    assert full["data"]["init_args"]["root"] == str(root) and full["model"]["network"]["num_frames"] == 2
    assert full["seed_everything"] == 0

    train_dfer([*args, "--trainer.max_epochs", "2", "--ckpt_path", str(last)])
    runs = offline_runs(out)
    assert len(runs) == 2 and {r.name.rsplit("-", 1)[-1] for r in runs} == {run_id}  # `wandb sync` joins them
    assert run_id_from_checkpoint(last) == run_id


DECISION_TREE = ["--classifier.class_path", "dfer_pd.stage2.classifiers.FlatClassifier",
                 "--classifier.init_args.estimator", "{class_path: sklearn.tree.DecisionTreeClassifier}"]


def test_train_pd_run_under_out_dir_or_wandb_dir(offline_wandb, tmp_path, monkeypatch):
    npz = synthetic_cohort(n_pd=8, n_hc=8, seed=4).save(tmp_path / "intensities.npz")
    common = ["--intensities", str(npz), *DECISION_TREE, "--plots", "false", "--save_screening_model", "false",
              "--cv.n_splits", "2"]
    train_pd("train-pd", [*common, "--out_dir", str(tmp_path / "a")])
    assert len(offline_runs(tmp_path / "a")) == 1  # one run, in the command's output folder
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    train_pd("train-pd", [*common, "--out_dir", str(tmp_path / "b")])
    assert not offline_runs(tmp_path / "b") and len(offline_runs(tmp_path / "wandb_home")) == 1
    train_pd("train-pd", [*common, "--out_dir", str(tmp_path / "c"), "--wandb.dir", str(tmp_path / "chosen")])
    assert len(offline_runs(tmp_path / "chosen")) == 1 and not offline_runs(tmp_path / "c")


def test_each_sweep_trial_writes_to_its_own_folder(tmp_path, monkeypatch):
    """Under `wandb agent` (WANDB_SWEEP_ID and WANDB_RUN_ID set per trial) trials never overwrite each other."""
    monkeypatch.setenv("WANDB_MODE", "disabled")
    npz = synthetic_cohort(n_pd=8, n_hc=8, seed=4).save(tmp_path / "intensities.npz")
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw1")
    for trial in ("t1", "t2"):
        monkeypatch.setenv("WANDB_RUN_ID", trial)
        train_pd("train-pd", ["--intensities", str(npz), *DECISION_TREE, "--plots", "false",
                              "--save_screening_model", "false", "--cv.n_splits", "2", "--out_dir", str(tmp_path / "sweep")])
    for trial in ("t1", "t2"):
        assert (tmp_path / "sweep" / "sweep-sw1" / f"trial-{trial}" / "predictions.csv").is_file()
    monkeypatch.delenv("WANDB_SWEEP_ID")
    assert sweep_trial_dir(tmp_path / "x") == tmp_path / "x"
    assert RUN_ID_KEY == "wandb_run_id"


def test_stage1_run_is_named_typed_and_sums_up_the_selected_checkpoint(offline_wandb, tmp_path):
    """The run summary holds the validation figures of the epoch model selection chose (not the last epoch's) and
    the test figures of that checkpoint; the run is typed stage1 and named after its folder."""
    import torch
    from helpers import offline_run_contents

    root = make_dfew_tree(tmp_path / "dfew", num_clips=30, size=32, seed=1)
    out = tmp_path / "fold3"
    results = train_dfer(["--config", "dfer_demo", "--data.root", str(root), "--data.num_workers", "0",
                          "--data.batch_size", "4", "--trainer.default_root_dir", str(out),
                          "--trainer.enable_progress_bar", "false", "--model.network.num_frames", "2",
                          "--trainer.limit_val_batches", "2", "--trainer.limit_train_batches", "1",
                          "--trainer.limit_test_batches", "1", "--trainer.max_epochs", "3"])
    (run,) = offline_runs(out)
    logged = offline_run_contents(run)
    assert logged["job_type"] == "stage1" and logged["name"] == "stage1 fold3"
    best = torch.load(results["best_checkpoint"], map_location="cpu", weights_only=True)
    selected = best["val_history"][str(best["epoch"])]
    summary = logged["summary"]
    assert summary["val/epoch"] == best["epoch"]
    assert summary["val/uar"] == pytest.approx(selected["val/uar"]) == pytest.approx(results["best_val_uar"])
    assert summary["val/war"] == pytest.approx(selected["val/war"])
    assert summary["test/war"] == pytest.approx(results["test/war"]) and "test/uar" in summary
