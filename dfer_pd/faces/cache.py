"""Face crops on disk, keyed by the video's bytes and the crop settings."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dfer_pd.common.files import NpzStore, content_key, file_digest
from dfer_pd.faces.tracking import FaceTrackReport


class FaceCropCache:
    """Face crops on disk: ``<root>/<settings key>/<video sha256>.npz`` (:class:`~dfer_pd.common.files.NpzStore`).

    A video's crops depend on its bytes and on the crop settings (frames, size, alignment, detector
    and its parameters), so both make the key: edit either and the crops are recomputed.
    """

    VERSION = 2

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def store(self, settings: dict) -> NpzStore:
        return NpzStore(self.root, content_key({"settings": settings, "version": self.VERSION}))

    def get_or_compute(
        self, video: str | Path, settings: dict, compute: Callable[[], tuple[np.ndarray, FaceTrackReport]]
    ) -> tuple[np.ndarray, FaceTrackReport]:
        store, digest = self.store(settings), file_digest(video)
        if store.has(digest):
            arrays = store.read(digest)
            crops = arrays.pop("crops")
            report = FaceTrackReport(
                **{name: arrays[name] for name in ("frame_indices", "face_boxes", "crop_boxes", "examined", "detected")},
                face_fraction=float(arrays["face_fraction"]), num_faces_max=int(arrays["num_faces_max"]),
                frame_size=tuple(int(v) for v in arrays["frame_size"]),
                upright=arrays.get("upright"), landmarks=arrays.get("landmarks"), aligned=bool(arrays["aligned"]),
                decode=json.loads(str(arrays["decode"])) if "decode" in arrays else None,
                measures=json.loads(str(arrays["measures"])) if "measures" in arrays else None,
            )
            return crops, report
        crops, report = compute()
        fields = {name: value for name, value in asdict(report).items() if value is not None}
        for name in ("decode", "measures"):
            if name in fields:
                fields[name] = json.dumps(fields[name], sort_keys=True)
        store.write(digest, crops=crops, **{name: np.asarray(value) for name, value in fields.items()})
        return crops, report
