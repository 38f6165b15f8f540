"""Clip classification for stage 1: clip records, the readability check, and the DataModule every dataset shares.

A dataset is one file beside this one (``dfew.py``, ``ferv39k.py``, ``mafw.py``): a subclass of
:class:`ClipDataModule` that knows only its official layout, i.e. which clips each split holds and their
labels (:meth:`ClipDataModule.split_records`), and its ``class_names``. Everything else lives here, once:
the seeded, stratified validation split carved from the training split, the readability check with the
skipped-clip report, the clip transform with the CLIP checkpoint's normalisation, the loaders, and the
per-split class counts that ``DferClipModule.on_fit_start`` logs.

Class names are the canonical lowercase names of :data:`CANONICAL_CLASSES`; a label is an index into its
data module's ``class_names``. Stage 2 needs four of them by name: :func:`check_stage2_classes`.
"""

from __future__ import annotations

import functools
import logging
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dfer_pd.common.errors import UsageError
from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.common.frame_cache import FrameFolderCache
from dfer_pd.common.video import VideoReadError, count_frames, read_clip
from dfer_pd.stage1.transforms import build_clip_transform, frames_to_video

log = logging.getLogger(__name__)

Split = Literal["train", "test"]

# Every class name a dataset may use: DFEW's and FERV39k's seven, and MAFW's four more.
CANONICAL_CLASSES: tuple[str, ...] = (
    "neutral", "happiness", "surprise", "anger", "sadness", "disgust", "fear",
    "contempt", "anxiety", "helplessness", "disappointment",
)


@dataclass(frozen=True)
class ClipRecord:
    """One clip: a stable key (DFEW id or subject/expression), where it lives, and its class (-1 if none)."""

    key: str
    path: Path
    label: int = -1


class ClipLayoutError(FileNotFoundError):
    """A dataset root, split file or label line does not match the dataset's official layout."""


def check_readable(records: Sequence[ClipRecord], workers: int = 8) -> tuple[list[ClipRecord], dict[str, str]]:
    """Split records into readable ones and {key: problem}; nothing is dropped without a reason."""

    def probe(record: ClipRecord) -> str | None:
        try:
            count_frames(record.path)
        except VideoReadError as err:
            return str(err)
        return None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        problems = list(pool.map(probe, records))
    readable = [r for r, p in zip(records, problems) if p is None]
    failed = {r.key: p for r, p in zip(records, problems) if p is not None}
    return readable, failed


def check_stage2_classes(class_names: Sequence[str], dataset: str = "the dataset") -> dict[str, int]:
    """Where stage 2's four expressions sit in a dataset's classes, found by name.

    Returns ``{name: index into class_names}`` in :data:`EXPRESSIONS` order (neutral, happiness, surprise,
    anger), so ``list(result.values())`` picks a 4-class view out of the dataset's logits or cosines.
    Raises ValueError naming the dataset and the missing classes when any of the four is absent.
    """
    names = tuple(class_names)
    missing = [name for name in EXPRESSIONS if name not in names]
    if missing:
        raise ValueError(
            f"{dataset} has no class {', '.join(repr(m) for m in missing)}: stage 2 needs "
            f"{', '.join(EXPRESSIONS)} (its classes: {', '.join(names) or 'none'}); "
            "train stage 1 on a dataset that has all four"
        )
    return {name: names.index(name) for name in EXPRESSIONS}


def class_counts(records: Sequence[ClipRecord], class_names: Sequence[str]) -> dict[str, int]:
    """{class name: clips}, every class listed (zero included), in class order."""
    counts = Counter(r.label for r in records)
    return {name: counts.get(i, 0) for i, name in enumerate(class_names)}


class VideoClipDataset(Dataset):
    """Samples M frames per clip (segment-random when training, segment-centre otherwise) and transforms them."""

    def __init__(
        self,
        records: Sequence[ClipRecord],
        num_frames: int,
        train: bool,
        transform: Callable[[torch.Tensor], torch.Tensor],
        reader: Callable[..., tuple[np.ndarray, object]] = read_clip,
    ) -> None:
        self.records = list(records)
        self.reader = reader  # read_clip, or a face-cropping reader for raw videos (dfer_pd.faces.tracking)
        self.num_frames = num_frames
        self.train = train
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        record = self.records[index]
        # Torch's RNG is seeded per worker by Lightning, so clip sampling follows the run's seed.
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item())) if self.train else None
        frames, _ = self.reader(record.path, num_frames=self.num_frames, mode="train" if self.train else "eval", rng=rng)
        pixel_values = self.transform(frames_to_video(frames))
        return {"pixel_values": pixel_values.as_subclass(torch.Tensor), "label": record.label, "key": record.key}


class ClipDataModule(L.LightningDataModule):
    """A clip-classification dataset: its training split minus a seeded, stratified validation split; its test split.

    Model selection uses the validation split carved from the training split; the test split is only for
    the final evaluation of the selected checkpoint. Missing or unreadable clips are logged by key with a
    count and excluded (``skipped``); ``skip_unreadable=False`` turns them into an error instead.
    ``split_counts`` holds the clips per class of each split set up.

    A subclass sets ``class_names`` in its ``__init__`` (with :meth:`_set_class_names`) and implements
    :meth:`split_records`; ``name`` and ``layout_error`` name the dataset in messages and errors.

    Args:
        root: the dataset's root folder, in its official layout.
        num_frames: frames sampled per clip (linked from the model's network in ``train-dfer``).
        batch_size: training batch size.
        eval_batch_size: validation and test batch size (``batch_size`` if None).
        num_workers: DataLoader worker processes.
        persistent_workers: keep workers alive between epochs (when num_workers > 0).
        pin_memory: pin host memory (only when CUDA is available).
        val_fraction: share of the training split held out for validation, stratified by class.
        split_seed: seed of that validation split (separate from the training seed).
        clip_name_or_path: the CLIP checkpoint whose image size and mean/std the transform uses (linked
            from the model's network in ``train-dfer``).
        image_size: input size; the CLIP checkpoint's own if None.
        brightness: training brightness jitter.
        crop_scale: training random-resized-crop area range.
        skip_unreadable: skip (and report) missing or unreadable clips; False stops the run instead.
        frame_cache_mb: keep frame folders' decoded images in memory, up to this many MB per loader process
            (0: off). Worth it when the frames fit: the demo's synthetic DFEW is decoded once instead of every
            epoch. Video files are not cached.
    """

    name: ClassVar[str] = "clips"
    layout_error: ClassVar[type[ClipLayoutError]] = ClipLayoutError
    class_names: tuple[str, ...] = ()

    def __init__(
        self,
        root: str,
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
        frame_cache_mb: float = 0,
    ) -> None:
        super().__init__()
        if frame_cache_mb < 0:
            raise ValueError(f"frame_cache_mb must be 0 (off) or more, got {frame_cache_mb}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
        self.save_hyperparameters()  # the subclass's own arguments (fold, classes, ...) are collected too
        self.skipped: dict[str, str] = {}
        self.split_counts: dict[str, dict[str, int]] = {}

    # ------------------------------------------------------------------ what a dataset file provides

    @abstractmethod
    def split_records(self, split: Split) -> list[ClipRecord]:
        """The official split's clips with labels indexing ``class_names`` (existence is checked later)."""
        raise NotImplementedError(f"{type(self).__name__} must implement split_records")

    def describe(self, split: str) -> str:
        """How messages name a split, e.g. ``DFEW train fold 1``."""
        return f"{self.name} {split}"

    def _set_class_names(self, names: Sequence[str]) -> None:
        names = tuple(names)
        unknown = [n for n in names if n not in CANONICAL_CLASSES]
        if unknown or len(set(names)) != len(names) or len(names) < 2:
            raise ValueError(f"{self.name}: class names must be at least two distinct names from "
                             f"{CANONICAL_CLASSES}, got {names}")
        self.class_names = names

    # ------------------------------------------------------------------ shared by every dataset

    def _normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...], int]:
        from dfer_pd.stage1.clip_assets import load_image_normalisation

        mean, std, size = load_image_normalisation(self.hparams.clip_name_or_path)
        return tuple(mean), tuple(std), int(self.hparams.image_size or size)

    def _readable(self, records: list[ClipRecord], split: str) -> list[ClipRecord]:
        if not records:
            raise self.layout_error(f"{self.describe(split)} lists no clips of the classes {', '.join(self.class_names)}: "
                                    "its split file is empty or holds only other classes")
        readable, failed = check_readable(records)
        if failed:
            listing = "; ".join(f"{key}: {problem}" for key, problem in sorted(failed.items())[:20])
            more = " ..." if len(failed) > 20 else ""
            message = f"{self.describe(split)}: {len(failed)} of {len(records)} clips missing or unreadable ({listing}{more})"
            if not self.hparams.skip_unreadable:
                raise self.layout_error(message)
            log.warning(message)
            self.skipped.update(failed)
        return readable

    def _validation_split(self, records: list[ClipRecord]) -> tuple[list[ClipRecord], list[ClipRecord]]:
        from sklearn.model_selection import train_test_split

        try:
            return train_test_split(
                records,
                test_size=self.hparams.val_fraction,
                random_state=self.hparams.split_seed,
                stratify=[r.label for r in records],
            )
        except ValueError as err:
            counts = class_counts(records, self.class_names)
            raise UsageError(f"{self.describe('train')}: cannot carve a stratified validation split "
                             f"(val_fraction {self.hparams.val_fraction}) from {counts}: {err}; give a larger "
                             "dataset or a --data.val_fraction that leaves every class a clip on each side") from None

    def _check_disjoint(self, train: list[ClipRecord], test: list[ClipRecord]) -> None:
        """The test split stays unseen: no clip may be listed in both splits."""
        shared = sorted({r.key for r in train} & {r.key for r in test})
        if shared:
            raise self.layout_error(f"{self.describe('train')}: {len(shared)} clip(s) are also in the test split "
                                    f"({', '.join(shared[:10])}{' ...' if len(shared) > 10 else ''})")

    def setup(self, stage: str | None = None) -> None:
        hp = self.hparams
        mean, std, size = self._normalisation()
        train_tf = build_clip_transform(True, size, mean, std, brightness=hp.brightness, crop_scale=tuple(hp.crop_scale))
        eval_tf = build_clip_transform(False, size, mean, std)
        reader = read_clip
        if hp.frame_cache_mb > 0:  # one cache for the three splits, copied into each loader process
            reader = functools.partial(read_clip, cache=FrameFolderCache(hp.frame_cache_mb))
        if stage in (None, "fit", "validate") and not hasattr(self, "train_set"):
            listed = self.split_records("train")
            self._check_disjoint(listed, self.split_records("test"))
            records = self._readable(listed, "train")
            train_records, val_records = self._validation_split(records)
            self.train_set = VideoClipDataset(train_records, hp.num_frames, True, train_tf, reader)
            self.val_set = VideoClipDataset(val_records, hp.num_frames, False, eval_tf, reader)
            self.split_counts["train"] = class_counts(train_records, self.class_names)
            self.split_counts["val"] = class_counts(val_records, self.class_names)
        if stage in (None, "test") and not hasattr(self, "test_set"):
            records = self._readable(self.split_records("test"), "test")
            self.test_set = VideoClipDataset(records, hp.num_frames, False, eval_tf, reader)
            self.split_counts["test"] = class_counts(records, self.class_names)
        for split, counts in self.split_counts.items():
            log.info("%s: %s", self.describe(split), counts)

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
