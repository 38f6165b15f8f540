"""Benchmark (not a test): the face path's time per subject, and landmark-kinematic effect sizes, on a synthetic phone cohort.

    .venv/bin/python benchmarks/bench_face_path.py [--subjects 40] [--effect_size 1.5] [--fps 10] [--seconds 5]

The cohort is `make_pd_cohort(recording="phone")`: portrait 180x240 videos, the face moving in the frame.
Per subject (four videos) it times the stage-1 face path (sampling 16 frames, dlib detection, tracking,
68 landmarks, aligned 224-pixel crops, quality measures) and the kinematics pass (landmarks at
`--kin_fps` frames per second), then reports Cohen's d (HC minus PD, pooled SD) of every kinematic
feature per expression video, and the ROC AUC of the PD label from each amplitude.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from dfer_pd.common.machine import machine_line
from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.faces.tracking import read_face_clip
from dfer_pd.stage2.cohort import read_manifest
from dfer_pd.stage2.kinematics import KINEMATIC_FEATURES, subject_kinematics, video_landmarks
from dfer_pd.stage2.settings import KinematicsSettings
from dfer_pd.synthetic.cohort import make_pd_cohort


def cohens_d(hc: np.ndarray, pd: np.ndarray) -> float:
    pooled = np.sqrt(((len(hc) - 1) * hc.var(ddof=1) + (len(pd) - 1) * pd.var(ddof=1)) / (len(hc) + len(pd) - 2))
    return float((hc.mean() - pd.mean()) / pooled) if pooled > 0 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--effect_size", type=float, default=1.5)
    parser.add_argument("--fps", type=float, default=10.0, help="frame rate of the synthetic videos")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--kin_fps", type=float, default=10.0, help="landmark frames per second for kinematics")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_face_path_"))
    started = time.perf_counter()
    manifest = make_pd_cohort(work, num_subjects=args.subjects, effect_size=args.effect_size, fps=args.fps,
                              seconds=args.seconds, seed=args.seed, recording="phone")
    print(f"cohort: {args.subjects} subjects, {args.seconds:.0f} s at {args.fps:.0f} fps, 180x240 phone frames, "
          f"effect size {args.effect_size} ({time.perf_counter() - started:.0f} s to render)")
    truth = {row["subject_id"]: row for row in csv.DictReader(open(work / "ground_truth.csv"))}
    face = FaceCropSettings(crop_faces=True)
    settings = KinematicsSettings(enabled=True, fps=args.kin_fps)
    crop_seconds, kin_seconds, features, labels, fractions = [], [], [], [], []
    for subject in read_manifest(manifest).subjects:
        started = time.perf_counter()
        for path in subject.videos.values():
            _, report = read_face_clip(path, num_frames=16, settings=face, size=224)
            fractions.append(report.face_fraction)
        crop_seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        tracks = {e: video_landmarks(p, settings, face) for e, p in subject.videos.items()}
        features.append(subject_kinematics({e: (t.times, t.points) for e, t in tracks.items()}))
        kin_seconds.append(time.perf_counter() - started)
        labels.append(subject.label)
        assert truth[subject.subject_id]["label"] == ("PD" if subject.label else "HC")
    features, labels = np.stack(features), np.array(labels)
    print(f"face found in {np.mean(fractions):.1%} of sampled frames (min per video {min(fractions):.0%})")
    print(f"face path per subject (4 videos): stage-1 crops {np.mean(crop_seconds):.2f} s "
          f"(16 frames, detection + landmarks + alignment), kinematics {np.mean(kin_seconds):.2f} s "
          f"({args.kin_fps:.0f} landmark frames/s); total {np.mean(crop_seconds) + np.mean(kin_seconds):.2f} s")
    print("\n| video | feature | HC mean | PD mean | Cohen's d (HC - PD) | ROC AUC (lower = PD) |")
    print("|---|---|---|---|---|---|")
    for j, expression in enumerate(EXPRESSIONS):
        if expression == "neutral":
            continue
        for k, name in enumerate(KINEMATIC_FEATURES):
            hc, pd = features[labels == 0, j, k], features[labels == 1, j, k]
            auc = roc_auc_score(labels, -features[:, j, k])
            print(f"| {expression} | {name} | {hc.mean():.3f} | {pd.mean():.3f} | {cohens_d(hc, pd):.2f} | {auc:.2f} |")


if __name__ == "__main__":
    print(machine_line(), flush=True)  # every figure names the machine it was measured on
    main()
