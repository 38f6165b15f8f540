"""Map-style datasets of video clips (frame folders or video files), shared by DFEW and the cohort."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from dfer_pd.stage1.transforms import frames_to_video
from dfer_pd.common.video import VideoReadError, count_frames, read_clip

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipRecord:
    """One clip: a stable key (DFEW id or subject/expression), where it lives, and its class (-1 if none)."""

    key: str
    path: Path
    label: int = -1


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
        self.reader = reader  # read_clip, or a face-cropping reader for raw videos (dfer_pd.screening.faces)
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
