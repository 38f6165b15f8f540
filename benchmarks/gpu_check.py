"""Prepared GPU check (not a test): stage 1 at the real sizes on a GPU, its loader, DDP, extraction and diagnose.

    python benchmarks/gpu_check.py                      # a GPU machine, under 8 minutes; --out runs/gpu_check
    python benchmarks/gpu_check.py --smoke              # the CPU, tiny sizes, well under a minute (in `make test`)

What it measures (JSON and a Markdown table in --out, headed by the machine: CPU line, GPU model, driver,
torch, CUDA and cuDNN versions):

1. A DFEW-layout tree of 224x224 JPEG frames, clip lengths drawn like DFEW's (min 11, median about 70).
2. Stage 1 with ViT-B/32 sizes (`CLIPConfig()`, random weights, saved and loaded through from_pretrained),
   M = 16, batch 16, bf16 autocast: training steps/s, clips/s and peak GPU memory of the bare step on
   tensors already on the GPU, then the same inside Lightning's fit fed by the real loader (8 workers),
   with the share of the time the GPU waited for the loader.
3. The loader alone with 4, 8 and 16 workers (clips/s): does it keep up with the step?
4. The reference: the same network stepped as DFER-CLIP's public code does (batch 48, fp16 autocast with a
   GradScaler, SGD with its learning rates, a plain loop).
5. Lightning DDP on two GPUs when there are two (steps/s and the scaling of clips/s); one device otherwise.
6. Extraction of a synthetic cohort on the GPU (videos/s) and `dfer-pd diagnose` of one subject (s).
`--smoke` runs every part on the CPU with a tiny CLIP, tiny frames and a few steps (DDP as two CPU
processes), so the script cannot rot; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import torch

from dfer_pd.common.machine import machine_line

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _common, when run from elsewhere

DDP_MARK = "GPU_CHECK_DDP "


@dataclasses.dataclass(frozen=True)
class Sizes:
    clips: int = 320
    frame_size: int = 224
    max_frames: int = 130  # uniform 16..130 with a few shorter than 16: median about 70, as DFEW's
    batch: int = 16
    reference_batch: int = 48
    num_frames: int = 16
    steps: int = 30
    warmup: int = 5
    fit_workers: int = 8
    loader_workers: tuple[int, ...] = (4, 8, 16)
    loader_batches: int = 30
    subjects: int = 12
    video_seconds: float = 5.0
    video_size: int = 256
    fps: float = 30.0


SMOKE = Sizes(clips=30, frame_size=32, max_frames=20, batch=2, reference_batch=3, num_frames=4, steps=2, warmup=1,
              fit_workers=0, loader_workers=(0, 1), loader_batches=3, subjects=6, video_seconds=1.0, video_size=32, fps=5)


def gpu_line() -> dict:
    """GPU model, driver, torch, CUDA and cuDNN versions (what a CPU-only machine has: none)."""
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "gpus": torch.cuda.device_count(), "gpu": None, "driver": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        try:
            done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                  capture_output=True, text=True, timeout=30)
            info["driver"] = done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None
        except (OSError, subprocess.TimeoutExpired):
            pass
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float | None:
    return torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def network_settings(clip: str, sizes: Sizes, smoke: bool) -> dict:
    if smoke:  # the tests' tiny CLIP
        return dict(clip_name_or_path=clip, random_init=True, num_frames=sizes.num_frames, num_context=2, gate_heads=4,
                    temporal_heads=4, temporal_mlp_dim=64, attention="eager")
    return dict(clip_name_or_path=clip, random_init=False, num_frames=sizes.num_frames)  # the paper's network


def bare_steps(network: dict, sizes: Sizes, batch: int, device: torch.device, reference: bool) -> dict:
    """Training steps on random clips already on the device: ours (bf16 autocast, the paper's optimiser) or
    DFER-CLIP's (fp16 autocast + GradScaler on a GPU, SGD with its learning rates)."""
    import torch.nn.functional as F

    from dfer_pd.stage1.module import DferClipModule

    reset_peak(device)
    module = DferClipModule(network=network).to(device).train()
    groups = module.net.param_groups()
    if reference:
        lrs = {"image_encoder": 1e-5, "temporal": 1e-2, "prompt": 1e-3}
        optimizer = torch.optim.SGD([{"params": groups[k], "lr": lrs[k]} for k in lrs], momentum=0.9, weight_decay=1e-4)
        dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    else:
        optimizer = module.configure_optimizers()["optimizer"]
        dtype = torch.bfloat16
    scaler = torch.amp.GradScaler(device.type, enabled=reference and device.type == "cuda")
    size = module.net.config.image_size
    pixels = torch.randn(batch, sizes.num_frames, 3, size, size, device=device)
    labels = torch.randint(0, len(module.net.class_names), (batch,), device=device)
    times = []
    for step in range(sizes.warmup + sizes.steps):
        sync(device)
        started = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype):
            loss = F.cross_entropy(module.net(pixels).logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        sync(device)
        if step >= sizes.warmup:
            times.append(time.perf_counter() - started)
    seconds = sum(times)
    result = {"batch": batch, "precision": str(dtype).replace("torch.", "") + " autocast" + (" + GradScaler" if scaler.is_enabled() else ""),
              "steps_per_s": len(times) / seconds, "clips_per_s": batch * len(times) / seconds,
              "peak_gpu_memory_gib": peak_memory_gib(device)}
    del module, optimizer, pixels
    return result


def datamodule(root: Path, clip: str, sizes: Sizes, workers: int, batch: int | None = None):
    from dfer_pd.stage1.datasets.dfew import DfewDataModule

    dm = DfewDataModule(str(root), fold=1, classes=4, num_frames=sizes.num_frames, batch_size=batch or sizes.batch,
                        num_workers=workers, persistent_workers=False, clip_name_or_path=clip, val_fraction=0.2)
    dm.setup("fit")
    return dm


def loader_throughput(root: Path, clip: str, sizes: Sizes, workers: int) -> dict:
    """Clips per second the training loader gives with this many workers (after its first batch)."""
    loader = datamodule(root, clip, sizes, workers).train_dataloader()
    started = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter() - started
    started, clips = time.perf_counter(), 0
    for _, batch in zip(range(sizes.loader_batches), iterator):
        clips += len(batch["label"])
    seconds = time.perf_counter() - started
    del iterator
    return {"workers": workers, "clips_per_s": clips / seconds if clips else None, "first_batch_s": first}


class StepTimer:
    """Lightning callback: step times and the gaps between steps (the loader's turn), after the warm-up."""

    def __init__(self, warmup: int) -> None:
        import lightning as L

        class _Timer(L.Callback):
            def on_train_batch_start(inner, trainer, module, batch, batch_idx):
                sync(module.device)
                now = time.perf_counter()
                if self.last_end is not None and trainer.global_step >= warmup:
                    self.waits.append(now - self.last_end)
                self.start = now

            def on_train_batch_end(inner, trainer, module, outputs, batch, batch_idx):
                sync(module.device)
                self.last_end = time.perf_counter()
                if trainer.global_step > warmup:
                    self.steps.append(self.last_end - self.start)

        self.callback = _Timer()
        self.start = 0.0
        self.last_end: float | None = None
        self.steps: list[float] = []
        self.waits: list[float] = []

    def summary(self, batch: int, devices: int) -> dict:
        busy, waited = sum(self.steps), sum(self.waits[: len(self.steps)])
        total = busy + waited
        return {"batch_per_device": batch, "devices": devices, "steps_per_s": len(self.steps) / total,
                "clips_per_s": batch * devices * len(self.steps) / total, "loader_wait_share": waited / total}


def lightning_fit(root: Path, clip: str, network: dict, sizes: Sizes, accelerator: str, devices: int) -> dict:
    """Lightning's fit with the real loader, bf16-mixed; DDP when devices > 1."""
    import lightning as L

    from dfer_pd.stage1.module import DferClipModule

    timer = StepTimer(sizes.warmup)
    trainer = L.Trainer(accelerator=accelerator, devices=devices, strategy="ddp" if devices > 1 else "auto",
                        precision="bf16-mixed", max_steps=sizes.warmup + sizes.steps + 1, limit_val_batches=0,
                        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[timer.callback], num_sanity_val_steps=0)
    if accelerator == "gpu":
        torch.cuda.reset_peak_memory_stats()
    trainer.fit(DferClipModule(network=network), datamodule=datamodule(root, clip, sizes, sizes.fit_workers))
    result = timer.summary(sizes.batch, devices)
    result["fit_workers"] = sizes.fit_workers
    result["peak_gpu_memory_gib"] = torch.cuda.max_memory_allocated() / 2**30 if accelerator == "gpu" else None
    result["rank"] = trainer.global_rank
    return result


def run_ddp(args, root: Path, clip: str, sizes: Sizes, accelerator: str) -> dict:
    """Two-device DDP in its own process tree (Lightning's launcher re-runs this script with --ddp_worker)."""
    command = [sys.executable, os.path.abspath(__file__), "--ddp_worker", "--out", str(args.out), "--work", str(root.parent)]
    command += ["--smoke"] if args.smoke else []
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if accelerator == "cpu" else dict(os.environ)
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith(DDP_MARK)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"DDP run failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return json.loads(lines[-1][len(DDP_MARK):])


def extraction_and_diagnose(work: Path, network: dict, sizes: Sizes, device: torch.device) -> dict:
    """Score a synthetic cohort with a stage-1 checkpoint on the device (videos/s), then diagnose one subject."""
    import lightning

    from dfer_pd.commands.diagnose import main as diagnose
    from dfer_pd.stage1.contract import ScoringContract
    from dfer_pd.stage1.module import DferClipModule
    from dfer_pd.stage2.cohort import read_manifest
    from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule
    from dfer_pd.stage2.extraction import extract_intensities
    from dfer_pd.stage2.screening_model import fit_screening_model
    from dfer_pd.stage2.runtime import running_on
    from dfer_pd.stage2.settings import CPU, CVConfig, ClassifierConfig
    from dfer_pd.synthetic.cohort import make_pd_cohort

    module = DferClipModule(network=network)
    checkpoint = work / "stage1.ckpt"
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": lightning.__version__}, checkpoint)
    del module
    manifest = make_pd_cohort(work / "cohort", num_subjects=sizes.subjects, seconds=sizes.video_seconds,
                              size=sizes.video_size, fps=sizes.fps, seed=0, workers=0)
    precision = "bf16-mixed" if device.type == "cuda" else "32-true"
    contract = ScoringContract.from_checkpoint(checkpoint, precision=precision)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    cohort = PDCohortDataModule(str(manifest), batch_size=8, num_workers=min(8, os.cpu_count() or 1) if device.type == "cuda" else 0)
    videos = len(cohort.cohort.subjects) * 4
    started = time.perf_counter()
    data, _ = extract_intensities(cohort, checkpoint, contract, work / "cache", accelerator=accelerator)
    extraction_s = time.perf_counter() - started
    with running_on(CPU):  # the recurrent networks are small: the CPU trains them
        model = fit_screening_model(data, ClassifierConfig(init_args={"hidden_size": 8, "max_epochs": 5}), CVConfig())
    folder = model.save(work / "screening")
    subject = read_manifest(manifest).subjects[0]
    cli = ["--stage1", str(checkpoint), "--screening_model", str(folder), "--out", str(work / "diagnose"),
           "--device", "cuda" if device.type == "cuda" else "cpu",
           *[a for expression, path in subject.videos.items() for a in (f"--{expression}", str(path))]]
    started = time.perf_counter()
    diagnose(cli)
    return {"videos": videos, "video": f"{sizes.video_seconds:g} s, {sizes.video_size}px, {sizes.fps:g} fps",
            "precision": precision, "extraction_s": extraction_s, "videos_per_s": videos / extraction_s,
            "diagnose_one_subject_s": time.perf_counter() - started}


def markdown(report: dict) -> str:
    def num(value, digits=2):
        return "n/a" if value is None else f"{value:.{digits}f}"

    gpu = report["gpu"]
    lines = ["# GPU check" + (" (--smoke: CPU, tiny sizes; the figures mean nothing)" if report["smoke"] else ""), "",
             f"`{report['machine']}`", "",
             f"GPU: {gpu['gpu'] or 'none'} (x{gpu['gpus']}), driver {gpu['driver'] or 'n/a'}; torch {gpu['torch']}, "
             f"CUDA {gpu['cuda'] or 'n/a'}, cuDNN {gpu['cudnn'] or 'n/a'}", "",
             f"Command: `{report['command']}`; data: {report['data']['clips']} clips, {report['data']['frame_size']}px JPEG "
             f"frames, median {report['data']['median_frames']:g} frames a clip; M = {report['sizes']['num_frames']}.", "",
             "| what | batch | steps/s | clips/s | peak GPU memory (GiB) | notes |", "|---|---|---|---|---|---|"]
    for name, key in (("stage 1 step, on-device tensors", "step"), ("DFER-CLIP reference step", "reference")):
        r = report[key]
        lines.append(f"| {name} | {r['batch']} | {num(r['steps_per_s'])} | {num(r['clips_per_s'], 1)} | "
                     f"{num(r['peak_gpu_memory_gib'])} | {r['precision']} |")
    for name, key in (("Lightning fit, real loader", "fit"), ("Lightning DDP", "ddp")):
        r = report.get(key)
        if not isinstance(r, dict) or "steps_per_s" not in r:
            lines.append(f"| {name} | | | | | {r if isinstance(r, str) else 'not run'} |")
            continue
        note = f"{r['devices']} device(s), {r['fit_workers']} workers, GPU waits on the loader {100 * r['loader_wait_share']:.0f}% of the time"
        if key == "ddp":
            note += f"; clips/s {num(r.get('scaling'))}x one device's"
        lines.append(f"| {name} | {r['batch_per_device']} per device | {num(r['steps_per_s'])} | {num(r['clips_per_s'], 1)} | "
                     f"{num(r['peak_gpu_memory_gib'])} | bf16-mixed; {note} |")
    for r in report["loader"]:
        lines.append(f"| loader alone | {report['sizes']['batch']} | | {num(r['clips_per_s'], 1)} | | {r['workers']} workers, "
                     f"first batch {num(r['first_batch_s'], 1)} s |")
    e = report["extraction"]
    lines += [f"| extraction, synthetic cohort | 8 | | {num(e['videos_per_s'], 2)} videos/s | | {e['videos']} videos "
              f"({e['video']}), {e['precision']}, {num(e['extraction_s'], 1)} s |",
              f"| diagnose, one subject | | | | | {num(e['diagnose_one_subject_s'], 1)} s wall (4 videos) |", "",
              f"The GPU waits on the loader: **{report['gpu_waits_on_loader']}**.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="the CPU, tiny sizes: checks the script, measures nothing")
    parser.add_argument("--out", type=Path, default=Path("runs/gpu_check"))
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: <out>/work, removed after)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--ddp_worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = SMOKE if args.smoke else Sizes()
    work = args.work or args.out / "work"
    root, clip = work / "dfew", (str(work / "clip-vit-b32") if not args.smoke else "builtin:tiny-clip")
    network = network_settings(clip, sizes, args.smoke)
    gpu = torch.cuda.is_available() and not args.smoke
    if args.ddp_worker:  # one rank of the DDP part (started by run_ddp, re-started per rank by Lightning)
        result = lightning_fit(root, clip, network, sizes, "gpu" if gpu else "cpu", 2)
        if result.pop("rank") == 0:
            print(DDP_MARK + json.dumps(result), flush=True)
        return
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("no CUDA GPU here: run with --smoke to check the script on the CPU")
    from _common import save_random_vit_b32

    from dfer_pd.common.video import count_frames
    from dfer_pd.stage1.datasets.dfew import four_class_records
    from dfer_pd.synthetic.dfew import make_dfew_tree

    machine = machine_line()
    started = time.perf_counter()
    device = torch.device("cuda" if gpu else "cpu")
    report = {"smoke": args.smoke, "machine": machine, "gpu": gpu_line(), "sizes": dataclasses.asdict(sizes),
              "command": " ".join(["python", "benchmarks/gpu_check.py", *sys.argv[1:]])}
    shutil.rmtree(work, ignore_errors=True)
    make_dfew_tree(root, num_clips=sizes.clips, min_frames=11, max_frames=sizes.max_frames, size=sizes.frame_size,
                   seed=0, workers=0)
    if not args.smoke:
        save_random_vit_b32(clip)
    frames = sorted(count_frames(r.path) for r in four_class_records(root, "train", 1, "clip_224x224"))
    report["data"] = {"clips": sizes.clips, "frame_size": sizes.frame_size, "median_frames": float(frames[len(frames) // 2]),
                      "min_frames": frames[0], "seconds_to_write": time.perf_counter() - started}
    report["step"] = bare_steps(network, sizes, sizes.batch, device, reference=False)
    report["reference"] = bare_steps(network, sizes, sizes.reference_batch, device, reference=True)
    report["loader"] = [loader_throughput(root, clip, sizes, w) for w in sizes.loader_workers if w <= (os.cpu_count() or 1)]
    report["fit"] = lightning_fit(root, clip, network, sizes, "gpu" if gpu else "cpu", 1)
    report["fit"].pop("rank")
    if (gpu and torch.cuda.device_count() >= 2) or args.smoke:
        report["ddp"] = run_ddp(args, root, clip, sizes, "gpu" if gpu else "cpu")
        report["ddp"]["scaling"] = report["ddp"]["clips_per_s"] / report["fit"]["clips_per_s"]
    else:
        report["ddp"] = f"not run: {torch.cuda.device_count()} GPU"
    fed = [r["clips_per_s"] for r in report["loader"] if r["workers"] == sizes.fit_workers and r["clips_per_s"]]
    report["gpu_waits_on_loader"] = (
        f"{'yes' if report['fit']['loader_wait_share'] > 0.1 else 'no'} (waits {100 * report['fit']['loader_wait_share']:.0f}% "
        f"of the fit's time; the loader alone gives {fed[0]:.1f} clips/s against the bare step's "
        f"{report['step']['clips_per_s']:.1f})" if fed else
        f"{'yes' if report['fit']['loader_wait_share'] > 0.1 else 'no'} (waits {100 * report['fit']['loader_wait_share']:.0f}% of the fit's time)")
    report["extraction"] = extraction_and_diagnose(work, network, sizes, device)
    report["total_s"] = time.perf_counter() - started
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "gpu_check.md").write_text(markdown(report))
    print(markdown(report))
    print(f"written: {args.out / 'gpu_check.json'}, {args.out / 'gpu_check.md'} ({report['total_s']:.0f} s)")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(machine_line(), flush=True)  # every figure names the machine it was measured on
    main()
