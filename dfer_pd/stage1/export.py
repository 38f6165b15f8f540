"""Stage 1 as one ONNX graph, for screening on a laptop's CPU with ``onnxruntime`` (``dfer-pd export``).

The graph is what scoring runs after training: the vision tower E1 on the M frames, the gate E2, the
temporal transformer T, and the cosine with the class text features G. G is a constant of the
graph, computed once from the trained prompts at export, so the text transformer is not in it (nor
needed at screening time, nor the CLIP folder the checkpoint was trained from). Input
``pixel_values`` (B, M, 3, S, S) float32, prepared exactly as the scoring contract says; outputs
``cosine`` (B, K) and ``video_features`` (B, D). The batch size is dynamic.

The file records, as ONNX metadata, the sha256 of the checkpoint it came from, the network settings
and whether its weights are quantised, so the runtime refuses an export of another checkpoint just
as PyTorch scoring refuses another checkpoint. ``int8=True`` adds dynamic int8 quantisation of the
matrix multiplications (``onnxruntime.quantization.quantize_dynamic``; weights int8 per output
channel, activations quantised on the fly): scores then move by about 1e-3 in cosine, which is why
``onnx-int8`` is a runtime of its own in the scoring contract and in cache keys.

``onnx``, ``onnxscript`` (the exporter) and ``onnxruntime`` are an optional extra:
``pip install 'dfer-pd[onnx]'``.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dfer_pd.common.files import atomic_write, file_digest
from dfer_pd.stage1.contract import (
    ONNX_RUNTIMES,
    ContractError,
    ScoringContract,
    load_stage1,
    read_network_config,
)
from dfer_pd.stage1.modeling_dfer_clip import DferClip, DferClipConfig

EXPORT_FORMAT = 1
INPUT_NAME = "pixel_values"
OUTPUT_NAMES = ("cosine", "video_features")
OPSET = 18
META_FORMAT = "dfer_pd.export_format"
META_CHECKPOINT = "dfer_pd.checkpoint_sha256"
META_NETWORK = "dfer_pd.network"
META_QUANTIZATION = "dfer_pd.quantization"
META_EXPORTED_WITH = "dfer_pd.exported_with"
META_PARITY = "dfer_pd.export_max_abs_cosine_delta"
QUANTIZATION_OF_RUNTIME = {"onnx": "none", "onnx-int8": "dynamic-int8"}
# Only the matrix multiplications are quantised: they are nearly all of a ViT's work, and onnxruntime's
# integer convolution (the patch embedding) is slower than its float one.
QUANTIZED_OPS = ("MatMul", "Gemm")
# The float32 export must reproduce PyTorch's cosines to this (the parity bar); tests hold it too.
FP32_TOLERANCE = 1e-4


class OnnxUnavailableError(ImportError):
    """onnx / onnxruntime are not installed (they are the optional ``onnx`` extra)."""


class OnnxModelError(ValueError):
    """A file that is not a usable dfer-pd stage-1 ONNX export; the message names it."""


def require_onnx(what: str = "the ONNX runtime", exporter: bool = False) -> None:
    """Name the missing extra up front (``exporter``: also onnxscript, which torch's exporter needs)."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401

        if exporter:
            import onnxscript  # noqa: F401
    except ImportError as err:
        raise OnnxUnavailableError(
            f"{what} needs onnx, onnxruntime{' and onnxscript' if exporter else ''}: pip install 'dfer-pd[onnx]' ({err})"
        ) from err


def onnx_path_for(checkpoint: str | Path, runtime: str = "onnx") -> Path:
    """Where ``dfer-pd export`` puts a checkpoint's export by default: ``best.onnx`` / ``best.int8.onnx``."""
    if runtime not in ONNX_RUNTIMES:
        raise ValueError(f"no ONNX file for runtime {runtime!r}; ONNX runtimes are {ONNX_RUNTIMES}")
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.stem + (".int8.onnx" if runtime == "onnx-int8" else ".onnx"))


class InferenceGraph(nn.Module):
    """What the export computes: F from the frames, and cos(F, G_k) with G stored once as a buffer."""

    def __init__(self, network: DferClip) -> None:
        super().__init__()
        self.network = network.eval()
        with torch.no_grad():
            self.register_buffer("text_features", network.encode_text().float())

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        video = self.network.encode_video(pixel_values)
        return video @ self.text_features.T, video


# --------------------------------------------------------------------------- reading an export


@dataclass(frozen=True)
class ExportInfo:
    """What an export says about itself (its ONNX metadata)."""

    path: Path
    checkpoint_sha256: str
    network: DferClipConfig
    quantization: str
    exported_with: str = ""

    @property
    def runtime(self) -> str:
        return "onnx-int8" if self.quantization == "dynamic-int8" else "onnx"

    @classmethod
    def from_metadata(cls, path: str | Path, metadata: dict[str, str]) -> ExportInfo:
        path = Path(path)
        if metadata.get(META_FORMAT) != str(EXPORT_FORMAT) or META_CHECKPOINT not in metadata:
            raise OnnxModelError(f"{path} is not a dfer-pd stage-1 export (format {EXPORT_FORMAT}): "
                                 "its metadata lacks dfer_pd.* fields; export the checkpoint with `dfer-pd export`")
        try:
            network = DferClipConfig.from_value(json.loads(metadata[META_NETWORK]))
        except (KeyError, TypeError, ValueError) as err:
            raise OnnxModelError(f"{path}: unusable network settings in its metadata: {err}") from err
        quantization = metadata.get(META_QUANTIZATION, "")
        if quantization not in QUANTIZATION_OF_RUNTIME.values():
            raise OnnxModelError(f"{path}: unknown quantisation {quantization!r}")
        return cls(path, metadata[META_CHECKPOINT], network, quantization, metadata.get(META_EXPORTED_WITH, ""))

    def check(self, contract: ScoringContract) -> None:
        """Refuse an export of another checkpoint, or one whose quantisation is not the contract's runtime."""
        if self.checkpoint_sha256 != contract.checkpoint_sha256:
            raise ContractError(
                f"{self.path} was exported from stage-1 checkpoint sha256 {self.checkpoint_sha256[:12]}..., not "
                f"the checkpoint of this scoring contract ({contract.checkpoint_sha256[:12]}...): export that one")
        if self.runtime != contract.runtime:
            raise ContractError(f"{self.path} is an {self.runtime} export ({self.quantization} quantisation); "
                                f"the scoring contract runs {contract.runtime}")
        network = self.network
        settings = (network.class_names, network.tau, network.num_frames, network.image_size,
                    network.image_mean, network.image_std)
        expected = (contract.class_names, contract.tau, contract.num_frames, contract.image_size,
                    contract.image_mean, contract.image_std)
        if settings != expected:
            raise ContractError(f"{self.path}: network settings {settings} differ from the contract's {expected}")


def read_export_info(path: str | Path) -> ExportInfo:
    """The metadata of an export, without loading its weights."""
    require_onnx()
    import onnx

    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"ONNX export {path} does not exist: make it with `dfer-pd export --checkpoint <ckpt>`")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf decode errors have no common base class
        raise OnnxModelError(f"{path} is not a readable ONNX model: {err}") from err
    return ExportInfo.from_metadata(path, {p.key: p.value for p in model.metadata_props})


# --------------------------------------------------------------------------- running an export


class OnnxStage1:
    """A stage-1 export on onnxruntime's CPU provider: ``(B, M, 3, S, S)`` pixels -> cosine and F.

    ``threads`` sets onnxruntime's intra-op threads (None: its default, one per physical core).
    """

    def __init__(self, path: str | Path, contract: ScoringContract | None = None, threads: int | None = None) -> None:
        require_onnx()
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise OnnxModelError(f"ONNX export {path} does not exist: make it with `dfer-pd export --checkpoint <ckpt>`"
                                 + (" --int8 true" if contract is not None and contract.runtime == "onnx-int8" else ""))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise OnnxModelError(f"{path} is not a usable ONNX model: {err}") from err
        self.info = ExportInfo.from_metadata(path, dict(self.session.get_modelmeta().custom_metadata_map))
        if contract is not None:
            self.info.check(contract)
        self.path = path

    def __call__(self, pixel_values: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cosine (B, K) and video features (B, D), both float32."""
        if isinstance(pixel_values, torch.Tensor):
            pixel_values = pixel_values.detach().cpu().float().numpy()
        cosine, video = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(pixel_values, np.float32)})
        return cosine, video


# --------------------------------------------------------------------------- exporting


@dataclass
class ExportResult:
    """The written file(s) and what the export measured."""

    path: Path
    int8_path: Path | None
    checkpoint_sha256: str
    seconds: float
    max_abs_cosine_delta: float  # fp32 export vs PyTorch on the export's check input
    int8_max_abs_cosine_delta: float | None = None

    def summary(self) -> str:
        lines = [f"{self.path}: fp32, max |delta cosine| vs PyTorch {self.max_abs_cosine_delta:.1e} on the check input"]
        if self.int8_path is not None:
            lines.append(f"{self.int8_path}: dynamic int8, max |delta cosine| vs PyTorch "
                         f"{self.int8_max_abs_cosine_delta:.1e} on the check input")
        return "\n".join(lines) + f"\n(checkpoint sha256 {self.checkpoint_sha256[:12]}..., {self.seconds:.1f} s)"


def _check_input(network: DferClipConfig, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """Normalised-pixel-like input for tracing and the export's own parity check (batch 2: a batch of 1
    would be specialised away by torch.export, and the graph must take any batch)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, network.num_frames, 3, network.image_size, network.image_size, generator=generator)


def _save_checked(model, path: Path, metadata: dict[str, str]) -> None:
    """Set the dfer_pd.* metadata, validate with onnx.checker and write atomically."""
    import onnx

    kept = [p for p in model.metadata_props if not p.key.startswith("dfer_pd.")]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(model, full_check=True)
    with atomic_write(path) as handle:
        handle.write(model.SerializeToString())


def export_stage1(
    checkpoint: str | Path,
    out: str | Path | None = None,
    int8: bool = False,
    opset: int = OPSET,
) -> ExportResult:
    """Export a trained stage-1 checkpoint to ONNX (and, with ``int8``, a dynamically quantised copy).

    ``out`` defaults to the checkpoint's name with ``.onnx`` (the int8 copy: ``.int8.onnx``), which is
    where ``--runtime onnx`` / ``onnx-int8`` look for it. Each file is validated with
    ``onnx.checker`` and run once on onnxruntime against PyTorch before it is written.
    """
    require_onnx("dfer-pd export", exporter=True)
    import onnx

    started = time.perf_counter()
    checkpoint = Path(checkpoint)
    config = read_network_config(checkpoint)  # names a missing or foreign checkpoint first
    digest = file_digest(checkpoint)
    out = Path(out) if out is not None else onnx_path_for(checkpoint, "onnx")
    graph = InferenceGraph(load_stage1(checkpoint).net).eval()
    example = _check_input(graph.network.config)
    with torch.no_grad():
        expected = graph(example)[0].numpy()
    metadata = {
        META_FORMAT: str(EXPORT_FORMAT),
        META_CHECKPOINT: digest,
        META_NETWORK: json.dumps(graph.network.config.to_dict(), sort_keys=True),
        META_EXPORTED_WITH: f"torch {torch.__version__}, onnx {onnx.__version__}, opset {opset}",
    }

    with tempfile.TemporaryDirectory(prefix="dfer_pd_export_") as work:
        raw = Path(work) / "stage1.onnx"
        batch = torch.export.Dim("batch", min=1)
        program = torch.onnx.export(
            graph, (example,), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), opset_version=opset,
            dynamo=True, dynamic_shapes={"pixel_values": {0: batch}}, external_data=False, verbose=False)
        program.save(str(raw), external_data=False)
        delta = _max_cosine_delta(raw, example, expected)
        if not delta <= FP32_TOLERANCE:
            raise RuntimeError(f"the ONNX export of {checkpoint} disagrees with PyTorch by {delta:.2e} in cosine "
                               f"on the check input (tolerance {FP32_TOLERANCE:g}): not written")
        _save_checked(onnx.load(str(raw)), out, {**metadata, META_QUANTIZATION: "none", META_PARITY: f"{delta:.3e}"})
        result = ExportResult(out, None, digest, 0.0, delta)
        if int8:
            result.int8_path = out.with_name(out.name.removesuffix(".onnx") + ".int8.onnx")
            quantized = quantize_int8(raw, Path(work) / "stage1.int8.onnx")
            result.int8_max_abs_cosine_delta = _max_cosine_delta(quantized, example, expected)
            _save_checked(onnx.load(str(quantized)), result.int8_path, {
                **metadata, META_QUANTIZATION: "dynamic-int8", META_PARITY: f"{result.int8_max_abs_cosine_delta:.3e}"})
    result.seconds = time.perf_counter() - started
    return result


def quantize_int8(fp32_path: str | Path, int8_path: str | Path) -> Path:
    """Dynamic int8 quantisation of the matrix multiplications (weights per output channel)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(fp32_path), str(int8_path), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=list(QUANTIZED_OPS))
    return Path(int8_path)


def _max_cosine_delta(path: Path, pixel_values: torch.Tensor, expected: np.ndarray) -> float:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cosine = session.run([OUTPUT_NAMES[0]], {INPUT_NAME: pixel_values.numpy()})[0]
    return float(np.abs(cosine - expected).max())


__all__ = ["ExportInfo", "ExportResult", "InferenceGraph", "OnnxModelError", "OnnxStage1", "OnnxUnavailableError",
           "export_stage1", "onnx_path_for", "quantize_int8", "read_export_info", "require_onnx"]
