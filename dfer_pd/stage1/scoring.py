"""The one way videos become stage-1 scores, shared by cohort extraction and ``diagnose``.

:func:`prepare_clip` reads a video as the scoring contract says (sampler and frames, face path,
image size, normalisation) and the contract's runtime scores it: :class:`TorchStage1` (the PyTorch
network in the contract's precision) or the checkpoint's ONNX export on onnxruntime
(:class:`~dfer_pd.stage1.export.OnnxStage1`, float32 or int8). Extraction runs them through
:class:`ScoringDataset` and :class:`Stage1Scorer` under a Lightning ``Trainer.predict`` (devices, DDP,
the cache-writer callback); ``diagnose`` runs the same runtime on one person's four videos, each
scored as soon as it is prepared (:func:`in_background`).

Inference does only the work the scores need: the class text features G are constants once training
is over, so they are computed once per loaded checkpoint (and are a constant of the ONNX graph), not
on every batch; only the sampled frames are decoded into pictures (:mod:`dfer_pd.common.video`); and
:class:`ScoringDataset` prepares the next videos (decoding, face tracking, resizing) on a thread pool
while the network scores the current ones.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset, get_worker_info

from dfer_pd.common.video import read_sampled_clip
from dfer_pd.faces.cache import FaceCropCache
from dfer_pd.faces.tracking import FaceTrackReport, read_face_clip
from dfer_pd.stage1.contract import ONNX_RUNTIMES, ContractError, ScoringContract, check_precision, load_stage1
from dfer_pd.stage1.modeling_dfer_clip import DferClip
from dfer_pd.stage1.transforms import build_clip_transform, frames_to_video

T = TypeVar("T")
R = TypeVar("R")
AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}
# Every runtime scores one clip per forward pass. Matrix kernels pick their blocking by the batch's
# size, so a batched pass changes a clip's cosines in the last bits with its batch-mates; one clip at
# a time, a video's scores are the same bit for bit in extraction (any batch size, any DDP split)
# and in ``diagnose``, which scores each video as soon as it is prepared. 16 frames per pass keep a
# CPU, or a GPU at ViT-B/32 size, busy enough that little throughput is lost.


@dataclass
class PreparedClip:
    """A video ready for the network: ``pixel_values`` (M, 3, S, S) and what the quality checks read."""

    pixel_values: torch.Tensor
    frames: np.ndarray  # (M, H, W, 3) uint8: the face crops, or the sampled frames without cropping
    frame_indices: np.ndarray
    face_report: FaceTrackReport | None
    decode: dict | None = None  # the reader's findings (truncated, decoded share, sampled by time)


def prepare_clip(path: str | Path, contract: ScoringContract, face_cache: FaceCropCache | None = None) -> PreparedClip:
    """Sample, (optionally) find and crop the face, resize and normalise, all as ``contract`` fixes."""
    if contract.face.crop_faces:
        frames, report = read_face_clip(path, contract.num_frames, contract.face, size=contract.image_size,
                                        cache=face_cache)
        indices, decode = report.frame_indices, report.decode
    else:
        clip, report = read_sampled_clip(path, contract.num_frames), None
        frames, indices, decode = clip.frames, clip.indices, clip.summary()
    transform = build_clip_transform(False, contract.image_size, contract.image_mean, contract.image_std)
    pixel_values = transform(frames_to_video(frames)).as_subclass(torch.Tensor)
    return PreparedClip(pixel_values, frames, np.asarray(indices), report, decode)


@dataclass
class ClipScores:
    """Per clip: cosine with every class of the checkpoint (B, K) float64 and the video feature (B, D)."""

    cosine: np.ndarray
    video_features: np.ndarray


def _precision_context(contract: ScoringContract, device: torch.device) -> contextlib.AbstractContextManager:
    dtype = AUTOCAST_DTYPES.get(contract.precision)
    if dtype is None:
        return contextlib.nullcontext()
    check_precision(contract.precision, device.type)
    return torch.autocast(device_type=device.type, dtype=dtype)


def _check_network(network: DferClip, contract: ScoringContract) -> None:
    if tuple(network.class_names) != contract.class_names or network.tau != contract.tau:
        raise ContractError("the network is not the one the scoring contract was made from "
                            f"(classes {network.class_names}, tau {network.tau}; contract: {contract.describe()})")


@torch.no_grad()
def score_clips(network: DferClip, pixel_values: torch.Tensor, contract: ScoringContract,
                text_features: torch.Tensor | None = None) -> ClipScores:
    """The network's forward pass on a batch (B, M, 3, S, S), in eval mode and the contract's precision.

    One clip per forward pass (see the note at the top of this module). ``text_features``: G computed
    beforehand (:class:`TorchStage1` does it once per checkpoint).
    """
    _check_network(network, contract)
    was_training = network.training
    network.eval()
    cosine, video = [], []
    try:
        with _precision_context(contract, pixel_values.device):
            for clip in pixel_values.split(1):
                out = network(clip, text_features=text_features)
                cosine.append(out.cosine.double().cpu())
                video.append(out.video_features.float().cpu())
    finally:
        network.train(was_training)
    return ClipScores(torch.cat(cosine).numpy(), torch.cat(video).numpy())


class TorchStage1(nn.Module):
    """The PyTorch runtime: the network, and its text features G computed once per device.

    G depends only on the trained prompts, so it is computed on first use (in the contract's
    precision, on the device the pixels are on, exactly as a full forward pass would) and reused.
    """

    def __init__(self, network: DferClip, contract: ScoringContract) -> None:
        super().__init__()
        _check_network(network, contract)
        self.network = network.eval()
        self.contract = contract
        self._text_features: dict[torch.device, torch.Tensor] = {}

    @torch.no_grad()
    def text_features(self, device: torch.device) -> torch.Tensor:
        if device not in self._text_features:
            self.network.eval()
            with _precision_context(self.contract, device):
                self._text_features[device] = self.network.encode_text()
        return self._text_features[device]

    def forward(self, pixel_values: torch.Tensor) -> ClipScores:
        return score_clips(self.network, pixel_values, self.contract, self.text_features(pixel_values.device))


class OnnxRuntimeScorer:
    """The ONNX runtimes: the contract's export on onnxruntime's CPU provider (float32 or int8)."""

    def __init__(self, export, contract: ScoringContract, threads: int | None = None) -> None:
        """``export``: the .onnx path, or an already opened :class:`~dfer_pd.stage1.export.OnnxStage1`."""
        from dfer_pd.stage1.export import OnnxStage1

        if isinstance(export, OnnxStage1):
            export.info.check(contract)
            self.session = export
        else:
            self.session = OnnxStage1(export, contract, threads=threads)
        self.contract = contract

    def __call__(self, pixel_values: torch.Tensor) -> ClipScores:
        outputs = [self.session(clip) for clip in pixel_values.split(1)]  # one clip per pass, as score_clips
        return ClipScores(np.concatenate([c for c, _ in outputs]).astype(np.float64),
                          np.concatenate([v for _, v in outputs]).astype(np.float32))


def expression_cosines(cosine: np.ndarray, contract: ScoringContract) -> np.ndarray:
    """(..., K) cosines over the checkpoint's classes -> (..., 4) over stage 2's EXPRESSIONS (by name)."""
    return np.asarray(cosine, dtype=np.float64)[..., contract.expression_columns()]


def default_threads() -> int:
    """Threads that prepare videos: one per core, at most four (four videos make a subject)."""
    return min(4, os.cpu_count() or 1)


_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()


def preparation_pool(threads: int) -> ThreadPoolExecutor:
    """One pool per size for the whole process: its threads live on, so what they build once per thread
    (dlib's face detector takes about half a second) is built once, not for every subject."""
    with _POOLS_LOCK:
        if threads not in _POOLS:
            _POOLS[threads] = ThreadPoolExecutor(threads, thread_name_prefix="dfer-pd-prepare")
        return _POOLS[threads]


def in_background(function: Callable[[T], R], items: Sequence[T], threads: int | None = None) -> Iterator[R]:
    """``function(item)`` for each item, in order, submitted at once to a thread pool: while the caller
    works on one result (a forward pass), the next ones are being computed. ``threads=0`` computes
    each item when it is asked for, in the caller's thread. Leaving the loop early cancels what has
    not started."""
    if threads == 0:
        yield from (function(item) for item in items)
        return
    futures = [preparation_pool(threads or default_threads()).submit(function, item) for item in items]
    try:
        for future in futures:
            yield future.result()
    finally:
        for future in futures:
            future.cancel()


class ScoringDataset(Dataset):
    """``(key, path)`` pairs prepared by :func:`prepare_clip`; each item carries its key for the cache writer.

    Batches are fetched with ``__getitems__``: in the main process (``num_workers=0``, and :meth:`Stage1Scorer.score_videos`)
    the requested videos and the ``prefetch`` videos expected next are prepared on a thread pool,
    so the next batch is decoded and its faces tracked while the network scores this one (decoding,
    OpenCV and the network release the GIL). The next indices are guessed from the stride of the
    requests (sequential, or a DDP rank's every n-th item); a wrong guess costs work, never results.
    ``prefetch=None`` looks one request ahead, 0 turns it off. Inside DataLoader worker processes,
    which already overlap with the network, items are prepared one by one.
    """

    def __init__(self, items: Sequence[tuple[str, Path]], contract: ScoringContract,
                 face_cache: FaceCropCache | None = None, prefetch: int | None = None,
                 threads: int | None = None) -> None:
        self.items = list(items)
        self.contract = contract
        self.face_cache = face_cache
        self.prefetch = prefetch
        self.threads = threads or default_threads()
        self._pending: dict[int, Future] = {}
        self._previous: list[int] | None = None

    def __len__(self) -> int:
        return len(self.items)

    def __getstate__(self) -> dict:
        # DataLoader workers get a copy without pending work (futures do not cross processes).
        return {**self.__dict__, "_pending": {}, "_previous": None}

    def _prepare(self, index: int) -> PreparedClip:
        return prepare_clip(self.items[index][1], self.contract, self.face_cache)

    def _item(self, index: int, clip: PreparedClip) -> dict:
        return {"pixel_values": clip.pixel_values, "key": self.items[index][0]}

    def __getitem__(self, index: int) -> dict:
        return self._item(index, self._prepare(index))

    def __getitems__(self, indices: Sequence[int]) -> list[dict]:
        indices = [int(i) for i in indices]
        if self.prefetch == 0 or get_worker_info() is not None:
            return [self[i] for i in indices]
        return [self._item(i, clip) for i, clip in zip(indices, self.prepared(indices))]

    def prepared(self, indices: Sequence[int]) -> list[PreparedClip]:
        """The clips ``indices``, prepared in parallel; the ones expected next start preparing too."""
        indices = [int(i) for i in indices]
        pool = preparation_pool(self.threads)
        for index in indices + self._expected_next(indices):
            if index not in self._pending and 0 <= index < len(self.items):
                self._pending[index] = pool.submit(self._prepare, index)
        self._previous = indices
        clips = [self._pending.pop(i).result() for i in indices]
        for stale in [i for i in self._pending if i < min(indices)]:
            self._pending.pop(stale).cancel()
        return clips

    def _expected_next(self, indices: list[int]) -> list[int]:
        count = len(indices) if self.prefetch is None else self.prefetch
        if count <= 0:
            return []
        if self._previous is not None and indices[0] > self._previous[0]:
            shift = indices[0] - self._previous[0]
        else:
            stride = min((b - a for a, b in zip(indices, indices[1:]) if b > a), default=1)
            shift = max(indices) - min(indices) + stride
        expected: list[int] = []
        step = 1
        while len(expected) < count and min(indices) + step * shift < len(self.items):
            expected += [i + step * shift for i in indices if i + step * shift < len(self.items)]
            step += 1
        return expected[:count]

    def close(self) -> None:
        """Drop the preparations not yet started."""
        for future in self._pending.values():
            future.cancel()
        self._pending = {}


class Stage1Scorer(L.LightningModule):
    """The trained network under a scoring contract, run by the contract's runtime.

    ``predict_step`` gives each clip's scores by key (extraction); :meth:`score_videos` scores a few
    videos without a Trainer; ``diagnose`` calls ``runtime`` on the clips its quality checks prepared.
    Build it with :meth:`from_checkpoint` or :meth:`for_contract`.
    """

    def __init__(self, runtime: TorchStage1 | OnnxRuntimeScorer | DferClip, contract: ScoringContract) -> None:
        super().__init__()
        if isinstance(runtime, DferClip):
            runtime = TorchStage1(runtime, contract)
        if isinstance(runtime, TorchStage1) != (contract.runtime == "torch"):
            raise ContractError(f"a {type(runtime).__name__} cannot run the contract's runtime {contract.runtime}")
        self.runtime = runtime
        self.contract = contract

    @property
    def network(self) -> DferClip | None:
        """The PyTorch network (None for an ONNX runtime)."""
        return self.runtime.network if isinstance(self.runtime, TorchStage1) else None

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, contract: ScoringContract, map_location: str = "cpu",
                        onnx_model: str | Path | None = None, threads: int | None = None) -> Stage1Scorer:
        """The runtime of ``contract`` for ``checkpoint``.

        For the ONNX runtimes the export is ``onnx_model``, else ``checkpoint`` itself when it is a
        ``.onnx`` file, else the file ``dfer-pd export`` writes beside the checkpoint; its metadata must
        name the contract's checkpoint (the export is what runs, so the checkpoint need not be present).
        ``threads`` sets onnxruntime's threads (the torch runtime follows ``torch.set_num_threads``).
        """
        if contract.runtime in ONNX_RUNTIMES:
            from dfer_pd.stage1.export import onnx_path_for

            path = Path(checkpoint)
            export = onnx_model or (path if path.suffix == ".onnx" else onnx_path_for(path, contract.runtime))
            return cls(OnnxRuntimeScorer(export, contract, threads=threads), contract)
        if Path(checkpoint).suffix == ".onnx":
            raise ContractError(f"{checkpoint} is an ONNX export; the scoring contract runs {contract.runtime}: "
                                "pass the .ckpt, or --runtime onnx / onnx-int8")
        contract.check_checkpoint(checkpoint)
        return cls(load_stage1(checkpoint, map_location=map_location).net, contract)

    @classmethod
    def for_contract(cls, stage1: str | Path, contract: ScoringContract, runtime: str | None = None,
                     map_location: str = "cpu", onnx_model: str | Path | None = None,
                     source: str = "the scoring contract", threads: int | None = None) -> Stage1Scorer:
        """Like :meth:`from_checkpoint`, choosing the runtime: ``runtime`` if given, else the export's own when
        ``stage1`` is a ``.onnx`` file, else the contract's. The contract only changes its runtime."""
        if Path(stage1).suffix == ".onnx" and onnx_model is None:
            from dfer_pd.stage1.export import OnnxStage1

            export = OnnxStage1(stage1, threads=threads)  # opened once: its metadata says which runtime it is
            contract = contract.with_runtime(runtime or export.info.runtime, source)
            if contract.runtime not in ONNX_RUNTIMES:
                raise ContractError(f"{stage1} is an ONNX export; --runtime {runtime} needs the .ckpt")
            return cls(OnnxRuntimeScorer(export, contract), contract)
        return cls.from_checkpoint(stage1, contract.with_runtime(runtime, source), map_location, onnx_model, threads)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        scores = self.runtime(batch["pixel_values"])
        return {"key": batch["key"], "cosine": scores.cosine, "video_features": scores.video_features}

    def score_videos(self, paths: Sequence[str | Path], face_cache: FaceCropCache | None = None
                     ) -> tuple[ClipScores, list[PreparedClip]]:
        """A few videos without a Trainer (``diagnose``), one forward pass per video while the next ones
        are prepared on threads; returns their prepared clips too."""
        dataset = ScoringDataset([(str(i), Path(p)) for i, p in enumerate(paths)], self.contract, face_cache,
                                 prefetch=len(paths) - 1)
        clips, scores = [], []
        try:
            for index in range(len(paths)):
                clip = dataset.prepared([index])[0]
                clips.append(clip)
                scores.append(self.runtime(clip.pixel_values[None].to(self.device)))
        finally:
            dataset.close()
        return ClipScores(np.concatenate([s.cosine for s in scores]),
                          np.concatenate([s.video_features for s in scores])), clips
