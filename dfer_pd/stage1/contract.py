"""The scoring contract: everything that decides how a video becomes intensities, fixed once.

It is derived from a stage-1 checkpoint (its sha256 and the network settings the checkpoint carries:
classes, tau, frames per clip, image size, normalisation) plus the preprocessing chosen for the videos
(the face path and the numeric precision) and the runtime that executes the network (PyTorch, or the
checkpoint's ONNX export in float32 or int8). It then travels, never re-declared: it names the cache
folder and sits in every cache file, in every intensity file and in the screening model, and
``diagnose`` applies the screening model's contract. Two scores are comparable exactly when their
contracts are equal; contracts that differ only in runtime score the same videos the same way, to
within the runtime's tolerance (``dfer-pd export`` measures it), so ``diagnose`` may pick another runtime.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.common.files import content_key, file_digest
from dfer_pd.common.machine import cpu_info, native_bf16
from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.stage1.modeling_dfer_clip import DferClipConfig

CONTRACT_VERSION = 2
# 2: the cosines are computed in float32 whatever the precision. Version-1 contracts in 32-true score the same
# (still read); in bf16 or fp16 their cosines were rounded to half precision, so they are refused.
EVAL_SAMPLER = "segment-centre"
PRECISIONS: tuple[str, ...] = ("32-true", "bf16-mixed", "16-mixed")
# Who executes the network: PyTorch, or the checkpoint's ONNX export on onnxruntime (float32, or with
# dynamically quantised int8 weights). The runtime is in the cache key: int8 scores differ from float32.
RUNTIMES: tuple[str, ...] = ("torch", "onnx", "onnx-int8")
ONNX_RUNTIMES: tuple[str, ...] = ("onnx", "onnx-int8")


class SlowPrecisionWarning(UserWarning):
    """A precision this device only emulates (bf16 on a CPU without AVX512-BF16 or AMX)."""


def check_precision(precision: str, device_type: str) -> None:
    """Warn when bf16 is chosen for a CPU run on a CPU that emulates it: the scores are the same, but it
    ran 6.5x slower than float32 on an AVX2 CPU (docs/performance.md)."""
    if precision.startswith("bf16") and device_type == "cpu" and not native_bf16():
        warnings.warn(
            f"precision {precision} on this CPU ({cpu_info().model}) is emulated, without AVX512-BF16 or AMX: it is "
            "several times slower than 32-true here; use precision 32-true (or the onnx runtime) for CPU scoring",
            SlowPrecisionWarning, stacklevel=3)


class CheckpointError(ValueError):
    """A stage-1 checkpoint that cannot be used (missing, corrupt, or not a DferClipModule checkpoint)."""


class ContractError(ValueError):
    """Scores, a model or settings that do not follow the same scoring contract."""


def read_network_config(checkpoint: str | Path) -> DferClipConfig:
    """The network settings a stage-1 checkpoint carries, without building the network."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise CheckpointError(f"stage-1 checkpoint {checkpoint} does not exist")
    try:
        hparams = torch.load(checkpoint, map_location="cpu", weights_only=True)["hyper_parameters"]
    except Exception as err:  # any failure to unpickle means "not a checkpoint"; the unpickler's own text stays in the chain
        raise CheckpointError(f"{checkpoint} is not a readable checkpoint: the file is corrupt, truncated or not a "
                              "PyTorch checkpoint of plain data") from err
    if not isinstance(hparams, dict) or "network" not in hparams:
        raise CheckpointError(f"{checkpoint} is not a stage-1 (DferClipModule) checkpoint: "
                              "its hyper_parameters hold no 'network' settings")
    try:
        return DferClipConfig.from_value(hparams["network"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{checkpoint}: unusable network settings: {err}") from err


def load_stage1(checkpoint: str | Path, map_location: str = "cpu"):
    """A trained DferClipModule; loaded with weights_only=True, so a checkpoint cannot run code."""
    from dfer_pd.stage1.module import DferClipModule

    read_network_config(checkpoint)  # names a missing or foreign file before Lightning tries
    try:
        return DferClipModule.load_from_checkpoint(checkpoint, map_location=map_location, weights_only=True)
    except Exception as err:  # weights that do not fit the settings, truncated files ...
        raise CheckpointError(f"{checkpoint} is not a usable stage-1 (DferClipModule) checkpoint: {err}") from err


@dataclass(frozen=True)
class ScoringContract:
    """How videos become intensities. Build it with :meth:`from_checkpoint`; compare with ``==``."""

    checkpoint_sha256: str
    class_names: tuple[str, ...]
    tau: float
    num_frames: int
    image_size: int
    image_mean: tuple[float, ...]
    image_std: tuple[float, ...]
    face: FaceCropSettings = field(default_factory=FaceCropSettings)
    precision: str = "32-true"
    sampler: str = EVAL_SAMPLER
    runtime: str = "torch"
    version: int = CONTRACT_VERSION

    def __post_init__(self) -> None:
        for name in ("class_names", "image_mean", "image_std"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if isinstance(self.face, dict):
            object.__setattr__(self, "face", FaceCropSettings(**self.face))
        if not self.face.crop_faces and self.face != FaceCropSettings():
            # Without cropping the face options change nothing: one contract, one cache folder.
            object.__setattr__(self, "face", FaceCropSettings())
        if self.precision not in PRECISIONS:
            raise ContractError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.runtime not in RUNTIMES:
            raise ContractError(f"runtime must be one of {RUNTIMES}, got {self.runtime!r}")
        if self.runtime in ONNX_RUNTIMES and self.precision != "32-true":
            raise ContractError(
                f"runtime {self.runtime} runs the float32 ONNX export, but this contract scores in {self.precision}: "
                "use runtime torch for it, or score the cohort with precision 32-true")
        if self.version == 1 and self.precision != "32-true":
            raise ContractError(
                f"scoring contract version 1 in {self.precision}: its cosines were rounded to half precision, which "
                "this dfer-pd no longer does; extract the cohort again (and retrain the screening model)")
        if self.version not in (1, CONTRACT_VERSION):
            raise ContractError(f"scoring contract version {self.version}; this dfer-pd reads version {CONTRACT_VERSION}")

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path, face: FaceCropSettings | None = None, precision: str = "32-true",
        runtime: str = "torch",
    ) -> ScoringContract:
        network = read_network_config(checkpoint)
        return cls(
            checkpoint_sha256=file_digest(checkpoint),
            class_names=network.class_names,
            tau=network.tau,
            num_frames=network.num_frames,
            image_size=network.image_size,
            image_mean=network.image_mean,
            image_std=network.image_std,
            face=face or FaceCropSettings(),
            precision=precision,
            runtime=runtime,
        )

    # ----------------------------------------------------------------- serialisation
    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        for name in ("class_names", "image_mean", "image_std"):
            values[name] = list(values[name])
        return values

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> ScoringContract:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ContractError(f"unknown scoring-contract field(s) {sorted(unknown)}")
        return cls(**values)

    @classmethod
    def from_json(cls, text: str) -> ScoringContract:
        return cls.from_dict(json.loads(text))

    def key(self) -> str:
        """Names the cache folder: any change of checkpoint or preprocessing means scoring again."""
        return content_key(self.to_dict())

    # ----------------------------------------------------------------- use
    def expression_columns(self) -> list[int]:
        """Column of each of stage 2's four EXPRESSIONS among the checkpoint's classes, matched by name."""
        missing = [e for e in EXPRESSIONS if e not in self.class_names]
        if missing:
            raise ContractError(
                f"the stage-1 checkpoint's classes {list(self.class_names)} lack {missing}: stage 2 needs "
                f"{list(EXPRESSIONS)}; train stage 1 on a dataset that has them"
            )
        return [self.class_names.index(e) for e in EXPRESSIONS]

    def check_checkpoint(self, checkpoint: str | Path) -> None:
        """Refuse a stage-1 checkpoint other than the one the contract was made with."""
        if not Path(checkpoint).is_file():
            raise CheckpointError(f"stage-1 checkpoint {checkpoint} does not exist")
        digest = file_digest(checkpoint)
        if digest != self.checkpoint_sha256:
            # A truncated or foreign file is reported as such, not as "another checkpoint".
            read_network_config(checkpoint)
            raise ContractError(
                f"{checkpoint} (sha256 {digest[:12]}...) is not the stage-1 checkpoint of this scoring contract "
                f"(sha256 {self.checkpoint_sha256[:12]}...): pass the checkpoint the cohort was scored with"
            )

    def with_overrides(self, source: str, **overrides: Any) -> ScoringContract:
        """This contract, after checking that explicitly given settings agree with it.

        ``overrides`` are preprocessing flags a user typed (``crop_faces``, ``face_detector``,
        ``precision``); None means "not given". A flag that disagrees is refused, naming both values.
        """
        current = {"crop_faces": self.face.crop_faces, "face_detector": self.face.detector, "precision": self.precision}
        conflicts = [
            f"--{name} {_flag(value)} (the contract of {source} has {_flag(current[name])})"
            for name, value in overrides.items()
            if value is not None and value != current[name]
            and not (name == "face_detector" and not self.face.crop_faces)
        ]
        if conflicts:
            raise ContractError(
                "settings that conflict with the scoring contract: " + "; ".join(conflicts)
                + f". Leave these flags out to score exactly as {source} was trained, or train a screening model "
                "on a cohort scored with the settings you want."
            )
        return self

    def with_runtime(self, runtime: str | None, source: str = "the scoring contract") -> ScoringContract:
        """This contract executed by ``runtime`` (None: its own). Everything that decides the scores stays;
        only the runtime, and so the cache key, changes."""
        if runtime is None or runtime == self.runtime:
            return self
        try:
            return replace(self, runtime=runtime)
        except ContractError as err:
            raise ContractError(f"--runtime {runtime} for {source}: {err}") from err

    def describe(self) -> str:
        framing = (f"aligned, eyes {self.face.eye_distance:g} of the side apart" if self.face.align
                   else f"margin {self.face.margin}")
        face = f"faces cropped ({self.face.detector}, {framing})" if self.face.crop_faces else "no face cropping"
        return (f"stage-1 {self.checkpoint_sha256[:12]}, {len(self.class_names)} classes, tau {self.tau}, "
                f"{self.num_frames} frames ({self.sampler}), {self.image_size} px, {face}, {self.precision}, "
                f"runtime {self.runtime}")


def _flag(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)



