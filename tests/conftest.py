"""Test defaults: CPU only, nothing reaches the network, outputs under tmp_path."""

import os

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["CUDA_VISIBLE_DEVICES"] = ""

import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch):
    """Every test runs with W&B disabled unless it sets the mode itself."""
    monkeypatch.setenv("WANDB_MODE", os.environ.get("WANDB_MODE", "disabled"))
    yield


def save_stage1_checkpoint(path, seed: int = 0, **overrides):
    """A Lightning-format checkpoint of an untrained tiny DferClipModule (what `train-dfer` writes, minus training)."""
    from pathlib import Path

    import lightning
    import torch

    from dfer_pd.stage1.clip_assets import BUILTIN_TINY_CLIP
    from dfer_pd.stage1.module import DferClipModule

    network = dict(clip_name_or_path=BUILTIN_TINY_CLIP, random_init=True, num_frames=4, num_context=2,
                   gate_heads=4, temporal_heads=4, temporal_mlp_dim=64, seed=seed)
    network.update(overrides)
    module = DferClipModule(network=network)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": lightning.__version__}, path)
    return path


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """A 10-subject synthetic cohort (short 32 px videos), written once per test session."""
    from dfer_pd.synthetic.cohort import make_pd_cohort

    root = tmp_path_factory.mktemp("cohort")
    return make_pd_cohort(root, num_subjects=10, fps=5, seconds=1.6, size=32, seed=3)


@pytest.fixture(scope="session")
def tiny_stage1_checkpoint(tmp_path_factory):
    return save_stage1_checkpoint(tmp_path_factory.mktemp("stage1") / "best.ckpt")
