"""A synthetic PD cohort: one expression-task mp4 per subject and expression, a manifest and hidden ground truth.

:func:`make_pd_cohort` writes ``<subject>/<expression>.mp4`` per subject, ``manifest.csv`` and
``ground_truth.csv``: PD subjects have hypomimia (lower amplitude, slower onset) of a chosen effect size, graded
by each subject's MDS-UPDRS item 3.2 score (in the manifest's ``updrs_3_2`` column, so the truth is known).
Videos are face crops (``recording="face"``, like DFEW's) or phone-like recordings
(``recording="phone"``): a portrait frame with background in which the face drifts, grows and
tilts as in a hand-held selfie video, so that cohorts exercise face detection, tracking and alignment.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from dfer_pd.common.errors import UsageError
from dfer_pd.common.constants import COHORT_LABELS, EXPRESSIONS
from dfer_pd.common.parallel import resolve_workers
from dfer_pd.synthetic.encode import encode_mp4
from dfer_pd.synthetic.render import (
    expression_profile, render_face, sample_head_motion, sample_identity, sample_phone_motion,
    slow_drift,
)
from dfer_pd.synthetic.writers import write_recordings

# Hypomimia model: PD amplitude = HC amplitude * (1 - AMPLITUDE_LOSS * effect * severity) and
# onset time = HC onset * (1 + ONSET_SLOWING * effect * severity).
AMPLITUDE_LOSS = 0.6
ONSET_SLOWING = 1.5
# A healthy subject is scored 1 on MDS-UPDRS 3.2 ("slight") with this probability, else 0; its face is unaffected.
HC_SLIGHT_FRACTION = 0.2
RECORDINGS: tuple[str, ...] = ("face", "phone")
# Phone-like recordings: portrait frames, the face about 0.85 of the renderer's full-frame face, so
# that dlib's detector (faces of 80 pixels and more) sees it without enlarging the frame.
PHONE_FRAME = (180, 240)
PHONE_FACE_SCALE = 0.85


def sample_subject_latents(
    rng: np.random.Generator, is_pd: np.ndarray, effect_size: float = 1.0
) -> dict[str, np.ndarray]:
    """Per-subject facial latents: expressivity (apex amplitude), onset seconds, PD severity and MDS-UPDRS 3.2.

    Every subject draws its healthy expressivity (about 0.9), healthy onset (about 0.5 s) and a position
    ``u`` uniform in [0, 4) from the same distributions whatever its label. A PD subject's MDS-UPDRS item 3.2
    score is ``1 + floor(u)`` (1 slight to 4 severe, equally likely) and its severity ``0.5 + u / 8`` in
    [0.5, 1), rising with the score; PD subjects then lose amplitude and slow down in proportion to
    ``effect_size * severity``. With ``effect_size=0`` the two groups are therefore identically distributed.
    HC severity is reported as 0 and ``updrs_3_2`` as 0 (scores of 1 are drawn by :func:`healthy_scores`).
    """
    if effect_size < 0:
        raise UsageError(f"effect_size must be >= 0, got {effect_size}")
    is_pd = np.asarray(is_pd, dtype=bool)
    n = len(is_pd)
    healthy_expressivity = np.clip(rng.normal(0.9, 0.07, size=n), 0.65, 1.0)
    healthy_onset = np.clip(rng.normal(0.5, 0.1, size=n), 0.25, 0.8)
    position = rng.uniform(0.0, 4.0, size=n)
    updrs_3_2 = np.where(is_pd, 1 + np.minimum(np.floor(position), 3), 0).astype(np.int64)
    severity = (0.5 + position / 8) * is_pd
    expressivity = np.clip(healthy_expressivity * (1 - AMPLITUDE_LOSS * effect_size * severity), 0.0, 1.0)
    onset = healthy_onset * (1 + ONSET_SLOWING * effect_size * severity)
    return {"expressivity": expressivity, "onset_seconds": onset, "severity": severity, "updrs_3_2": updrs_3_2}


def healthy_scores(rng: np.random.Generator, is_pd: np.ndarray, updrs_3_2: np.ndarray) -> np.ndarray:
    """``updrs_3_2`` with each HC subject scored 1 (slight) with probability :data:`HC_SLIGHT_FRACTION`, else 0."""
    slight = rng.random(len(is_pd)) < HC_SLIGHT_FRACTION
    return np.where(np.asarray(is_pd, dtype=bool), updrs_3_2, slight.astype(np.int64))


def _cohort_video_weights(
    expression: str,
    expressivity: float,
    onset_seconds: float,
    fps: float,
    num_frames: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per-frame EXPRESSIONS weights of one task video: rest, onset, hold and release of ``expression``."""
    times = np.arange(num_frames) / fps
    duration = num_frames / fps
    weights = np.zeros((num_frames, len(EXPRESSIONS)))
    # Small relaxed drift of every expression; the asked one is added on top.
    weights[:, 1:] = slow_drift(rng, times, 0.06, len(EXPRESSIONS) - 1, max_rate=0.4)
    if expression != "neutral":
        amplitude = np.clip(expressivity * rng.uniform(0.9, 1.1), 0.0, 1.0)
        onset = onset_seconds * rng.uniform(0.85, 1.15)
        start = rng.uniform(0.05, 0.15) * duration
        release_start = max(start + onset, duration - rng.uniform(0.15, 0.25) * duration)
        profile = expression_profile(times, start, onset, release_start, 0.8 * onset)
        weights[:, EXPRESSIONS.index(expression)] += amplitude * profile
    return weights


def _write_subject(
    task: tuple[str, np.random.SeedSequence, float, float],
    root: Path,
    expressions: Sequence[str],
    fps: float,
    num_frames: int,
    recording: str,
    frame_size: tuple[int, int],
    size: int,
) -> None:
    """Render and write one subject's videos from its own seed (in a worker process or not)."""
    subject, subject_seed, expressivity, onset_seconds = task
    rng = np.random.default_rng(subject_seed)
    identity = sample_identity(rng)
    for expression in expressions:
        weights = _cohort_video_weights(expression, expressivity, onset_seconds, fps, num_frames, rng)
        if recording == "phone":
            poses = sample_phone_motion(rng, num_frames, PHONE_FACE_SCALE, frame_size[1] / frame_size[0])
            canvas: int | tuple[int, int] = frame_size
        else:
            poses, canvas = sample_head_motion(rng, num_frames, amplitude=0.6), size
        frames = np.stack([render_face(identity, w, canvas, rng, pose) for w, pose in zip(weights, poses)])
        encode_mp4(root / subject / f"{expression}.mp4", frames, fps)


def make_pd_cohort(
    root: str | Path,
    num_subjects: int = 40,
    pd_fraction: float = 0.5,
    effect_size: float = 1.0,
    fps: float = 10,
    seconds: float = 4.0,
    size: int = 64,
    seed: int = 0,
    expressions: Sequence[str] = EXPRESSIONS,
    recording: str = "face",
    frame_size: tuple[int, int] = PHONE_FRAME,
    workers: int | None = 1,
) -> Path:
    """Write a synthetic PD/HC cohort of expression-task videos and return the manifest path.

    Args:
        root: output folder (created; existing synthetic files are overwritten).
        num_subjects: number of subjects ``S001``, ``S002``, ...
        pd_fraction: share of PD subjects; ``round(num_subjects * pd_fraction)`` of them, moved to
            keep both labels present when 0 < pd_fraction < 1.
        effect_size: hypomimia strength. PD apex amplitude = healthy amplitude * (1 - 0.6 * effect *
            severity) and onset time = healthy onset * (1 + 1.5 * effect * severity), severity per
            subject in [0.5, 1]. 0 makes PD and HC faces identically distributed.
        fps: frame rate of the videos.
        seconds: length of each video.
        size: frame side in pixels of face-crop recordings (even, for H.264 yuv420p).
        seed: random seed; the same seed and arguments give byte-identical files.
        expressions: the asked expressions, one video each (names from EXPRESSIONS).
        recording: ``"face"`` (square face crops of ``size``) or ``"phone"`` (the face moving in a
            ``frame_size`` = (width, height) frame with background).
        frame_size: width and height of phone-like recordings (even).
        workers: processes rendering subjects; 0 or None = all CPUs, 1 = this process. The files
            are the same for any number.

    Layout: ``<subject>/<expression>.mp4``; ``manifest.csv`` with columns
    ``subject_id,label,expression,path,sex,age,updrs_3_2`` (label PD/HC, path relative to the manifest's
    folder; MDS-UPDRS 3.2 from :func:`sample_subject_latents`, HC subjects 0 or 1); ``ground_truth.csv`` with
    ``subject_id,label,expressivity,onset_seconds,severity,updrs_3_2``;
    ``synthetic_info.json`` with the arguments.
    """
    if num_subjects < 1:
        raise UsageError(f"num_subjects must be at least 1, got {num_subjects}")
    if not 0.0 <= pd_fraction <= 1.0:
        raise UsageError(f"pd_fraction must lie in [0, 1], got {pd_fraction}")
    if size % 2 or size < 8:
        raise UsageError(f"size must be even (H.264 yuv420p) and at least 8, got {size}")
    if recording not in RECORDINGS:
        raise UsageError(f"recording must be one of {RECORDINGS}, got {recording!r}")
    frame_size = (int(frame_size[0]), int(frame_size[1]))
    if recording == "phone" and (min(frame_size) < 64 or frame_size[0] % 2 or frame_size[1] % 2):
        raise UsageError(f"frame_size must be even and at least 64 pixels, got {frame_size}")
    unknown = [e for e in expressions if e not in EXPRESSIONS]
    if unknown or not expressions:
        raise UsageError(f"expressions must be a non-empty subset of {EXPRESSIONS}, got {tuple(expressions)}")
    num_frames = int(round(fps * seconds))
    if num_frames < 2:
        raise UsageError(f"fps * seconds must give at least 2 frames, got fps={fps}, seconds={seconds}")
    resolve_workers(workers)  # a bad value fails before anything is written
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)

    num_pd = int(round(num_subjects * pd_fraction))
    if 0.0 < pd_fraction < 1.0 and num_subjects >= 2:
        num_pd = min(max(num_pd, 1), num_subjects - 1)
    plan_seed, *subject_seeds = np.random.SeedSequence(seed).spawn(num_subjects + 1)
    plan_rng = np.random.default_rng(plan_seed)
    is_pd = plan_rng.permutation(np.arange(num_subjects) < num_pd)
    latents = sample_subject_latents(plan_rng, is_pd, effect_size)
    sexes = plan_rng.choice(["M", "F"], size=num_subjects)
    ages = np.clip(np.rint(plan_rng.normal(66, 8, size=num_subjects)), 45, 90).astype(int)
    scores = healthy_scores(plan_rng, is_pd, latents["updrs_3_2"])  # drawn last: the videos stay as before
    subject_ids = [f"S{i + 1:03d}" for i in range(num_subjects)]

    tasks = [(subject, subject_seed, latents["expressivity"][i], latents["onset_seconds"][i])
             for i, (subject, subject_seed) in enumerate(zip(subject_ids, subject_seeds))]
    write = partial(_write_subject, root=root, expressions=tuple(expressions), fps=fps, num_frames=num_frames,
                    recording=recording, frame_size=frame_size, size=size)
    write_recordings(write, tasks, subject_ids, workers, "synthetic cohort subjects", "subject")

    manifest_rows, truth_rows = [], []
    for i, subject in enumerate(subject_ids):
        label = COHORT_LABELS[int(is_pd[i])]
        manifest_rows += [[subject, label, expression, f"{subject}/{expression}.mp4", sexes[i], int(ages[i]),
                           int(scores[i])] for expression in expressions]
        truth_rows.append([
            subject, label, f"{latents['expressivity'][i]:.6f}", f"{latents['onset_seconds'][i]:.6f}",
            f"{latents['severity'][i]:.6f}", int(scores[i]),
        ])

    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject_id", "label", "expression", "path", "sex", "age", "updrs_3_2"])
        writer.writerows(manifest_rows)
    with open(root / "ground_truth.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject_id", "label", "expressivity", "onset_seconds", "severity", "updrs_3_2"])
        writer.writerows(truth_rows)
    info = {
        "generator": "dfer_pd.synthetic.cohort.make_pd_cohort",
        "seed": seed, "num_subjects": num_subjects, "pd_fraction": pd_fraction, "effect_size": effect_size,
        "fps": fps, "seconds": seconds, "size": size, "expressions": list(expressions),
        "recording": recording, "frame_size": list(frame_size) if recording == "phone" else [size, size],
        "num_pd": int(is_pd.sum()), "num_hc": int((~is_pd).sum()), "frames_per_video": num_frames,
        "amplitude_loss": AMPLITUDE_LOSS, "onset_slowing": ONSET_SLOWING, "hc_slight_fraction": HC_SLIGHT_FRACTION,
    }
    (root / "synthetic_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return manifest
