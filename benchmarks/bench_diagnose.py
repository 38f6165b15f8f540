"""Benchmark (not a test): wall time of `dfer-pd diagnose` on four videos with ViT-B/32-sized weights, on the CPU.

    .venv/bin/python benchmarks/bench_diagnose.py [--crop_faces true] [--seconds 5]

No hub access here, so the CLIP is `CLIPConfig()` (the openai/clip-vit-base-patch32 sizes: ViT-B/32 at
224 px, 512-d text) with random weights, saved and loaded back through `from_pretrained`; speed does not
depend on the values of the weights. The four videos are synthetic faces (one per expression).
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

import lightning
import torch
from _common import save_random_vit_b32

from dfer_pd.common.machine import machine_line
from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.stage1.contract import ScoringContract
from dfer_pd.stage2.settings import ClassifierConfig
from dfer_pd.stage2.runtime import running_on
from dfer_pd.stage2.settings import CPU, CVConfig
from dfer_pd.stage2.cohort import read_manifest
from dfer_pd.synthetic.cohort import make_pd_cohort
from dfer_pd.commands.diagnose import main as diagnose
from dfer_pd.synthetic.intensities import synthetic_cohort
from dfer_pd.stage1.module import DferClipModule
from dfer_pd.stage2.screening_model import fit_screening_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crop_faces", default="false", choices=["true", "false"])
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each video")
    parser.add_argument("--size", type=int, default=256, help="video frame side in pixels")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_diagnose_"))
    try:
        clip_dir = save_random_vit_b32(work / "clip-vit-b32-random")
        module = DferClipModule(network=dict(clip_name_or_path=str(clip_dir), random_init=False))
        ckpt = work / "stage1.ckpt"
        torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                    "pytorch-lightning_version": lightning.__version__}, ckpt)
        classifier = ClassifierConfig(features="processed", init_args={"max_epochs": 20})
        # Synthetic intensities, declared as scored under this checkpoint's contract (speed does not depend on them).
        contract = ScoringContract.from_checkpoint(ckpt, FaceCropSettings(crop_faces=args.crop_faces == "true"))
        data = dataclasses.replace(synthetic_cohort(seed=0), contract=contract, tau=None)
        with running_on(CPU):
            model = fit_screening_model(data, classifier, CVConfig())
        model.save(work / "screening")
        manifest = make_pd_cohort(work / "cohort", num_subjects=2, seconds=args.seconds, size=args.size, fps=30)
        subject = read_manifest(manifest).subjects[0]
        cli = ["--stage1", str(ckpt), "--screening_model", str(work / "screening"),
               "--out", str(work / "report"), *[a for e, p in subject.videos.items() for a in (f"--{e}", str(p))]]
        started = time.perf_counter()
        diagnose(cli)
        total = time.perf_counter() - started
        print(f"\ndiagnose, 4 videos of {args.seconds:.0f} s at {args.size}px/30 fps, ViT-B/32-sized CLIP, "
              f"crop_faces={args.crop_faces}, {torch.get_num_threads()} threads: {total:.1f} s wall "
              "(loading both models, decoding, stage 1, stage 2, report)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(machine_line(), flush=True)  # every figure names the machine it was measured on
    main()
