"""Benchmark (not a test): DFEW loader throughput vs decoding whole clips, and stage-1 training steps/s.

    .venv/bin/python benchmarks/bench_dfer_loader.py                     # tiny CLIP, CPU
    .venv/bin/python benchmarks/bench_dfer_loader.py --clip vit-b32-random --precision bf16 --steps 2   # ViT-B/32 sizes, CPU
    .venv/bin/python benchmarks/bench_dfer_loader.py --clip openai/clip-vit-base-patch32 --device cuda --precision bf16

Writes a synthetic DFEW tree with original mp4s (clip lengths like DFEW's: median about 70 frames)
under --data unless it is already there.
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import av
import numpy as np
import torch

from _common import VIT_B32, save_random_vit_b32

from dfer_pd.common.machine import machine_line
from dfer_pd.stage1.datasets.dfew import DfewDataModule, four_class_records
from dfer_pd.common.sampling import sample_frame_indices
from dfer_pd.synthetic.dfew import make_dfew_tree
from dfer_pd.common.video import count_frames, read_clip
from dfer_pd.stage1.module import DferClipModule


def decode_whole(path: Path, num_frames: int) -> np.ndarray:
    """The naive loader: decode every frame of the video, then pick the sampled ones."""
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    indices = sample_frame_indices(len(frames), num_frames, "eval")
    return np.stack([frames[i] for i in indices])


def clips_per_second(fn, paths: list[Path], repeats: int = 1) -> float:
    started = time.perf_counter()
    for _ in range(repeats):
        for path in paths:
            fn(path)
    return repeats * len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="runs/bench/dfew")
    parser.add_argument("--clips", type=int, default=80)
    parser.add_argument("--num_frames", type=int, default=16)
    parser.add_argument("--clip", default="builtin:tiny-clip")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--num_workers", type=int, default=2)
    parser.add_argument("--precision", default="32", choices=["32", "bf16", "16"])
    args = parser.parse_args()

    root = Path(args.data)
    if not (root / "synthetic_info.json").exists():
        make_dfew_tree(root, num_clips=args.clips, min_frames=11, max_frames=140, size=112, seed=0, write_mp4=True)
    records = four_class_records(root, "train", 1, "original")
    videos = [r.path for r in records]
    folders = [r.path for r in four_class_records(root, "train", 1, "clip_224x224")]
    frames = [count_frames(v) for v in videos]
    print(f"{len(videos)} clips, {np.median(frames):.0f} median frames, M = {args.num_frames}")

    sampled = clips_per_second(lambda p: read_clip(p, args.num_frames, "eval"), videos)
    whole = clips_per_second(lambda p: decode_whole(p, args.num_frames), videos)
    print(f"mp4, sampled decode (read_clip):   {sampled:8.1f} clips/s")
    print(f"mp4, decode whole clip then pick:  {whole:8.1f} clips/s   ({sampled / whole:.1f}x)")
    sampled_dir = clips_per_second(lambda p: read_clip(p, args.num_frames, "eval"), folders)
    print(f"frame folder, sampled JPEGs:       {sampled_dir:8.1f} clips/s")

    clip_for_data = "builtin:tiny-clip" if args.clip == VIT_B32 else args.clip  # same CLIP mean/std
    dm = DfewDataModule(str(root), frames="original", num_frames=args.num_frames, batch_size=args.batch_size,
                        num_workers=args.num_workers, clip_name_or_path=clip_for_data, val_fraction=0.1,
                        image_size=224 if args.clip == VIT_B32 else None)
    dm.setup("fit")
    loader = dm.train_dataloader()
    started, seen = time.perf_counter(), 0
    for batch in loader:
        seen += len(batch["label"])
    print(f"DFEW train loader (augmented, {args.num_workers} workers): {seen / (time.perf_counter() - started):8.1f} clips/s")

    device = torch.device(args.device)
    clip = str(save_random_vit_b32(Path(args.data).parent / VIT_B32)) if args.clip == VIT_B32 else args.clip
    module = DferClipModule(network=dict(clip_name_or_path=clip, random_init=clip.startswith("builtin:"),
                                         num_frames=args.num_frames)).to(device)
    optimizer = module.configure_optimizers()
    optimizer = optimizer["optimizer"] if isinstance(optimizer, dict) else optimizer
    batch = next(iter(loader))
    pixels, labels = batch["pixel_values"].to(device), batch["label"].to(device)
    dtype = {"bf16": torch.bfloat16, "16": torch.float16}.get(args.precision)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = torch.nn.functional.cross_entropy(module.net(pixels).logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    rate = args.steps / (time.perf_counter() - started)
    print(f"training steps/s ({args.clip}, batch {len(labels)}, {args.device}, {args.precision}): {rate:.2f}"
          f"  = {rate * len(labels):.1f} clips/s")
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
    else:
        print(f"peak process memory (RSS, CPU proxy): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB")


if __name__ == "__main__":
    print(machine_line(), flush=True)  # every figure names the machine it was measured on
    main()
