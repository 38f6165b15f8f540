"""Stage 1 from a CLIP folder of openai/clip-vit-base-patch32's sizes, as a user with downloaded weights runs it:
`--model.network.clip_name_or_path <folder>` loads the folder's weights (from_pretrained), and one step trains."""

from pathlib import Path

import torch
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from dfer_pd.commands.train_dfer import main as train_dfer
from dfer_pd.stage1.clip_assets import BUILTIN_TINY_CLIP, load_tokenizer
from dfer_pd.synthetic.dfew import make_dfew_tree

DEMO = str(Path(__file__).resolve().parents[2] / "experiments" / "dfer_demo.yaml")
TEXT_KEY = "text_model.encoder.layers.0.self_attn.q_proj.weight"
VISION_KEY = "vision_model.encoder.layers.11.mlp.fc2.weight"


def save_vit_b32_folder(folder: Path) -> dict[str, torch.Tensor]:
    """A from_pretrained-able folder like a download of openai/clip-vit-base-patch32: ViT-B/32 at 224 px and the
    512-wide text tower (`CLIPConfig()`), random weights, OpenAI CLIP's tokenizer and image processor."""
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig())
    model.save_pretrained(folder)
    load_tokenizer(BUILTIN_TINY_CLIP).save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(folder)
    state = model.state_dict()
    return {key: state[key].clone() for key in (TEXT_KEY, VISION_KEY)}


def test_one_training_step_from_a_saved_vit_b32_folder(tmp_path):
    folder = tmp_path / "clip-vit-base-patch32"
    saved = save_vit_b32_folder(folder)
    assert CLIPConfig.from_pretrained(folder).vision_config.patch_size == 32
    root = make_dfew_tree(tmp_path / "DFEW", num_clips=20, max_frames=12, size=32, seed=4)
    out = tmp_path / "run"
    train_dfer([
        "--config", DEMO, "--data.root", str(root), "--trainer.default_root_dir", str(out),
        "--model.network.clip_name_or_path", str(folder), "--model.network.random_init", "false",
        "--model.network.num_frames", "2", "--model.optimizer", "sgd", "--model.momentum", "0",
        "--data.batch_size", "2", "--data.num_workers", "0", "--data.val_fraction", "0.25", "--data.frame_cache_mb", "0",
        "--trainer.max_steps", "1", "--trainer.limit_val_batches", "2",  # "1" could parse as 1.0 = all batches
        "--trainer.num_sanity_val_steps", "0", "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(out),
        "--skip_test", "true",
    ])
    checkpoint = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True, mmap=True)
    assert checkpoint["global_step"] == 1
    network = checkpoint["hyper_parameters"]["network"]
    assert network["clip_name_or_path"] == str(folder) and network["image_size"] == 224 and not network["random_init"]
    weights = checkpoint["state_dict"]
    # The frozen text tower is the folder's, bit for bit: the weights were loaded, not initialised afresh.
    assert torch.equal(weights[f"net.text_encoder.{TEXT_KEY}"], saved[TEXT_KEY])
    # The image encoder started from the folder's weights and took one step.
    vision = weights[f"net.{VISION_KEY}"]
    assert not torch.equal(vision, saved[VISION_KEY])
    assert (vision - saved[VISION_KEY]).abs().max() < 1e-2
