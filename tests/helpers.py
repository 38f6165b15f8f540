"""Helpers shared by the tests (importable as ``helpers``: pytest puts this folder on the path with conftest.py)."""


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
