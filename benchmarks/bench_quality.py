"""Benchmark (not a test): where the blur and still-image thresholds of dfer_pd.faces.measures come from.

    .venv/bin/python benchmarks/bench_quality.py

Blur: the variance of the Laplacian of the face region (found by dlib, measured at source resolution,
reduced to at most 256 px) of real faces shipped by installed packages (scikit-image's astronaut,
matplotlib's Grace Hopper, also at half and three times their size) and of synthetic faces, sharp and
blurred with Gaussians of sigma 1-3 px. Motion: the largest mean absolute luma change between sampled
frames of an mp4 of one repeated photo, of that photo with sensor noise, and of a moving face.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import matplotlib.cbook
import numpy as np
from PIL import Image
from skimage import data

from dfer_pd.common.machine import machine_line
from dfer_pd.common.video import read_clip
from dfer_pd.faces.tracking import DlibHogFaceDetector
from dfer_pd.faces.measures import BLURRY_LAPLACIAN_VARIANCE, STILL_IMAGE_MOTION, blur_score, frame_motion
from dfer_pd.synthetic.encode import encode_mp4
from dfer_pd.synthetic.render import HeadPose, render_face, sample_identity


def main() -> None:
    hopper = np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    images = {
        "astronaut": data.astronaut(),
        "Grace Hopper": hopper,
        "Grace Hopper, half size": cv2.resize(hopper, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
        "astronaut enlarged 3x (soft)": cv2.resize(data.astronaut(), None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC),
    }
    rng = np.random.default_rng(0)
    for seed in range(3):
        images[f"synthetic face {seed}"] = render_face(sample_identity(np.random.default_rng(seed)), [0, 0.5, 0, 0],
                                                       256, rng, HeadPose(scale=0.55))
    detector = DlibHogFaceDetector()
    print(f"blur threshold {BLURRY_LAPLACIAN_VARIANCE} (variance of the Laplacian of the face region)\n")
    print("| image | face width (px) | sharp | sigma 1 px | sigma 2 px | sigma 3 px |")
    print("|---|---|---|---|---|---|")
    for name, image in images.items():
        box = detector.detect(image)[:1, :4]
        scores = [blur_score(image[None], box)]
        scores += [blur_score(cv2.GaussianBlur(image, (0, 0), sigma)[None], box) for sigma in (1.0, 2.0, 3.0)]
        print(f"| {name} | {box[0, 2] - box[0, 0]:.0f} | " + " | ".join(f"{s:.1f}" for s in scores) + " |")

    print(f"\nstill-image threshold {STILL_IMAGE_MOTION} (largest mean absolute luma change between sampled frames)\n")
    photo = data.astronaut()[:256, :256]
    work = Path(tempfile.mkdtemp(prefix="bench_quality_"))
    clips = {
        "one photo repeated": np.stack([photo] * 30),
        "the photo with sensor noise (std 1)": np.stack(
            [np.clip(photo + rng.normal(0, 1.0, photo.shape), 0, 255).astype(np.uint8) for _ in range(30)]),
        "the photo moving 1 px every 10 frames": np.stack([np.roll(photo, i // 10, axis=1) for i in range(30)]),
    }
    for name, frames in clips.items():
        path = encode_mp4(work / "clip.mp4", frames, fps=10)
        print(f"| {name} | {frame_motion(read_clip(path, 8)[0]):.3f} |")


if __name__ == "__main__":
    print(machine_line(), flush=True)  # every figure names the machine it was measured on
    main()
