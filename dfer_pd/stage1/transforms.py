"""Clip-level image transforms: one set of random parameters for every frame of a clip.

torchvision's v2 transforms treat a ``tv_tensors.Video`` (T, C, H, W) as one sample, so a random
resized crop, flip or brightness change is drawn once and applied to all T frames alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD


def build_clip_transform(
    train: bool,
    size: int = 224,
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
    brightness: float = 0.5,
    crop_scale: tuple[float, float] = (0.08, 1.0),
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
    hflip_p: float = 0.5,
) -> v2.Compose:
    """DFER-CLIP's recipe: train = random resized crop, flip, brightness jitter; eval = resize only."""
    if train:
        geometric = [
            v2.RandomResizedCrop(size, scale=crop_scale, ratio=crop_ratio, antialias=True),
            v2.RandomHorizontalFlip(hflip_p),
        ]
        photometric = [v2.ColorJitter(brightness=brightness)] if brightness > 0 else []
    else:
        geometric = [v2.Resize((size, size), antialias=True)]
        photometric = []
    return v2.Compose(
        [*geometric, *photometric, v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]
    )


def frames_to_video(frames: np.ndarray) -> tv_tensors.Video:
    """(T, H, W, 3) uint8 RGB frames -> a (T, 3, H, W) uint8 Video tensor."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (T, H, W, 3), got {frames.shape}")
    return tv_tensors.Video(torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2))
