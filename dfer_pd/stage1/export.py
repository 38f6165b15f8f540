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
matrix multiplications (``onnxruntime.quantization.quantize_dynamic``, see :data:`INT8_SETTINGS`):
scores then move by up to about 1e-2 in cosine, which is why ``onnx-int8`` is a runtime of its own in
the scoring contract and in cache keys.

onnxruntime picks its integer kernels by CPU (VNNI or not), so an int8 file that is right on one
machine can be wrong on another. Each file therefore carries a probe: two clips of pixels and
PyTorch's cosines for them. The export refuses to write a file that misses its tolerance on the probe,
and :class:`OnnxStage1` runs the probe the first time a machine loads a file (the result is cached per
machine and file) and refuses a file that misses it there.

``onnx``, ``onnxscript`` (the exporter) and ``onnxruntime`` are an optional extra:
``pip install 'dfer-pd[onnx]'``.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dfer_pd.common.files import atomic_write, atomic_write_json, content_key, file_digest
from dfer_pd.common.machine import machine_key, machine_line, user_cache_dir
from dfer_pd.stage1.contract import (
    ONNX_RUNTIMES,
    ContractError,
    ScoringContract,
    load_stage1,
    read_network_config,
)
from dfer_pd.stage1.modeling_dfer_clip import DferClip, DferClipConfig

# 2: every file carries its probe (format-1 files have none: export them again).
EXPORT_FORMAT = 2
INPUT_NAME = "pixel_values"
OUTPUT_NAMES = ("cosine", "video_features")
OPSET = 18
META_FORMAT = "dfer_pd.export_format"
META_CHECKPOINT = "dfer_pd.checkpoint_sha256"
META_NETWORK = "dfer_pd.network"
META_QUANTIZATION = "dfer_pd.quantization"
META_EXPORTED_WITH = "dfer_pd.exported_with"
META_PARITY = "dfer_pd.export_max_abs_cosine_delta"
META_PROBE = "dfer_pd.probe"
QUANTIZATION_OF_RUNTIME = {"onnx": "none", "onnx-int8": "dynamic-int8"}
# Only the matrix multiplications are quantised: they are nearly all of a ViT's work, and onnxruntime's
# integer convolution (the patch embedding) is slower than its float one.
QUANTIZED_OPS = ("MatMul", "Gemm")
# quantize_dynamic's settings. Without VNNI (AVX2, AVX-512 before VNNI) onnxruntime multiplies uint8
# activations by int8 weights with instructions that add pairs of products into int16 and saturate:
# 255 x 127 x 2 > 32767, so full-range int8 weights overflow there and the cosines moved by 0.04-0.11
# on an AVX2 CPU. 7-bit weights (reduce_range, which onnxruntime's documentation gives for CPUs without
# VNNI) cannot overflow (255 x 64 x 2 < 32767) and run on the same fast u8s8 kernels everywhere;
# see docs/performance.md for the measurement that chose them.
INT8_SETTINGS = {"weight_type": "QInt8", "per_channel": True, "reduce_range": True}
# The float32 export must reproduce PyTorch's cosines to this; the int8 export to INT8_TOLERANCE
# (measured worst cases in docs/performance.md). Both on the file's probe, on every machine that loads it.
FP32_TOLERANCE = 1e-4
INT8_TOLERANCE = 2e-2
TOLERANCE_OF_QUANTIZATION = {"none": FP32_TOLERANCE, "dynamic-int8": INT8_TOLERANCE}
PROBE_CLIPS = 2  # also the tracing batch: a batch of 1 would be specialised away by torch.export


class OnnxUnavailableError(ImportError):
    """onnx / onnxruntime are not installed (they are the optional ``onnx`` extra)."""


class OnnxModelError(ValueError):
    """A file that is not a usable dfer-pd stage-1 ONNX export; the message names it."""


class OnnxProbeError(OnnxModelError):
    """An export whose cosines disagree with PyTorch's beyond its tolerance on this machine."""


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


# --------------------------------------------------------------------------- the probe


@dataclass(frozen=True)
class Probe:
    """Pixels and PyTorch's cosines for them, stored in the export; its tolerance is the file's.

    The pixels are uint8 images (clips, M, 3, S, S) of 8-pixel blocks, so they compress well and
    normalise exactly as the contract's images do; the input is the stored pixels, not a seed, so no
    random generator's version can change it.
    """

    pixels: np.ndarray  # (clips, M, 3, S, S) uint8
    cosine: np.ndarray  # (clips, K) float64: PyTorch float32 on the exporting machine
    tolerance: float

    @staticmethod
    def make_pixels(network: DferClipConfig, clips: int = PROBE_CLIPS, seed: int = 0) -> np.ndarray:
        size, block = network.image_size, 8
        side = -(-size // block)
        low = np.random.default_rng(seed).integers(0, 256, (clips, network.num_frames, 3, side, side), dtype=np.uint8)
        return np.ascontiguousarray(low.repeat(block, axis=-1).repeat(block, axis=-2)[..., :size, :size])

    @staticmethod
    def normalise(pixels: np.ndarray, network: DferClipConfig) -> np.ndarray:
        """uint8 pixels -> the network's float32 input, as the contract's transform normalises."""
        mean = np.asarray(network.image_mean, np.float32).reshape(3, 1, 1)
        std = np.asarray(network.image_std, np.float32).reshape(3, 1, 1)
        return ((pixels.astype(np.float32) / np.float32(255.0) - mean) / std).astype(np.float32)

    def to_text(self) -> str:
        return json.dumps({
            "shape": list(self.pixels.shape),
            "pixels": base64.b64encode(zlib.compress(self.pixels.tobytes(), 9)).decode("ascii"),
            "cosine": self.cosine.tolist(),
            "tolerance": self.tolerance,
        })

    @classmethod
    def from_text(cls, text: str) -> Probe:
        values = json.loads(text)
        pixels = np.frombuffer(zlib.decompress(base64.b64decode(values["pixels"])), np.uint8).reshape(values["shape"])
        return cls(pixels, np.asarray(values["cosine"], np.float64), float(values["tolerance"]))

    def max_delta(self, cosine: np.ndarray) -> float:
        return float(np.abs(np.asarray(cosine, np.float64) - self.cosine).max())


def probe_cache_file(info: ExportInfo) -> Path:
    """Where this machine keeps the result of ``info``'s probe."""
    return user_cache_dir() / "onnx-probes" / f"{info.metadata_key}-{machine_key()}.json"


def run_probe(info: ExportInfo, session) -> float:
    """The file's error against PyTorch on this machine: measured once, then read from the cache."""
    cache = probe_cache_file(info)
    try:
        cached = json.loads(cache.read_text())
        return float(cached["max_abs_cosine_delta"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    pixel_values = Probe.normalise(info.probe.pixels, info.network)
    delta = info.probe.max_delta(session.run([OUTPUT_NAMES[0]], {INPUT_NAME: pixel_values})[0])
    try:
        atomic_write_json(cache, {"file": str(info.path), "max_abs_cosine_delta": delta,
                                  "tolerance": info.probe.tolerance, "machine": machine_line()})
    except OSError:  # a cache that cannot be written only costs the probe's time next load
        pass
    return delta


def refuse_if_off(path: Path, quantization: str, delta: float, tolerance: float, where: str) -> None:
    """Raise :class:`OnnxProbeError` when an export misses its tolerance, saying what to use instead."""
    if delta <= tolerance:
        return
    instead = "the float32 export (--runtime onnx)" if quantization == "dynamic-int8" else "--runtime torch"
    raise OnnxProbeError(
        f"{path}: its {'int8' if quantization == 'dynamic-int8' else 'float32'} cosines differ from PyTorch's by "
        f"{delta:.3g} {where} (tolerance {tolerance:g}): use {instead}")


# --------------------------------------------------------------------------- reading an export


@dataclass(frozen=True)
class ExportInfo:
    """What an export says about itself (its ONNX metadata)."""

    path: Path
    checkpoint_sha256: str
    network: DferClipConfig
    quantization: str
    probe: Probe
    exported_with: str = ""
    metadata_key: str = ""  # names the file in the probe cache (its dfer_pd.* metadata and size)

    @property
    def runtime(self) -> str:
        return "onnx-int8" if self.quantization == "dynamic-int8" else "onnx"

    @classmethod
    def from_metadata(cls, path: str | Path, metadata: dict[str, str]) -> ExportInfo:
        path = Path(path)
        if META_CHECKPOINT not in metadata:
            raise OnnxModelError(f"{path} is not a dfer-pd stage-1 export (format {EXPORT_FORMAT}): "
                                 "its metadata lacks dfer_pd.* fields; export the checkpoint with `dfer-pd export`")
        if metadata.get(META_FORMAT) != str(EXPORT_FORMAT):
            raise OnnxModelError(f"{path} is a dfer-pd export of format {metadata.get(META_FORMAT)}, without the probe "
                                 f"that format {EXPORT_FORMAT} carries: export the checkpoint again with `dfer-pd export`")
        try:
            network = DferClipConfig.from_value(json.loads(metadata[META_NETWORK]))
        except (KeyError, TypeError, ValueError) as err:
            raise OnnxModelError(f"{path}: unusable network settings in its metadata: {err}") from err
        quantization = metadata.get(META_QUANTIZATION, "")
        if quantization not in QUANTIZATION_OF_RUNTIME.values():
            raise OnnxModelError(f"{path}: unknown quantisation {quantization!r}")
        try:
            probe = Probe.from_text(metadata[META_PROBE])
        except (KeyError, TypeError, ValueError, zlib.error) as err:
            raise OnnxModelError(f"{path}: its probe (metadata {META_PROBE}) is missing or unreadable: {err}") from err
        ours = {k: v for k, v in metadata.items() if k.startswith("dfer_pd.")}
        key = content_key({**ours, "size": path.stat().st_size if path.is_file() else 0})
        return cls(path, metadata[META_CHECKPOINT], network, quantization, probe,
                   metadata.get(META_EXPORTED_WITH, ""), key)

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
        # The file's probe on this machine (cached per machine and file): onnxruntime's kernels differ by CPU.
        self.probe_delta = run_probe(self.info, self.session)
        refuse_if_off(path, self.info.quantization, self.probe_delta, self.info.probe.tolerance,
                      f"on this machine ({machine_line().removeprefix('machine: ')})")

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
    max_abs_cosine_delta: float  # fp32 export vs PyTorch on the file's probe
    int8_max_abs_cosine_delta: float | None = None

    def summary(self) -> str:
        lines = [f"{self.path}: fp32, max |delta cosine| vs PyTorch {self.max_abs_cosine_delta:.1e} on its probe"]
        if self.int8_path is not None:
            lines.append(f"{self.int8_path}: dynamic int8, max |delta cosine| vs PyTorch "
                         f"{self.int8_max_abs_cosine_delta:.1e} on its probe (tolerance {INT8_TOLERANCE:g})")
        return "\n".join(lines) + f"\n(checkpoint sha256 {self.checkpoint_sha256[:12]}..., {self.seconds:.1f} s)"


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
    where ``--runtime onnx`` / ``onnx-int8`` look for it. Each file is validated with ``onnx.checker``
    and run on onnxruntime against PyTorch on its probe before it is written; a file that misses its
    tolerance is not written (:class:`OnnxProbeError`; the float32 file is written before the int8 one
    is tried, so it is there to use instead).
    """
    require_onnx("dfer-pd export", exporter=True)
    import onnx

    started = time.perf_counter()
    checkpoint = Path(checkpoint)
    config = read_network_config(checkpoint)  # names a missing or foreign checkpoint first
    digest = file_digest(checkpoint)
    out = Path(out) if out is not None else onnx_path_for(checkpoint, "onnx")
    graph = InferenceGraph(load_stage1(checkpoint).net).eval()
    pixels = Probe.make_pixels(config)
    example = torch.from_numpy(Probe.normalise(pixels, config))
    with torch.no_grad():
        expected = graph(example)[0].double().numpy()
    metadata = {
        META_FORMAT: str(EXPORT_FORMAT),
        META_CHECKPOINT: digest,
        META_NETWORK: json.dumps(graph.network.config.to_dict(), sort_keys=True),
        META_EXPORTED_WITH: f"torch {torch.__version__}, onnx {onnx.__version__}, opset {opset}",
    }

    def write(model_path: Path, destination: Path, quantization: str) -> float:
        probe = Probe(pixels, expected, TOLERANCE_OF_QUANTIZATION[quantization])
        delta = probe.max_delta(_cosines(model_path, example))
        refuse_if_off(destination, quantization, delta, probe.tolerance,
                      f"on its probe at export, not written (on {machine_line().removeprefix('machine: ')})")
        _save_checked(onnx.load(str(model_path)), destination, {
            **metadata, META_QUANTIZATION: quantization, META_PARITY: f"{delta:.3e}", META_PROBE: probe.to_text()})
        return delta

    with tempfile.TemporaryDirectory(prefix="dfer_pd_export_") as work:
        raw = Path(work) / "stage1.onnx"
        batch = torch.export.Dim("batch", min=1)
        program = torch.onnx.export(
            graph, (example,), input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES), opset_version=opset,
            dynamo=True, dynamic_shapes={"pixel_values": {0: batch}}, external_data=False, verbose=False)
        program.save(str(raw), external_data=False)
        result = ExportResult(out, None, digest, 0.0, write(raw, out, "none"))
        if int8:
            int8_path = out.with_name(out.name.removesuffix(".onnx") + ".int8.onnx")
            quantized = quantize_int8(raw, Path(work) / "stage1.int8.onnx")
            result.int8_max_abs_cosine_delta = write(quantized, int8_path, "dynamic-int8")
            result.int8_path = int8_path
    result.seconds = time.perf_counter() - started
    return result


def quantize_int8(fp32_path: str | Path, int8_path: str | Path) -> Path:
    """Dynamic int8 quantisation of the matrix multiplications, with :data:`INT8_SETTINGS`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    settings = dict(INT8_SETTINGS, weight_type=getattr(QuantType, INT8_SETTINGS["weight_type"]))
    quantize_dynamic(str(fp32_path), str(int8_path), op_types_to_quantize=list(QUANTIZED_OPS), **settings)
    return Path(int8_path)


def _cosines(path: Path, pixel_values: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAMES[0]], {INPUT_NAME: pixel_values.numpy()})[0]


__all__ = ["ExportInfo", "ExportResult", "INT8_TOLERANCE", "InferenceGraph", "OnnxModelError", "OnnxProbeError",
           "OnnxStage1", "OnnxUnavailableError", "Probe", "export_stage1", "onnx_path_for", "quantize_int8", "read_export_info", "require_onnx"]
