"""DFEW read in its official layout, restricted to the four classes the paper uses."""

from __future__ import annotations

import csv
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import lightning as L
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader

from dfer_pd.common.constants import DFEW_ID_TO_CLASS, EXPRESSIONS
from dfer_pd.stage1.datasets.base import ClipRecord, VideoClipDataset, check_readable
from dfer_pd.stage1.transforms import build_clip_transform
from dfer_pd.common.video import VIDEO_SUFFIXES

log = logging.getLogger(__name__)

FrameSource = Literal["clip_224x224", "clip_224x224_16f", "original"]


class DfewLayoutError(FileNotFoundError):
    """The DFEW root does not have the official layout."""


def split_file(root: Path, split: Literal["train", "test"], fold: int) -> Path:
    """`EmoLabel_DataSplit/<split>(single-labeled)/set_<fold>.csv`; some copies spell it `single_labeled`."""
    if fold not in range(1, 6):
        raise ValueError(f"DFEW fold must be 1..5, got {fold}")
    base = Path(root) / "EmoLabel_DataSplit"
    for spelling in ("single-labeled", "single_labeled"):
        path = base / f"{split}({spelling})" / f"set_{fold}.csv"
        if path.is_file():
            return path
    raise DfewLayoutError(f"{base}/{split}(single-labeled)/set_{fold}.csv not found under DFEW root {root}")


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
            except ValueError:
                raise DfewLayoutError(f"{path}:{line}: label {row['label']!r} is not an integer 1..7") from None
            if not 1 <= label <= 7:
                raise DfewLayoutError(f"{path}:{line}: label {label} is outside DFEW's ids 1..7")
            rows.append((f"{int(row['video_name']):05d}", label))
    return rows


def clip_path(root: Path, clip_id: str, frames: FrameSource) -> Path:
    """Where a clip's frames live for the chosen source."""
    clip_dir = Path(root) / "Clip"
    if frames == "original":
        for suffix in VIDEO_SUFFIXES:
            candidate = clip_dir / "original" / f"{clip_id}{suffix}"
            if candidate.exists():
                return candidate
        return clip_dir / "original" / f"{clip_id}.mp4"
    return clip_dir / frames / clip_id


def four_class_records(root: Path, split: Literal["train", "test"], fold: int, frames: FrameSource) -> list[ClipRecord]:
    """The split's clips of the four used classes, labels mapped to EXPRESSIONS order."""
    return [
        ClipRecord(key=clip_id, path=clip_path(root, clip_id, frames), label=DFEW_ID_TO_CLASS[label])
        for clip_id, label in read_split(split_file(root, split, fold))
        if label in DFEW_ID_TO_CLASS
    ]


def class_counts(records: Sequence[ClipRecord]) -> dict[str, int]:
    counts = Counter(r.label for r in records)
    return {name: counts.get(i, 0) for i, name in enumerate(EXPRESSIONS)}


class DfewDataModule(L.LightningDataModule):
    """DFEW fold `fold` (1..5): train minus a seeded, stratified validation split; the official test set.

    Model selection uses the validation split carved from the training fold; the test set is only for the
    final evaluation of the selected checkpoint. Missing or unreadable clips are logged by id with a
    count and excluded; `skip_unreadable=False` turns them into an error instead.
    """

    def __init__(
        self,
        root: str,
        fold: int = 1,
        frames: FrameSource = "clip_224x224",
        num_frames: int = 16,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 4,
        persistent_workers: bool = True,
        pin_memory: bool = True,
        val_fraction: float = 0.1,
        split_seed: int = 0,
        clip_name_or_path: str = "openai/clip-vit-base-patch32",
        image_size: int | None = None,
        brightness: float = 0.5,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        skip_unreadable: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.skipped: dict[str, str] = {}
        self.split_counts: dict[str, dict[str, int]] = {}

    def _normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...], int]:
        from dfer_pd.stage1.clip_assets import load_image_normalisation

        mean, std, size = load_image_normalisation(self.hparams.clip_name_or_path)
        return tuple(mean), tuple(std), int(self.hparams.image_size or size)

    def _readable(self, records: list[ClipRecord], split: str) -> list[ClipRecord]:
        readable, failed = check_readable(records)
        if failed:
            listing = "; ".join(f"{key}: {problem}" for key, problem in sorted(failed.items())[:20])
            message = f"DFEW {split} fold {self.hparams.fold}: {len(failed)} of {len(records)} clips missing or unreadable ({listing}{' ...' if len(failed) > 20 else ''})"
            if not self.hparams.skip_unreadable:
                raise DfewLayoutError(message)
            log.warning(message)
            self.skipped.update(failed)
        return readable

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        mean, std, size = self._normalisation()
        train_tf = build_clip_transform(True, size, mean, std, brightness=hp.brightness, crop_scale=tuple(hp.crop_scale))
        eval_tf = build_clip_transform(False, size, mean, std)
        if stage in (None, "fit", "validate") and not hasattr(self, "train_set"):
            records = self._readable(four_class_records(Path(hp.root), "train", hp.fold, hp.frames), "train")
            train_records, val_records = train_test_split(
                records,
                test_size=hp.val_fraction,
                random_state=hp.split_seed,
                stratify=[r.label for r in records],
            )
            self.train_set = VideoClipDataset(train_records, hp.num_frames, True, train_tf)
            self.val_set = VideoClipDataset(val_records, hp.num_frames, False, eval_tf)
            self.split_counts["train"] = class_counts(train_records)
            self.split_counts["val"] = class_counts(val_records)
        if stage in (None, "test") and not hasattr(self, "test_set"):
            records = self._readable(four_class_records(Path(hp.root), "test", hp.fold, hp.frames), "test")
            self.test_set = VideoClipDataset(records, hp.num_frames, False, eval_tf)
            self.split_counts["test"] = class_counts(records)
        for split, counts in self.split_counts.items():
            log.info("DFEW fold %d %s: %s", hp.fold, split, counts)

    def _loader(self, dataset: VideoClipDataset, shuffle: bool, batch_size: int) -> DataLoader:
        workers = self.hparams.num_workers
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=shuffle and len(dataset) > batch_size,
            num_workers=workers,
            persistent_workers=self.hparams.persistent_workers and workers > 0,
            pin_memory=self.hparams.pin_memory and torch.cuda.is_available(),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True, self.hparams.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False, self.hparams.eval_batch_size or self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, False, self.hparams.eval_batch_size or self.hparams.batch_size)
