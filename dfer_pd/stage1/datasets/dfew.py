"""DFEW in its official layout: the paper's four classes, or the standard seven.

Layout (DFEW's release, as read by DFER-CLIP's ``annotation/preprocess_annotation.py`` and MAE-DFER's
``preprocess/dfew.py``):

- frames: ``Clip/clip_224x224/<5-digit id>/<id>_<5-digit frame>.jpg`` (face-aligned),
  ``Clip/clip_224x224_16f/<id>/1.jpg ... 16.jpg``, or the videos ``Clip/original/<id>.mp4``;
- splits: ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv`` with columns
  ``video_name,label`` (some copies spell the folder ``single_labeled``);
- labels 1..7: happy, sad, neutral, angry, surprise, disgust, fear.

``classes=7`` gives all seven in DFEW's id order (label - 1, the order DFER-CLIP reports), to compare with
the published 7-class WAR/UAR; ``classes=4`` (the paper's) keeps neutral, happiness, surprise and anger in
stage 2's order and drops the other clips.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Literal

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.common.video import VIDEO_SUFFIXES
from dfer_pd.stage1.datasets.base import ClipDataModule, ClipLayoutError, ClipRecord, Split

FrameSource = Literal["clip_224x224", "clip_224x224_16f", "original"]

# The release's layout and label ids (a light module, so the synthetic writer needs no Lightning).
from dfer_pd.stage1.datasets.dfew_layout import (  # noqa: E402,F401
    CLIP_DIR, DFEW_CLASSES, DFEW_LABELS, NUM_FOLDS, SPLIT_DIR, SPLIT_ROOT, VIDEOS_DIR,
)


class DfewLayoutError(ClipLayoutError):
    """The DFEW root does not have the official layout."""


def split_file(root: Path, split: Split, fold: int) -> Path:
    """`EmoLabel_DataSplit/<split>(single-labeled)/set_<fold>.csv`; some copies spell it `single_labeled`."""
    if fold not in range(1, NUM_FOLDS + 1):
        raise ValueError(f"DFEW fold must be 1..{NUM_FOLDS}, got {fold}")
    base = Path(root) / SPLIT_ROOT
    for folder in (SPLIT_DIR, SPLIT_DIR.replace("-", "_")):
        path = base / folder.format(split=split) / f"set_{fold}.csv"
        if path.is_file():
            return path
    raise DfewLayoutError(f"{base}/{SPLIT_DIR.format(split=split)}/set_{fold}.csv not found under DFEW root {root}")


def read_split(path: Path) -> list[tuple[str, int]]:
    """(5-digit clip id, DFEW label id) rows of one split file."""
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"video_name", "label"} - set(reader.fieldnames or ())
        if missing:
            raise DfewLayoutError(f"{path}: missing column(s) {sorted(missing)}; expected video_name,label")
        for line, row in enumerate(reader, start=2):
            try:
                label = int(row["label"])
            except (TypeError, ValueError):
                raise DfewLayoutError(f"{path}:{line}: label {row['label']!r} is not an integer 1..7") from None
            if label not in DFEW_LABELS:
                raise DfewLayoutError(f"{path}:{line}: label {label} is outside DFEW's ids 1..7")
            try:
                clip_id = f"{int(row['video_name']):05d}"
            except (TypeError, ValueError):
                raise DfewLayoutError(f"{path}:{line}: video_name {row['video_name']!r} is not a clip number") from None
            rows.append((clip_id, label))
    return rows


def clip_path(root: Path, clip_id: str, frames: FrameSource) -> Path:
    """Where a clip's frames live for the chosen source."""
    clip_dir = Path(root) / CLIP_DIR
    if frames == VIDEOS_DIR:
        for suffix in VIDEO_SUFFIXES:
            candidate = clip_dir / VIDEOS_DIR / f"{clip_id}{suffix}"
            if candidate.exists():
                return candidate
        return clip_dir / VIDEOS_DIR / f"{clip_id}.mp4"
    return clip_dir / frames / clip_id


def dfew_records(root: Path, split: Split, fold: int, frames: FrameSource, classes: Literal[4, 7] = 4) -> list[ClipRecord]:
    """The split's clips of the chosen classes, labels indexing ``DFEW_CLASSES[classes]``."""
    if classes not in DFEW_CLASSES:
        raise ValueError(f"DFEW classes must be 4 or 7, got {classes!r}")
    index = {name: i for i, name in enumerate(DFEW_CLASSES[classes])}
    return [
        ClipRecord(key=clip_id, path=clip_path(root, clip_id, frames), label=index[DFEW_LABELS[label]])
        for clip_id, label in read_split(split_file(root, split, fold))
        if DFEW_LABELS[label] in index
    ]


def four_class_records(root: Path, split: Split, fold: int, frames: FrameSource) -> list[ClipRecord]:
    """The split's clips of the paper's four classes, labels in EXPRESSIONS order."""
    return dfew_records(root, split, fold, frames, classes=4)


class DfewDataModule(ClipDataModule):
    """DFEW fold ``fold`` (1..5): its training set minus a seeded, stratified validation split; its test set.

    Args:
        root: the DFEW root (holding ``Clip/`` and ``EmoLabel_DataSplit/``).
        fold: the official fold, 1..5.
        classes: 4 (the paper's neutral, happiness, surprise, anger) or 7 (DFEW's standard classes).
        frames: ``clip_224x224`` (face-aligned frames), ``clip_224x224_16f`` or ``original`` (videos).
    """

    name = "DFEW"
    layout_error = DfewLayoutError

    def __init__(
        self,
        root: str,
        fold: int = 1,
        classes: Literal[4, 7] = 4,
        frames: FrameSource = "clip_224x224",
        **kwargs,
    ) -> None:
        if fold not in range(1, 6):
            raise ValueError(f"DFEW fold must be 1..5, got {fold}")
        if classes not in DFEW_CLASSES:
            raise ValueError(f"DFEW classes must be 4 or 7, got {classes!r}")
        super().__init__(root, **kwargs)
        self._set_class_names(DFEW_CLASSES[classes])

    def describe(self, split: str) -> str:
        return f"DFEW {split} fold {self.hparams.fold}"

    def split_records(self, split: Split) -> list[ClipRecord]:
        hp = self.hparams
        return dfew_records(Path(hp.root), split, hp.fold, hp.frames, hp.classes)
