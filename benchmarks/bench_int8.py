"""Benchmark (not a test): how to quantise stage 1 to int8, chosen by error against PyTorch and by speed.

    .venv/bin/python benchmarks/bench_int8.py prepare WORK [--checkpoint CKPT --dfew_root ROOT] [--vit_b32]
    .venv/bin/python benchmarks/bench_int8.py measure WORK [--repeats 5]
    qemu-x86_64 -cpu EPYC-Milan .venv/bin/python benchmarks/bench_int8.py measure WORK --repeats 0

`prepare` (PyTorch) exports a stage-1 checkpoint to float32 ONNX, quantises it with each candidate setting
of onnxruntime's ``quantize_dynamic``, and stores clips with PyTorch's float32 cosines and the time of
PyTorch's forward pass. Clips: the export's probe pixels plus, with ``--dfew_root``, the synthetic DFEW
fold-1 test clips prepared by the scoring path. ``--vit_b32``: a ViT-B/32-sized stage 1 (``CLIPConfig()``,
random weights) instead of ``--checkpoint``, for speed (one subject: 4 clips of 16 frames).

`measure` needs only onnxruntime and numpy, so it also runs under QEMU's user-mode emulation with an
older CPU model: ``-cpu EPYC-Milan`` is AVX2 without AVX-512 or VNNI, the CPU kind whose int8 kernels
saturate. Its errors are that CPU's (onnxruntime picks its kernels by CPUID); its times are not
(``--repeats 0`` skips them). Prints max |delta cosine| against PyTorch per setting and, natively,
the median seconds per forward pass and the speed-up over PyTorch float32.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dfer_pd.common.machine import machine_line

# Candidate settings of quantize_dynamic (weights; activations are always uint8, quantised on the fly).
CANDIDATES = {
    "int8 weights, per channel": dict(weight_type="QInt8", per_channel=True),
    "int8 weights, per channel, reduce_range": dict(weight_type="QInt8", per_channel=True, reduce_range=True),
    "int8 weights, per tensor, reduce_range": dict(weight_type="QInt8", per_channel=False, reduce_range=True),
    "uint8 weights, per channel": dict(weight_type="QUInt8", per_channel=True),
    "uint8 weights, per tensor": dict(weight_type="QUInt8", per_channel=False),
}


def prepare(args) -> None:
    import lightning
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from dfer_pd.stage1.contract import load_stage1
    from dfer_pd.stage1.export import QUANTIZED_OPS, InferenceGraph, Probe, export_stage1

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    checkpoint = args.checkpoint
    if args.vit_b32:
        from _common import save_random_vit_b32

        from dfer_pd.stage1.module import DferClipModule

        torch.manual_seed(0)
        module = DferClipModule(network=dict(clip_name_or_path=str(save_random_vit_b32(work / "clip")), random_init=False))
        checkpoint = work / "stage1.ckpt"
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                    "pytorch-lightning_version": lightning.__version__}, checkpoint)
    export_stage1(checkpoint, work / "float32.onnx")
    graph = InferenceGraph(load_stage1(checkpoint).net).eval()
    config = graph.network.config
    clips = [torch.from_numpy(Probe.normalise(Probe.make_pixels(config, clips=4, seed=1), config))]
    labels = [-1] * 4  # the probe-like clips have no expression
    if args.dfew_root:
        from dfer_pd.stage1.contract import ScoringContract
        from dfer_pd.stage1.datasets.dfew import DfewDataModule
        from dfer_pd.stage1.scoring import prepare_clip

        contract = ScoringContract.from_checkpoint(checkpoint)
        records = DfewDataModule(args.dfew_root, fold=1, classes=4).split_records("test")
        clips.append(torch.stack([prepare_clip(r.path, contract).pixel_values for r in records]))
        labels += [r.label for r in records]
    pixels = torch.cat(clips)
    with torch.no_grad():
        graph(pixels[:1])  # warm-up
        cosine = np.concatenate([graph(clip)[0].double().numpy() for clip in pixels.split(1)])
        seconds = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            graph(pixels[:4])
            seconds.append(time.perf_counter() - started)
    np.savez(work / "reference.npz", pixels=pixels.numpy(), cosine=cosine, labels=np.asarray(labels))
    for name, settings in CANDIDATES.items():
        settings = dict(settings, weight_type=getattr(QuantType, settings["weight_type"]))
        quantize_dynamic(str(work / "float32.onnx"), str(work / f"{_slug(name)}.onnx"),
                         op_types_to_quantize=list(QUANTIZED_OPS), **settings)
    (work / "torch.json").write_text(json.dumps({"seconds_4_clips": seconds, "checkpoint": str(checkpoint)}))
    print(f"{len(pixels)} clips of {tuple(pixels.shape[1:])}; torch float32, 4 clips per pass: "
          f"{statistics.median(seconds):.3f} s (median of {len(seconds)})" if seconds else f"{len(pixels)} clips")


def _slug(name: str) -> str:
    return name.replace(", ", "-").replace(" ", "_")


def war_uar(cosine: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Stage 1's test figures from the cosines of the labelled clips (numpy only, for emulation)."""
    known = labels >= 0
    predicted, labels = cosine[known].argmax(1), labels[known]
    recalls = [np.mean(predicted[labels == k] == k) for k in np.unique(labels)]
    return float(np.mean(predicted == labels)), float(np.mean(recalls))


def measure(args) -> None:
    import onnxruntime as ort

    work = Path(args.work)
    reference = np.load(work / "reference.npz")
    pixels, expected = reference["pixels"], reference["cosine"]
    torch_seconds = json.loads((work / "torch.json").read_text())["seconds_4_clips"]
    torch_median = statistics.median(torch_seconds) if torch_seconds else None
    if (reference["labels"] >= 0).any():
        print("PyTorch float32: WAR {:.3f} UAR {:.3f} on the {} labelled clips".format(
            *war_uar(expected, reference["labels"]), int((reference["labels"] >= 0).sum())))
    print(f"{len(pixels)} clips; max |delta cosine| against PyTorch float32" +
          (f"; seconds per 4-clip pass (median of {args.repeats}) and speed-up over torch float32 "
           f"({torch_median:.3f} s)" if args.repeats and torch_median else ""))
    for name in ["float32", *CANDIDATES]:
        path = work / f"{_slug(name) if name != 'float32' else 'float32'}.onnx"
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        cosine = np.concatenate([session.run(["cosine"], {"pixel_values": clip[None]})[0] for clip in pixels])
        line = f"  {name:42s} {np.abs(cosine - expected).max():.4f}"
        labels = reference["labels"]
        if (labels >= 0).any():
            line += "   WAR {:.3f} UAR {:.3f}".format(*war_uar(cosine, labels))
        if args.repeats:
            batch = pixels[:4]
            session.run(["cosine"], {"pixel_values": batch})
            seconds = []
            for _ in range(args.repeats):
                started = time.perf_counter()
                session.run(["cosine"], {"pixel_values": batch})
                seconds.append(time.perf_counter() - started)
            line += f"   {statistics.median(seconds):.3f} s"
            if torch_median:
                line += f"   {torch_median / statistics.median(seconds):.2f}x"
        print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="mode", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("work", nargs="?", default=tempfile.mkdtemp(prefix="bench_int8_"))
    prep.add_argument("--checkpoint", help="a trained stage-1 checkpoint (the demo's: runs/demo/stage1/checkpoints/best.ckpt)")
    prep.add_argument("--dfew_root", help="its synthetic DFEW tree (runs/demo/data/dfew): adds the fold-1 test clips")
    prep.add_argument("--vit_b32", action="store_true", help="a ViT-B/32-sized stage 1 with random weights")
    prep.add_argument("--repeats", type=int, default=5)
    meas = sub.add_parser("measure")
    meas.add_argument("work")
    meas.add_argument("--repeats", type=int, default=5, help="timed passes per setting (0: errors only, for emulation)")
    args = parser.parse_args()
    if args.mode == "prepare" and not (args.checkpoint or args.vit_b32):
        parser.error("prepare needs --checkpoint or --vit_b32")
    prepare(args) if args.mode == "prepare" else measure(args)


if __name__ == "__main__":
    print(machine_line(), flush=True)  # every figure names the machine it was measured on
    main()
