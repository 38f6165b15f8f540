"""`dfer-pd train-dfer` end to end on a small synthetic DFEW tree: fit, select, test, resume, DDP."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dfer_pd.stage1.contract import ScoringContract, load_stage1
from dfer_pd.synthetic.dfew import make_dfew_tree
from dfer_pd.commands.train_dfer import main as train_dfer

REPO = Path(__file__).resolve().parents[2]
DEMO = str(REPO / "experiments" / "dfer_demo.yaml")


@pytest.fixture(scope="module")
def dfew_tree(tmp_path_factory):
    return make_dfew_tree(tmp_path_factory.mktemp("dfew") / "DFEW", num_clips=60, size=48, seed=1)


def tiny_args(root, out, *extra):
    return [
        "--config", DEMO,
        "--data.root", str(root),
        "--data.num_workers", "0",
        "--data.batch_size", "4",
        "--trainer.default_root_dir", str(out),
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(out),
        "--trainer.enable_progress_bar", "false",
        "--model.network.num_frames", "4",
        *extra,
    ]


def test_fit_selects_on_validation_then_tests_and_resumes(dfew_tree, tmp_path):
    out = tmp_path / "run"
    results = train_dfer(tiny_args(dfew_tree, out, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2"))
    best = Path(results["best_checkpoint"])
    assert best.is_file() and best.parent == out / "checkpoints"
    assert 0.0 <= results["test/uar"] <= 1.0 and 0.0 <= results["test/war"] <= 1.0
    assert (out / "config.yaml").is_file() and (out / "test_confusion_matrix.png").is_file()
    checkpoint = torch.load(best, map_location="cpu", weights_only=True)
    network = checkpoint["hyper_parameters"]["network"]
    assert network["clip_name_or_path"] == "builtin:tiny-clip" and network["num_frames"] == 4
    assert network["class_names"] == ["neutral", "happiness", "surprise", "anger"]  # from the dataset, by link
    # What train-dfer writes is what scoring reads: the resolved preprocessing, and a loadable network.
    contract = ScoringContract.from_checkpoint(best)
    assert (contract.image_size, contract.num_frames, contract.tau) == (48, 4, 0.07)
    assert load_stage1(best).net.config.image_mean == contract.image_mean
    assert "val/uar" in str(checkpoint["callbacks"])
    # Evaluating the selected checkpoint again (no fitting) gives the same test figures.
    again = train_dfer(tiny_args(dfew_tree, tmp_path / "retest", "--test_ckpt", str(best)))
    assert again["test/uar"] == pytest.approx(results["test/uar"]) and again["test/war"] == pytest.approx(results["test/war"])
    # Resume from last.ckpt for one more epoch: training continues at epoch 1, not from scratch.
    last = out / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    # The second epoch takes 3 batches: 2 + 3 = 5 steps if resumed, 6 if it had started again.
    train_dfer(tiny_args(dfew_tree, out, "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3",
                         "--ckpt_path", str(last), "--skip_test", "true"))
    resumed = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 5


@pytest.mark.ddp
def test_ddp_two_cpu_processes(dfew_tree, tmp_path):
    """The same command under Lightning DDP (gloo): two processes, a few steps, one checkpoint."""
    out = tmp_path / "ddp"
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "dfer_pd.cli", "train-dfer",
               *tiny_args(dfew_tree, out, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "2",
                          "--trainer.limit_val_batches", "2",
                          "--trainer.limit_test_batches", "2", "--trainer.strategy", "ddp",
                          "--trainer.devices", "2", "--trainer.accelerator", "cpu")]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "world_size=2" in done.stderr or "ddp" in done.stderr.lower() or "Initializing distributed" in done.stderr
    assert (out / "checkpoints" / "best.ckpt").is_file()
    assert "test fold: WAR" in done.stdout
