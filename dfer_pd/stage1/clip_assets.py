"""Where CLIP comes from: a Hugging Face checkpoint (hub id or local folder) or the packaged tiny CLIP.

The packaged `builtin:tiny-clip` is a CLIP config small enough to train on a CPU in minutes, used by
the demo and the tests. It ships no weights (it is built from its config under a seed) and shares the
packaged OpenAI CLIP tokenizer, so prompts tokenize exactly as they do with a real checkpoint.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import torch
from transformers import AutoTokenizer, CLIPConfig, CLIPModel, PreTrainedTokenizerBase
from transformers.image_processing_base import ImageProcessingMixin
from transformers.image_utils import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD

ASSETS_DIR = Path(__file__).resolve().parents[1] / "assets"
CLIP_TOKENIZER_DIR = ASSETS_DIR / "clip_tokenizer"
TINY_CLIP_DIR = ASSETS_DIR / "tiny_clip"
BUILTIN_TINY_CLIP = "builtin:tiny-clip"
PREPROCESSOR_FILE = "preprocessor_config.json"


class ClipCheckpointError(OSError):
    """A CLIP checkpoint could not be found or read (missing folder, hub not reachable offline)."""


def resolve_clip_path(name_or_path: str | os.PathLike) -> str:
    """The packaged folder for the builtin name; hub ids and local folders unchanged."""
    name = str(name_or_path)
    return str(TINY_CLIP_DIR) if name == BUILTIN_TINY_CLIP else name


def _resolve_tokenizer_path(name_or_path: str | os.PathLike) -> str:
    """The builtin tiny CLIP shares the packaged OpenAI CLIP tokenizer instead of shipping a second copy."""
    name = str(name_or_path)
    return str(CLIP_TOKENIZER_DIR) if name == BUILTIN_TINY_CLIP else name


def _looks_local(name: str) -> bool:
    """True for things that can only be a filesystem path (a hub id is `name` or `org/name`)."""
    return (
        os.path.isabs(name)
        or name.startswith((".", "~"))
        or "\\" in name
        or name.count("/") > 1
        or os.path.exists(os.path.expanduser(name))
    )


def _check_source(name: str, what: str) -> str:
    """Expand `~` and fail early, naming the path, when a local-looking path does not exist."""
    expanded = os.path.expanduser(name)
    if _looks_local(name) and not os.path.isdir(expanded):
        raise ClipCheckpointError(f"{name}: no such folder (expected a {what} saved with save_pretrained)")
    return expanded


def _load_error(name: str, what: str, error: OSError) -> ClipCheckpointError:
    """Say whether a local folder lacks files or a hub id is unreachable."""
    if os.path.isdir(os.path.expanduser(name)):
        return ClipCheckpointError(f"{name}: not a readable {what} folder ({error})")
    return ClipCheckpointError(
        f"could not load the {what} '{name}': it is not a local folder and is not in the Hugging Face cache "
        f"(no network here?). Download it once, or pass a local folder saved with save_pretrained. ({error})"
    )


def load_clip(name_or_path: str | os.PathLike, random_init: bool = False, seed: int = 0) -> CLIPModel:
    """A float32 CLIPModel: pretrained weights, or (random_init) freshly initialised from the config under `seed`."""
    name = resolve_clip_path(name_or_path)
    source = _check_source(name, "CLIP checkpoint")
    try:
        if not random_init:
            return CLIPModel.from_pretrained(source).float()
        config = CLIPConfig.from_pretrained(source)
    except OSError as error:
        raise _load_error(name, "CLIP checkpoint", error) from error
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return CLIPModel(config).float()


def load_tokenizer(name_or_path: str | os.PathLike) -> PreTrainedTokenizerBase:
    """The checkpoint's CLIP tokenizer (the packaged OpenAI CLIP tokenizer for the builtin tiny CLIP)."""
    name = _resolve_tokenizer_path(name_or_path)
    source = _check_source(name, "CLIP tokenizer")
    try:
        return AutoTokenizer.from_pretrained(source)
    except OSError as error:
        raise _load_error(name, "CLIP tokenizer", error) from error


def _processor_size(processor: dict) -> int | None:
    """Side of the square image the processor hands the model (crop size, else resize size)."""
    for key in (("crop_size",) if processor.get("do_center_crop", True) else ()) + ("size",):
        value = processor.get(key)
        if isinstance(value, int):
            return value
        if isinstance(value, dict):
            for side in ("height", "shortest_edge"):
                if side in value:
                    return int(value[side])
    return None


def load_image_normalisation(
    name_or_path: str | os.PathLike,
) -> tuple[tuple[float, ...], tuple[float, ...], int]:
    """(mean, std, size) from the checkpoint's image processor config; CLIP's own values when it has none."""
    name = resolve_clip_path(name_or_path)
    source = _check_source(name, "CLIP checkpoint")
    try:
        processor, _ = ImageProcessingMixin.get_image_processor_dict(source)
    except OSError:
        processor = {}
    mean = tuple(float(v) for v in processor.get("image_mean", OPENAI_CLIP_MEAN))
    std = tuple(float(v) for v in processor.get("image_std", OPENAI_CLIP_STD))
    size = _processor_size(processor)
    if size is None:
        try:
            size = int(CLIPConfig.from_pretrained(source).vision_config.image_size)
        except OSError as error:
            raise _load_error(name, "CLIP checkpoint", error) from error
    return mean, std, size


def save_tiny_clip(out_dir: str | os.PathLike, seed: int = 0) -> Path:
    """Write a complete from_pretrained-able tiny CLIP folder (weights, tokenizer, image processor)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    load_clip(BUILTIN_TINY_CLIP, random_init=True, seed=seed).save_pretrained(out)
    load_tokenizer(BUILTIN_TINY_CLIP).save_pretrained(out)
    shutil.copyfile(TINY_CLIP_DIR / PREPROCESSOR_FILE, out / PREPROCESSOR_FILE)
    return out
