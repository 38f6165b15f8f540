"""A synthetic DFEW written in DFEW's on-disk layout: frame folders, optional mp4s and the five split files.

:func:`make_dfew_tree` writes ``Clip/clip_224x224/<id>/<id>_<frame>.jpg`` and
``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv`` like DFEW, with clips of the
three classes the paper does not use and clips shorter than 16 frames, so loaders meet what DFEW has.
"""

from __future__ import annotations

import csv
import json
import math
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from dfer_pd.common.errors import UsageError
from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.common.parallel import resolve_workers
from dfer_pd.stage1.datasets.dfew_layout import CLIP_DIR, DFEW_LABELS, NUM_FOLDS, SPLIT_DIR, SPLIT_ROOT, VIDEOS_DIR
from dfer_pd.synthetic.encode import encode_mp4
from dfer_pd.synthetic.render import (
    expression_profile, render_face, sample_head_motion, sample_identity, slow_drift,
)
from dfer_pd.synthetic.writers import write_recordings

# The reader's layout (dfer_pd.stage1.datasets.dfew), relative to the dataset root.
DFEW_SPLIT_DIRS: dict[str, str] = {split: f"{SPLIT_ROOT}/{SPLIT_DIR.format(split=split)}" for split in ("train", "test")}
DFEW_FRAMES_DIR = f"{CLIP_DIR}/clip_224x224"
DFEW_VIDEOS_DIR = f"{CLIP_DIR}/{VIDEOS_DIR}"
# Clips shorter than this many frames exercise the loaders' "repeat the last frame" path (M = 16).
_SHORT_CLIP_FRAMES = 16
# DFEW classes outside the paper's four; rendered with their own faces so a four-class filter must drop them.
_OTHER_DFEW_IDS: tuple[int, ...] = tuple(i for i in sorted(DFEW_LABELS) if DFEW_LABELS[i] not in EXPRESSIONS)
_EXPRESSION_TO_DFEW_ID: dict[str, int] = {name: i for i, name in DFEW_LABELS.items()}
# The renderer's names of the other three classes.
_RENDER_NAMES: dict[str, str] = {"sadness": "sad", "disgust": "disgust", "fear": "fear"}


def _dfew_label_plan(num_clips: int, other_class_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """DFEW ids per clip: balanced over the four used classes plus a share of sad/disgust/fear."""
    num_other = int(round(num_clips * other_class_fraction))
    used = [_EXPRESSION_TO_DFEW_ID[EXPRESSIONS[k % len(EXPRESSIONS)]] for k in range(num_clips - num_other)]
    other = [_OTHER_DFEW_IDS[k % len(_OTHER_DFEW_IDS)] for k in range(num_other)]
    return rng.permutation(np.array(used + other, dtype=np.int64))


def _dfew_folds(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Test fold (0..4) per clip, stratified by label: the five test sets partition the clips."""
    folds = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        folds[members] = (offset + np.arange(len(members))) % NUM_FOLDS
        offset += len(members)  # continue the round-robin so small classes do not all land in fold 1
    return folds




def _dfew_clip_weights(
    label: int, num_frames: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per-frame expression weights of one clip: onset, apex, maybe offset of its labelled expression."""
    names: tuple[str, ...] = EXPRESSIONS + ("sad", "disgust", "fear")
    t = np.arange(num_frames) / max(num_frames - 1, 1)
    weights = np.zeros((num_frames, len(names)))
    # A little leakage of other expressions, as in real footage.
    weights[:, 1:] = slow_drift(rng, t, 0.08, len(names) - 1, max_rate=1.0)
    name = _RENDER_NAMES.get(DFEW_LABELS[label], DFEW_LABELS[label])
    if name != "neutral":
        amplitude = rng.uniform(0.6, 1.0)
        start = rng.uniform(0.0, 0.2)
        onset = rng.uniform(0.08, 0.25)
        has_offset = rng.random() < 0.5
        release_start = rng.uniform(0.75, 0.9) if has_offset else math.inf
        release, residual = rng.uniform(0.1, 0.25), rng.uniform(0.3, 0.6)
        profile = expression_profile(t, start, onset, release_start, release, residual)
        weights[:, names.index(name)] = amplitude * profile
    return weights, names


def _dfew_clip_lengths(
    num_clips: int, min_frames: int, max_frames: int, short_clip_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    num_short = int(round(num_clips * short_clip_fraction))
    if short_clip_fraction > 0 and num_clips >= 1:
        num_short = max(num_short, 1)
    if num_short and min_frames >= _SHORT_CLIP_FRAMES:
        raise UsageError(
            f"short_clip_fraction={short_clip_fraction} asks for clips under {_SHORT_CLIP_FRAMES} frames "
            f"but min_frames={min_frames}"
        )
    short = rng.integers(min_frames, min(max_frames, _SHORT_CLIP_FRAMES - 1) + 1, size=num_short)
    long_low = max(min_frames, _SHORT_CLIP_FRAMES) if max_frames >= _SHORT_CLIP_FRAMES else min_frames
    regular = rng.integers(long_low, max_frames + 1, size=num_clips - num_short)
    return rng.permutation(np.concatenate([short, regular]))


def _write_clip(task: tuple[str, int, int, np.random.SeedSequence], root: Path, size: int, write_mp4: bool) -> None:
    """Render and write one clip from its own seed (in a worker process or not)."""
    name, label, num_frames, clip_seed = task
    rng = np.random.default_rng(clip_seed)
    identity = sample_identity(rng)
    weights, names = _dfew_clip_weights(label, num_frames, rng)
    poses = sample_head_motion(rng, num_frames)
    frames = [render_face(identity, w, size, rng, pose, names) for w, pose in zip(weights, poses)]
    clip_dir = root / DFEW_FRAMES_DIR / name
    clip_dir.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(clip_dir / f"{name}_{index:05d}.jpg", quality=90)
    if write_mp4:
        encode_mp4(root / DFEW_VIDEOS_DIR / f"{name}.mp4", np.stack(frames), fps=25)


def make_dfew_tree(
    root: str | Path,
    num_clips: int = 120,
    min_frames: int = 8,
    max_frames: int = 40,
    size: int = 64,
    seed: int = 0,
    other_class_fraction: float = 0.1,
    short_clip_fraction: float = 0.05,
    write_mp4: bool = False,
    workers: int | None = 1,
) -> Path:
    """Write a synthetic DFEW in DFEW's on-disk layout and return ``root``.

    Args:
        root: output folder (created; existing synthetic files are overwritten).
        num_clips: number of single-labelled clips (at least 5, one per fold).
        min_frames: fewest frames in a clip.
        max_frames: most frames in a clip.
        size: frame side in pixels (the folder keeps DFEW's name ``clip_224x224``).
        seed: random seed; the same seed and arguments give byte-identical files.
        other_class_fraction: share of clips labelled sad/disgust/fear (DFEW ids 2, 6, 7), which a
            four-class loader must drop; the rest is balanced over neutral, happy, surprise, angry.
        short_clip_fraction: share of clips shorter than 16 frames (at least one when > 0).
        write_mp4: also write ``Clip/original/<id>.mp4`` (H.264, 25 fps; needs an even ``size``).
        workers: processes rendering clips; 0 or None = all CPUs, 1 = this process. The files are
            the same for any number.

    Layout: ``Clip/clip_224x224/<5-digit id>/<id>_<5-digit frame>.jpg`` (frames from 00001),
    ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv`` with ``video_name,label``
    (DFEW ids 1..7); the five test sets partition the clips and train set k is the rest. Also
    ``synthetic_info.json`` with the arguments and label counts.
    """
    if num_clips < NUM_FOLDS:
        raise UsageError(f"num_clips must be at least {NUM_FOLDS} (one per fold), got {num_clips}")
    if not 1 <= min_frames <= max_frames:
        raise UsageError(f"need 1 <= min_frames <= max_frames, got {min_frames} and {max_frames}")
    if not 0.0 <= other_class_fraction < 1.0 or not 0.0 <= short_clip_fraction <= 1.0:
        raise UsageError(
            f"need 0 <= other_class_fraction < 1 and 0 <= short_clip_fraction <= 1, "
            f"got {other_class_fraction} and {short_clip_fraction}"
        )
    if write_mp4 and size % 2:
        raise UsageError(f"write_mp4 needs an even size for H.264 yuv420p, got {size}")
    resolve_workers(workers)  # a bad value fails before anything is written
    root = Path(root)
    plan_seed, *clip_seeds = np.random.SeedSequence(seed).spawn(num_clips + 1)
    plan_rng = np.random.default_rng(plan_seed)
    labels = _dfew_label_plan(num_clips, other_class_fraction, plan_rng)
    lengths = _dfew_clip_lengths(num_clips, min_frames, max_frames, short_clip_fraction, plan_rng)
    folds = _dfew_folds(labels, plan_rng)
    video_names = [f"{i + 1:05d}" for i in range(num_clips)]

    tasks = [(name, int(label), int(num_frames), clip_seed)
             for name, label, num_frames, clip_seed in zip(video_names, labels, lengths, clip_seeds)]
    write_recordings(partial(_write_clip, root=root, size=size, write_mp4=write_mp4), tasks, video_names, workers,
                     "synthetic DFEW clips", "clip")

    for split, directory in DFEW_SPLIT_DIRS.items():
        (root / directory).mkdir(parents=True, exist_ok=True)
        for fold in range(NUM_FOLDS):
            keep = folds == fold if split == "test" else folds != fold
            with open(root / directory / f"set_{fold + 1}.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["video_name", "label"])
                writer.writerows([video_names[i], int(labels[i])] for i in np.flatnonzero(keep))

    info = {
        "generator": "dfer_pd.synthetic.dfew.make_dfew_tree",
        "seed": seed, "num_clips": num_clips, "min_frames": min_frames, "max_frames": max_frames,
        "size": size, "other_class_fraction": other_class_fraction,
        "short_clip_fraction": short_clip_fraction, "write_mp4": write_mp4,
        "label_counts": {str(k): int((labels == k).sum()) for k in sorted(DFEW_LABELS)},
        "num_short_clips": int((lengths < _SHORT_CLIP_FRAMES).sum()),
        "num_frames_total": int(lengths.sum()),
    }
    (root / "synthetic_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return root
