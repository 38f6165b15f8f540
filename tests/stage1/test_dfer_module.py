"""The stage-1 LightningModule: metrics, optimiser recipe, checkpoint round trip."""

import pytest
import torch

from helpers import save_stage1_checkpoint
from dfer_pd.stage1.contract import load_stage1
from dfer_pd.stage1.module import DferClipModule, expression_metrics


def test_war_and_uar_match_hand_computed_values():
    # 10 clips; true classes 0,0,0,0,1,1,2,2,2,3; predictions below.
    target = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2, 2, 3])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0, 2, 3, 3, 3])
    logits = torch.nn.functional.one_hot(predicted, 4).float()
    metrics = expression_metrics("val/", 4)
    metrics.update(logits, target)
    values = metrics.compute()
    # WAR = 6 correct / 10; UAR = mean(3/4, 1/2, 1/3, 1/1).
    assert values["val/war"].item() == pytest.approx(0.6)
    assert values["val/uar"].item() == pytest.approx((0.75 + 0.5 + 1 / 3 + 1.0) / 4)


def tiny_module(**overrides):
    network = dict(clip_name_or_path="builtin:tiny-clip", random_init=True, num_frames=4, num_context=2,
                   gate_heads=4, temporal_heads=4, temporal_mlp_dim=64)
    return DferClipModule(network=network, **overrides)



def test_parameter_groups_get_their_learning_rates_and_schedule():
    module = tiny_module(lr_image_encoder=1e-5, lr_temporal=1e-2, lr_prompt=1e-3, optimizer="sgd",
                         scheduler="multistep", milestones=[30, 40])
    config = module.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs = {group["name"]: group["lr"] for group in optimizer.param_groups}
    assert lrs == {"image_encoder": 1e-5, "temporal": 1e-2, "prompt": 1e-3}
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    assert sorted(scheduler.milestones) == [30, 40]
    grouped = {id(p) for group in optimizer.param_groups for p in group["params"]}
    trainable = {id(p) for p in module.parameters() if p.requires_grad}
    assert grouped == trainable  # the frozen text tower is in no group


def test_checkpoint_round_trip_gives_identical_outputs(tmp_path):
    path = save_stage1_checkpoint(tmp_path / "m.ckpt", seed=3)
    first, second = load_stage1(path).eval(), load_stage1(path).eval()
    pixels = torch.randn(2, 4, 3, 48, 48)
    with torch.no_grad():
        a, b = first(pixels), second(pixels)
    torch.testing.assert_close(a.cosine, b.cosine, rtol=0, atol=0)
    torch.testing.assert_close(a.video_features, b.video_features, rtol=0, atol=0)
    assert first.hparams.network["num_frames"] == 4 and first.hparams.network["tau"] == 0.01
    # The checkpoint carries the resolved preprocessing, so nothing downstream re-declares it.
    assert first.hparams.network["image_size"] == 48 and len(first.hparams.network["image_mean"]) == 3
    assert first.net.config == second.net.config


def test_network_config_is_received_not_copied():
    module = tiny_module()
    assert set(module.hparams) == {"network", "optimizer", "lr_image_encoder", "lr_temporal", "lr_prompt", "momentum",
                                   "weight_decay", "scheduler", "milestones", "gamma", "label_smoothing"}
    seven = DferClipModule(network=dict(
        clip_name_or_path="builtin:tiny-clip", random_init=True, num_frames=4, num_context=2, gate_heads=4,
        temporal_heads=4, temporal_mlp_dim=64,
        class_names=("neutral", "happiness", "surprise", "anger", "sadness", "disgust", "fear")))
    assert seven.net(torch.randn(1, 4, 3, 48, 48)).cosine.shape == (1, 7)
    assert seven.num_classes == 7


def test_torch_threads_callback_sets_and_restores_the_thread_count():
    import torch

    from dfer_pd.stage1.module import TorchThreads

    before = torch.get_num_threads()
    callback = TorchThreads(threads=3)
    callback.setup(None, None, "fit")
    assert torch.get_num_threads() == 3
    callback.teardown(None, None, "fit")
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads must be at least 1"):
        TorchThreads(threads=0)
