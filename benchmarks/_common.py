"""Shared by the benchmarks: a from_pretrained-able CLIP folder with openai/clip-vit-base-patch32's sizes."""

from __future__ import annotations

from pathlib import Path

from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

from dfer_pd.stage1.clip_assets import BUILTIN_TINY_CLIP, load_tokenizer

VIT_B32 = "vit-b32-random"


def save_random_vit_b32(folder: str | Path) -> Path:
    """`CLIPConfig()` is ViT-B/32 at 224 px with a 512-d text tower; random weights run as fast as trained ones."""
    folder = Path(folder)
    if not (folder / "config.json").exists():
        CLIPModel(CLIPConfig()).save_pretrained(folder)
        load_tokenizer(BUILTIN_TINY_CLIP).save_pretrained(folder)  # OpenAI CLIP's tokenizer
        CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224}).save_pretrained(folder)
    return folder
