"""Decoded frame-folder images kept in memory between epochs (``data.frame_cache_mb``)."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from dfer_pd.common.video import _folder_frame_names, _load_image


class FrameFolderCache:
    """Frame folders' listings and decoded images, kept in memory up to ``max_mb`` (least recently used go first).

    Training reads every clip of a frame-folder dataset each epoch and, over the epochs, nearly every
    frame of it: a dataset that fits (the demo's 64-pixel synthetic DFEW: about 300 MB) is decoded once
    instead of 40 times. Each loader process holds its own cache. Frames read through it are the same
    arrays as without it; video files are not cached (their frames are decoded where sampled).
    """

    def __init__(self, max_mb: float) -> None:
        self.max_bytes = int(max_mb * 2**20)
        self.bytes = 0
        self._images: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._names: dict[Path, list[str]] = {}

    def names(self, folder: Path) -> list[str]:
        if folder not in self._names:
            self._names[folder] = _folder_frame_names(folder)
        return self._names[folder]

    def image(self, path: Path) -> np.ndarray:
        image = self._images.get(path)
        if image is not None:
            self._images.move_to_end(path)
            return image
        image = _load_image(path)
        image.flags.writeable = False  # shared by every later read: nobody may change it
        if image.nbytes <= self.max_bytes:
            self._images[path] = image
            self.bytes += image.nbytes
            while self.bytes > self.max_bytes:
                self.bytes -= self._images.popitem(last=False)[1].nbytes
        return image
