"""The one way videos become stage-1 scores, shared by cohort extraction and ``diagnose``.

:func:`prepare_clip` reads a video as the scoring contract says (sampler and frames, face path,
image size, normalisation) and :func:`score_clips` runs the network with the contract's precision.
Extraction calls them through :class:`ScoringDataset` and :class:`Stage1Scorer` under a Lightning
``Trainer.predict`` (devices, DDP, the cache-writer callback); ``diagnose`` calls the same two
functions directly on one person's four videos.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import Dataset

from dfer_pd.common.video import read_clip
from dfer_pd.screening.faces import FaceCropCache, FaceTrackReport, read_face_clip
from dfer_pd.stage1.contract import ContractError, ScoringContract, load_stage1
from dfer_pd.stage1.modeling_dfer_clip import DferClip
from dfer_pd.stage1.transforms import build_clip_transform, frames_to_video

AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


@dataclass
class PreparedClip:
    """A video ready for the network: ``pixel_values`` (M, 3, S, S) and what the quality checks read."""

    pixel_values: torch.Tensor
    frames: np.ndarray  # (M, H, W, 3) uint8: the face crops, or the sampled frames without cropping
    frame_indices: np.ndarray
    face_report: FaceTrackReport | None


def prepare_clip(path: str | Path, contract: ScoringContract, face_cache: FaceCropCache | None = None) -> PreparedClip:
    """Sample, (optionally) find and crop the face, resize and normalise, all as ``contract`` fixes."""
    if contract.face.crop_faces:
        frames, report = read_face_clip(path, contract.num_frames, size=contract.image_size, cache=face_cache,
                                        **contract.face.tracking_options())
        indices = report.frame_indices
    else:
        (frames, indices), report = read_clip(path, contract.num_frames), None
    transform = build_clip_transform(False, contract.image_size, contract.image_mean, contract.image_std)
    pixel_values = transform(frames_to_video(frames)).as_subclass(torch.Tensor)
    return PreparedClip(pixel_values, frames, np.asarray(indices), report)


@dataclass
class ClipScores:
    """Per clip: cosine with every class of the checkpoint (B, K) float64 and the video feature (B, D)."""

    cosine: np.ndarray
    video_features: np.ndarray


def _precision_context(contract: ScoringContract, device: torch.device) -> contextlib.AbstractContextManager:
    dtype = AUTOCAST_DTYPES.get(contract.precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.no_grad()
def score_clips(network: DferClip, pixel_values: torch.Tensor, contract: ScoringContract) -> ClipScores:
    """The network's forward pass on a batch (B, M, 3, S, S), in eval mode and the contract's precision."""
    if tuple(network.class_names) != contract.class_names or network.tau != contract.tau:
        raise ContractError("the network is not the one the scoring contract was made from "
                            f"(classes {network.class_names}, tau {network.tau}; contract: {contract.describe()})")
    was_training = network.training
    network.eval()
    try:
        with _precision_context(contract, pixel_values.device):
            out = network(pixel_values)
    finally:
        network.train(was_training)
    return ClipScores(out.cosine.double().cpu().numpy(), out.video_features.float().cpu().numpy())


def expression_cosines(cosine: np.ndarray, contract: ScoringContract) -> np.ndarray:
    """(..., K) cosines over the checkpoint's classes -> (..., 4) over stage 2's EXPRESSIONS (by name)."""
    return np.asarray(cosine, dtype=np.float64)[..., contract.expression_columns()]


class ScoringDataset(Dataset):
    """``(key, path)`` pairs prepared by :func:`prepare_clip`; each item carries its key for the cache writer."""

    def __init__(self, items: Sequence[tuple[str, Path]], contract: ScoringContract,
                 face_cache: FaceCropCache | None = None) -> None:
        self.items = list(items)
        self.contract = contract
        self.face_cache = face_cache

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        key, path = self.items[index]
        return {"pixel_values": prepare_clip(path, self.contract, self.face_cache).pixel_values, "key": key}


class Stage1Scorer(L.LightningModule):
    """The trained network under a scoring contract: ``predict_step`` gives each clip's scores by key."""

    def __init__(self, network: DferClip, contract: ScoringContract) -> None:
        super().__init__()
        self.network = network.eval()
        self.contract = contract

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, contract: ScoringContract, map_location: str = "cpu") -> Stage1Scorer:
        contract.check_checkpoint(checkpoint)
        return cls(load_stage1(checkpoint, map_location=map_location).net, contract)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        scores = score_clips(self.network, batch["pixel_values"], self.contract)
        return {"key": batch["key"], "cosine": scores.cosine, "video_features": scores.video_features}

    def score_videos(self, paths: Sequence[str | Path], face_cache: FaceCropCache | None = None
                     ) -> tuple[ClipScores, list[PreparedClip]]:
        """A few videos in one batch, without a Trainer (``diagnose``); returns their prepared clips too."""
        clips = [prepare_clip(path, self.contract, face_cache) for path in paths]
        pixel_values = torch.stack([clip.pixel_values for clip in clips]).to(self.device)
        return score_clips(self.network, pixel_values, self.contract), clips
