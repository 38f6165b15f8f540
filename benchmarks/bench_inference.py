"""Benchmark (not a test): screening one person with a ViT-B/32-sized stage 1, per runtime, in one run.

    .venv/bin/python benchmarks/bench_inference.py [--crop_faces true] [--seconds 5] [--size 256] [--repeats 5]
    .venv/bin/python benchmarks/bench_inference.py accuracy --checkpoint runs/demo/stage1/checkpoints/best.ckpt \
        --dfew_root runs/demo/data/dfew --cohort runs/demo/data/cohort/manifest.csv

Prints, on this machine and in this one process: the bare vision forward of the subject's 64 frames
(torch fp32, the reference); then for torch fp32, torch bf16, ONNX fp32 and ONNX int8, the seconds
per subject of `diagnose` (four videos: decoding, face tracking, stage 1, stage 2, quality flags;
the models loaded once, as a server or the web page holds them) with videos per second, its ratio
to the bare vision forward, and the stage-1 forward alone; the time to load each runtime; and the
path before this change (text features re-encoded, videos prepared one after another, then one
batched forward pass). Repeats are interleaved across the variants, so a busy machine slows all
of them alike; the fastest repeat (noise only adds time, timeit's rule) and, in brackets, the median
are printed, with the CPU seconds the process used (all its threads), which another program on the
machine does not inflate. Last, `dfer-pd diagnose`
as a user types it, in a new process (imports, model loading and the report files included), with
the .ckpt and with the int8 export.

No hub access here, so the CLIP is `CLIPConfig()` (openai/clip-vit-base-patch32's sizes) with random
weights saved and loaded through `from_pretrained` (speed does not depend on the weights' values);
the videos are synthetic faces (H.264, 30 fps).

`accuracy` measures what the runtimes change on a trained stage 1 (the demo's tiny CLIP): WAR/UAR and
the largest cosine difference on the synthetic DFEW fold-1 test set, the stage-2 cross-validated
accuracy on the cohort scored by each runtime (same folds, same training seeds), and the verdicts of
`diagnose` on the cohort's first PD and first HC subjects under each runtime.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import lightning
import numpy as np
import torch
from _common import save_random_vit_b32

from dfer_pd.common.machine import machine_line
from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.screening.diagnose import diagnose
from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.stage1.contract import ScoringContract
from dfer_pd.stage1.export import export_stage1
from dfer_pd.stage1.module import DferClipModule
from dfer_pd.stage1.quality import video_quality
from dfer_pd.stage1.scoring import Stage1Scorer, default_threads, expression_cosines, prepare_clip
from dfer_pd.stage2.settings import ClassifierConfig
from dfer_pd.stage2.cohort import read_manifest
from dfer_pd.stage2.screening_model import fit_screening_model
from dfer_pd.stage2.runtime import running_on
from dfer_pd.stage2.settings import CPU, CVConfig
from dfer_pd.synthetic.cohort import make_pd_cohort
from dfer_pd.synthetic.intensities import synthetic_cohort

RUNTIMES = {  # label -> (contract precision, runtime)
    "torch fp32": ("32-true", "torch"),
    "torch bf16": ("bf16-mixed", "torch"),
    "ONNX fp32": ("32-true", "onnx"),
    "ONNX int8": ("32-true", "onnx-int8"),
}


def build(work: Path, crop_faces: bool, seconds: float, size: int):
    clip_dir = save_random_vit_b32(work / "clip-vit-b32-random")
    torch.manual_seed(0)
    module = DferClipModule(network=dict(clip_name_or_path=str(clip_dir), random_init=False))
    checkpoint = work / "stage1.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": lightning.__version__}, checkpoint)
    started = time.perf_counter()
    export = export_stage1(checkpoint, int8=True)
    print(f"export (fp32 + int8): {time.perf_counter() - started:.1f} s; {export.summary()}")
    face = FaceCropSettings(crop_faces=crop_faces)
    classifier = ClassifierConfig(features="processed", init_args={"max_epochs": 20})
    models = {}
    for precision in ("32-true", "bf16-mixed"):
        # Synthetic intensities declared as scored under this checkpoint's contract (speed does not depend on them).
        contract = ScoringContract.from_checkpoint(checkpoint, face, precision)
        data = dataclasses.replace(synthetic_cohort(seed=0), contract=contract, tau=None)
        with running_on(CPU):
            models[precision] = fit_screening_model(data, classifier, CVConfig())
        # A random stage 1 recognises no expression; without this check every run does the same work
        # (all four videos scored and classified) whatever the random weights.
        models[precision].recognition_threshold = None
    manifest = make_pd_cohort(work / "cohort", num_subjects=2, seconds=seconds, size=size, fps=30)
    return checkpoint, models, read_manifest(manifest).subjects[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop_faces", default="true", choices=["true", "false"])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each video")
    parser.add_argument("--size", type=int, default=256, help="video frame side in pixels")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0,
                        help="torch and onnxruntime intra-op threads (0: their defaults). On a machine other programs "
                             "also load, 1 avoids the collapse of multi-threaded kernels that wait for each other")
    parser.add_argument("--cold", default="true", choices=["true", "false"], help="also time the CLI in a new process")
    sub = parser.add_subparsers(dest="mode")
    acc = sub.add_parser("accuracy", help="what the ONNX runtimes change on a trained stage 1")
    acc.add_argument("--checkpoint", required=True, help="a trained stage-1 checkpoint (the demo's)")
    acc.add_argument("--dfew_root", required=True, help="the synthetic DFEW tree it was trained on (fold 1)")
    acc.add_argument("--cohort", required=True, help="the synthetic cohort's manifest.csv")
    acc.add_argument("--crop_faces", default="false", choices=["true", "false"], help="how the cohort is scored")
    acc.add_argument("--stage2_config", help="a stage-2 config (name or YAML, e.g. pd_demo) whose face: section says "
                                            "how the cohort is scored (overrides --crop_faces)")
    acc.add_argument("--work", default=None, help="folder for the exports and caches (default: a temporary one)")
    args = parser.parse_args()
    if args.mode == "accuracy":
        return accuracy(args)
    speed(args)


def speed(args) -> None:
    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    try:
        checkpoint, models, subject = build(work, args.crop_faces == "true", args.seconds, args.size)
        videos = [subject.videos[e] for e in EXPRESSIONS]
        scorers, load_seconds = {}, {}
        for label, (precision, runtime) in RUNTIMES.items():
            started = time.perf_counter()
            scorers[label] = Stage1Scorer.for_contract(checkpoint, models[precision].contract, runtime,
                                                       threads=args.threads or None)
            load_seconds[label] = time.perf_counter() - started
        network = scorers["torch fp32"].network
        pixels = torch.stack([prepare_clip(v, models["32-true"].contract).pixel_values for v in videos])
        frames = pixels.flatten(0, 1)  # the subject's 64 frames, (64, 3, 224, 224)

        timings: dict[str, list[float]] = defaultdict(list)  # wall seconds
        cpu: dict[str, list[float]] = defaultdict(list)  # CPU seconds of this process (all its threads)
        verdicts: dict[str, set] = defaultdict(set)

        def timed(key: str, fn):
            wall, work = time.perf_counter(), time.process_time()
            out = fn()
            timings[key].append(time.perf_counter() - wall)
            cpu[key].append(time.process_time() - work)
            return out

        # One warm-up round (first-call allocations, detector and landmark models, onnxruntime's kernel
        # choice), then repeats interleaved across the variants.
        for round_ in range(args.repeats + 1):
            if round_ == 1:
                timings.clear()
                cpu.clear()
            with torch.no_grad():
                timed("bare vision", lambda: network.encode_frames(frames))
            timed("old path", lambda: old_path(network, subject, models["32-true"]))
            for label, (precision, _) in RUNTIMES.items():
                result = timed(f"{label}/subject", lambda: diagnose(subject.videos, scorers[label], models[precision]))
                verdicts[label].add((result.verdict, None if result.p_pd is None else round(result.p_pd, 3)))
                timed(f"{label}/forward", lambda: scorers[label].runtime(pixels))
        cold = cold_cli(work, checkpoint, models["32-true"], subject) if args.cold == "true" else {}

        def cell(key: str) -> str:
            return f"{min(timings[key]):.2f} ({statistics.median(timings[key]):.2f}) | {min(cpu[key]):.2f}"

        bare, bare_cpu = min(timings["bare vision"]), min(cpu["bare vision"])
        print(f"\nscreening one subject: 4 videos of {args.seconds:.0f} s at {args.size} px / 30 fps, "
              f"crop_faces={args.crop_faces}, ViT-B/32-sized stage 1 (16 frames per video); {os.cpu_count()} CPUs, "
              f"torch {torch.get_num_threads()} threads, onnxruntime {args.threads or 'its default number of'} threads, "
              f"videos prepared on {default_threads()} threads; {args.repeats} interleaved repeats: "
              "wall seconds, fastest (median); CPU seconds of the process, fewest\n")
        print("| what | wall s | CPU s | wall / bare vision | CPU / bare vision | videos/s (fastest wall) |")
        print("|---|---|---|---|---|---|")
        print(f"| bare vision forward, 64 frames, torch fp32 (the reference) | {cell('bare vision')} | 1.00 | 1.00 | |")
        rows = [("diagnose before this change (torch fp32)", "old path")]
        rows += [(f"diagnose, {label}", f"{label}/subject") for label in RUNTIMES]
        rows += [(f"stage-1 forward alone, 4 videos, {label}", f"{label}/forward") for label in RUNTIMES]
        for name, key in rows:
            videos_per_s = f"{4 / min(timings[key]):.2f}" if not key.endswith("/forward") else ""
            print(f"| {name} | {cell(key)} | {min(timings[key]) / bare:.2f} | {min(cpu[key]) / bare_cpu:.2f} | {videos_per_s} |")
        print("\nloading each runtime (s): " + ", ".join(f"{label} {seconds:.1f}" for label, seconds in load_seconds.items()))
        for what, table in (("wall", timings), ("CPU", cpu)):
            print(f"ONNX int8 vs torch fp32, {what}: per subject {min(table['torch fp32/subject']) / min(table['ONNX int8/subject']):.2f}x "
                  f"faster; stage-1 forward alone {min(table['torch fp32/forward']) / min(table['ONNX int8/forward']):.2f}x")
        for label, seen in verdicts.items():
            print(f"  {label}: (verdict, p(PD)) over the repeats: {sorted(seen, key=str)}")
        for label, (wall, work_s) in cold.items():
            print(f"cold `dfer-pd diagnose` ({label}; a new process: imports, loading, scoring, report files): "
                  f"{wall:.1f} s wall, {work_s:.1f} CPU s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def cold_cli(work: Path, checkpoint: Path, model, subject) -> dict[str, tuple[float, float]]:
    """Wall and CPU seconds of the command a user types, once per runtime, each in a fresh process."""
    import resource
    import subprocess
    import sys

    folder = model.save(work / "screening_model")
    args = [a for e in EXPRESSIONS for a in (f"--{e}", str(subject.videos[e]))]
    commands = {"torch fp32, --stage1 .ckpt": ["--stage1", str(checkpoint)],
                "ONNX int8, --stage1 .int8.onnx": ["--stage1", str(checkpoint.with_name(checkpoint.stem + ".int8.onnx"))]}
    seconds = {}
    for label, stage1 in commands.items():
        started, children = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run([sys.executable, "-m", "dfer_pd.cli", "diagnose", *stage1, "--screening_model", str(folder),
                        "--out", str(work / "report"), *args], check=True, capture_output=True)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds[label] = (time.perf_counter() - started,
                          after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime)
    return seconds


def old_path(network, subject, model) -> float:
    """`diagnose` as it was before this change, for comparison in the same run: the four videos prepared one
    after another, then one batched forward pass that re-encodes the text features; quality flags; stage 2."""
    contract = model.contract
    clips = [prepare_clip(subject.videos[e], contract) for e in EXPRESSIONS]
    with torch.no_grad():
        cosine = network(torch.stack([c.pixel_values for c in clips])).cosine.double().numpy()
    for expression, clip in zip(EXPRESSIONS, clips):
        video_quality(subject.videos[expression], clip.frames, face_report=clip.face_report)
    return float(model.predict_proba(expression_cosines(cosine, contract)))


def accuracy(args) -> None:
    from torchmetrics.functional.classification import multiclass_accuracy, multiclass_recall

    from dfer_pd.stage1.datasets.dfew import DfewDataModule
    from dfer_pd.stage2.extraction import extract_intensities
    from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule
    from dfer_pd.stage2.crossval import cross_validate

    work = Path(args.work or tempfile.mkdtemp(prefix="bench_inference_accuracy_"))
    checkpoint = work / "stage1.ckpt"
    if not checkpoint.exists():
        shutil.copyfile(args.checkpoint, checkpoint)  # the exports go beside this copy
    print(export_stage1(checkpoint, int8=True).summary())
    contract = ScoringContract.from_checkpoint(checkpoint)
    runtimes = ("torch", "onnx", "onnx-int8")
    scorers = {r: Stage1Scorer.from_checkpoint(checkpoint, contract.with_runtime(r)) for r in runtimes}

    records = DfewDataModule(args.dfew_root, fold=1, classes=4).split_records("test")
    labels = torch.tensor([r.label for r in records])
    pixels = torch.stack([prepare_clip(r.path, contract).pixel_values for r in records])
    cosine = {r: torch.from_numpy(scorers[r].runtime(pixels).cosine) for r in runtimes}
    print(f"\nsynthetic DFEW fold-1 test set, {len(records)} clips, {len(contract.class_names)} classes:")
    print("| runtime | WAR | UAR | max abs delta cosine vs torch | same predicted class as torch |")
    print("|---|---|---|---|---|")
    for r in runtimes:
        war = multiclass_accuracy(cosine[r], labels, len(contract.class_names), average="micro").item()
        uar = multiclass_recall(cosine[r], labels, len(contract.class_names), average="macro").item()
        delta = (cosine[r] - cosine["torch"]).abs().max().item()
        same = (cosine[r].argmax(1) == cosine["torch"].argmax(1)).float().mean().item()
        print(f"| {r} | {war:.4f} | {uar:.4f} | {delta:.2e} | {same:.4f} |")

    face = FaceCropSettings(crop_faces=args.crop_faces == "true")
    if args.stage2_config:
        import yaml

        from dfer_pd.configs import resolve_config

        face = FaceCropSettings(**yaml.safe_load(Path(resolve_config(args.stage2_config)).read_text())["face"])
    classifier = ClassifierConfig(name="lstm_processed_residual", features="processed",
                                  init_args={"hidden_size": 32, "max_epochs": 60, "patience": 15})
    cv = CVConfig(n_splits=5, repeats=1, seeds=[0])
    print(f"\nstage 2 on {args.cohort}: {classifier.name}, 5-fold subject-level CV, same folds and seeds per runtime")
    print("| runtime | scoring (s) | CV accuracy | max abs delta cosine vs torch |")
    print("|---|---|---|---|")
    data = {}
    for r in runtimes:
        started = time.perf_counter()
        data[r], _ = extract_intensities(PDCohortDataModule(args.cohort, batch_size=16),
                                         checkpoint, ScoringContract.from_checkpoint(checkpoint, face, runtime=r),
                                         work / "cache", accelerator="cpu")
        seconds = time.perf_counter() - started
        with running_on(CPU):
            summary = cross_validate(data[r], classifier, cv, plots=False, progress=False).summary()
        delta = np.abs(data[r].cosine - data["torch"].cosine).max()
        print(f"| {r} | {seconds:.1f} | {summary['cv/accuracy_mean']:.3f} ± {summary['cv/accuracy_std']:.3f} | {delta:.2e} |")

    model = fit_screening_model(data["torch"], classifier, cv)
    cohort = read_manifest(args.cohort)
    print("\ndiagnose with the screening model trained on the torch-scored cohort:")
    for label, group in ((1, "PD"), (0, "HC")):
        subject = next(s for s in cohort.subjects if s.label == label)
        results = {r: diagnose(subject.videos, checkpoint, model, runtime=r) for r in runtimes}
        print(f"  {group} {subject.subject_id}: " + "; ".join(
            f"{r} p(PD) {res.p_pd:.4f} {'POSITIVE' if res.positive else 'negative'}" if res.p_pd is not None
            else f"{r} INCONCLUSIVE ({'; '.join(res.reasons)})" for r, res in results.items()))


if __name__ == "__main__":
    print(machine_line(), flush=True)  # every figure names the machine it was measured on
    main()
