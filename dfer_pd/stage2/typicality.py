"""Is a person's scoring like the training cohort's? A label-blind out-of-distribution check for the verdict.

A verdict is only given for recordings that resemble what the models were trained on. Each of a person's
four videos is compared with the same expression's videos of the training cohort in stage 1's video
feature space (L2-normalised, as in deep nearest-neighbour OOD detection, Sun et al. 2022): its distance
to the k nearest cohort videos, over the cohort's median such distance. Neighbours come from either
group, so the check never needs (or leaks) the label, and weak expression, the disease's signal, is near
the PD group's videos rather than a reason to refuse. A person's score is the largest of the four.

The refusal threshold is set split-conformal style on cross-fitted scores: each cohort subject is scored
against the other subjects only (leave one subject out), and the threshold is the smallest value that at
most ``target_share`` of each group's subjects exceed (each group's conformal quantile, the larger of the
two; a group too small for that share gets its largest score). Cohorts without stage-1 video features
(hand-made intensity files) use the 16 cosines instead.

The check keeps the cohort's normalised video features (not images, not identities) in the screening
model folder; that folder stays on the machine like the cohort itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import softmax

from dfer_pd.common.constants import COHORT_LABELS, EXPRESSIONS
from dfer_pd.stage2.statistics import wilson_interval

TARGET_SHARE = 0.01
"""Share of each group's subjects (scored against the others) the threshold may refuse."""
NEIGHBOURS = 3
"""k of the k-nearest-neighbour distance."""
SWAPPED_FILE_PROBABILITY = 0.9
"""A video whose asked expression loses to another, non-neutral one with this probability (and whose winner
its own video does not show) is refused as probably another expression's file. Hypomimia makes the asked
expression weak (neutral wins): never refused."""


def expression_probabilities(cosine: np.ndarray, tau: float) -> np.ndarray:
    """Stage 1's probabilities of the four expressions in each video: softmax of cos / tau over the last axis
    of (..., 4, 4) cosines [asked video, expression]."""
    return softmax(np.asarray(cosine, dtype=np.float64) / tau, axis=-1)


def swapped_files(cosine: np.ndarray, tau: float) -> np.ndarray:
    """(..., 4) whether each video is probably another expression's file, given under the wrong name: it shows
    another, non-neutral expression with at least :data:`SWAPPED_FILE_PROBABILITY`, and the video given for
    that expression does not show it. A stage 1 that reads every video as one expression refuses nothing."""
    probabilities = expression_probabilities(cosine, tau)
    winner = probabilities.argmax(axis=-1)
    asked = np.arange(len(EXPRESSIONS))
    confident = probabilities.max(axis=-1) >= SWAPPED_FILE_PROBABILITY
    shown_by_its_own_video = np.take_along_axis(winner, winner, axis=-1) == winner
    return (winner != asked) & (winner != EXPRESSIONS.index("neutral")) & confident & ~shown_by_its_own_video


def normalised(features: np.ndarray) -> np.ndarray:
    """(N, 4, D) per-video features scaled to unit length (float64)."""
    features = np.asarray(features, dtype=np.float64)
    return features / np.maximum(np.linalg.norm(features, axis=-1, keepdims=True), 1e-12)


def knn_distances(reference: np.ndarray, queries: np.ndarray, k: int, leave_one_out: bool = False) -> np.ndarray:
    """(Q, 4) mean distance of each query video to its ``k`` nearest reference videos of the same expression.

    ``reference`` (N, 4, D) and ``queries`` (Q, 4, D); with ``leave_one_out`` the queries are the reference
    subjects themselves, each measured against the others.
    """
    out = np.zeros(queries.shape[:2])
    for e in range(reference.shape[1]):
        distances = np.linalg.norm(queries[:, None, e] - reference[None, :, e], axis=-1)
        if leave_one_out:
            np.fill_diagonal(distances, np.inf)
        out[:, e] = np.sort(distances, axis=1)[:, :k].mean(axis=1)
    return out


def conformal_threshold(scores: np.ndarray, labels: np.ndarray, target_share: float) -> float:
    """The smallest threshold that at most ``target_share`` of each group's subjects exceed (the split-conformal
    quantile of each group, the larger of the two); a group too small for that share gets its largest score."""
    scores, labels, thresholds = np.asarray(scores, dtype=np.float64), np.asarray(labels), []
    for label in (0, 1):
        values = np.sort(scores[labels == label])
        rank = math.ceil((len(values) + 1) * (1.0 - target_share))
        thresholds.append(values[min(rank, len(values)) - 1])
    return float(max(thresholds))


@dataclass
class TypicalityCheck:
    """A person's per-video scores (distance to the nearest cohort videos over the cohort's median such
    distance) against the threshold; ``atypical``: no verdict."""

    scores: dict[str, float]
    threshold: float

    @property
    def score(self) -> float:
        return max(self.scores.values())

    @property
    def atypical(self) -> bool:
        return self.score > self.threshold

    @property
    def atypical_videos(self) -> list[str]:
        return [e for e in EXPRESSIONS if self.scores[e] > self.threshold]

    def reason(self) -> str:
        """One sentence naming the videos that are out and how far."""
        videos = ", ".join(f"{e} {self.scores[e]:.2f}" for e in self.atypical_videos)
        return (f"the recordings do not look like the training cohort's (neither its HC nor its PD group): distance "
                f"to the nearest cohort videos over the cohort's median, {videos}; the cohort's own subjects stay at "
                f"or below {self.threshold:.2f}")

    def to_dict(self) -> dict:
        return {"scores": self.scores, "threshold": self.threshold, "atypical": self.atypical,
                "atypical_videos": self.atypical_videos}


@dataclass
class TypicalityModel:
    """The fitted check: the cohort's normalised per-video features, the scale and threshold of the score,
    and how often it refused the cohort's own subjects (each scored against the others)."""

    reference: np.ndarray  # (N, 4, D) unit-length features of the cohort's videos
    scales: np.ndarray  # (4,) the cohort's median leave-one-out k-NN distance, per expression
    threshold: float
    feature: str = "video_features"  # or "cosine" for cohorts without stage-1 video features
    k: int = NEIGHBOURS
    target_share: float = TARGET_SHARE
    held_out: dict = field(default_factory=dict)  # per group: refused, n, share, interval
    refused_rows: np.ndarray | None = None  # the fitting cohort's refusals, subject by subject (not saved)

    @property
    def method(self) -> str:
        return (f"{self.k}-nearest-neighbour distance in stage 1's normalised {self.feature.replace('_', ' ')}, per "
                f"video, to the training cohort's videos of the same expression (either group), over its median; "
                f"threshold split-conformal on leave-one-subject-out scores")

    def check(self, features: np.ndarray) -> TypicalityCheck:
        """One person's (4, D) features (``feature``: video features, or the (4, 4) cosines)."""
        scores = knn_distances(self.reference, normalised(np.asarray(features)[None]), self.k)[0] / self.scales
        return TypicalityCheck(dict(zip(EXPRESSIONS, map(float, scores))), self.threshold)

    def describe(self) -> str:
        """One line for the outputs: the target and what it refused of the cohort's own subjects."""
        parts = [f"{name} {g['refused']}/{g['n']} ({g['interval'][0]:.1%}-{g['interval'][1]:.1%})"
                 for name, g in self.held_out.items()]
        return (f"out-of-distribution check (target: refuse at most {self.target_share:.0%} of each group): "
                f"refused of the cohort's subjects, each scored against the others, {', '.join(parts)}")

    def to_dict(self) -> dict:
        """Everything but the reference features (saved as tensors beside it)."""
        return {"method": self.method, "feature": self.feature, "k": self.k, "target_share": self.target_share,
                "threshold": self.threshold, "scales": self.scales.tolist(), "held_out": self.held_out}

    @classmethod
    def from_dict(cls, values: dict, reference: np.ndarray) -> TypicalityModel:
        return cls(reference=np.asarray(reference, dtype=np.float64), scales=np.asarray(values["scales"], np.float64),
                   threshold=float(values["threshold"]), feature=values["feature"], k=int(values["k"]),
                   target_share=float(values["target_share"]), held_out=values.get("held_out", {}))


def fit_typicality(features: np.ndarray, labels: np.ndarray, feature: str = "video_features",
                   target_share: float = TARGET_SHARE, k: int = NEIGHBOURS, confidence: float = 0.95) -> TypicalityModel:
    """The check on a cohort's (N, 4, D) per-video features; threshold from leave-one-subject-out scores."""
    features, labels = np.asarray(features), np.asarray(labels)
    if features.ndim != 3 or features.shape[1] != len(EXPRESSIONS):
        raise ValueError(f"features must have shape (N, 4, D), got {features.shape}")
    if not 0 < target_share < 1:
        raise ValueError(f"target_share must be in (0, 1), got {target_share}")
    counts = np.bincount(labels, minlength=2)
    if counts.min() < 2 or len(labels) <= k:
        raise ValueError(f"the out-of-distribution check needs at least 2 subjects per group and more than {k} "
                         f"subjects, got {counts.tolist()}")
    reference = normalised(features)
    distances = knn_distances(reference, reference, k, leave_one_out=True)
    scales = np.maximum(np.median(distances, axis=0), 1e-12)
    scores = (distances / scales).max(axis=1)
    threshold = conformal_threshold(scores, labels, target_share)
    refused = scores > threshold
    held_out = {}
    for label, name in enumerate(COHORT_LABELS):
        rows = labels == label
        count, n = int(refused[rows].sum()), int(rows.sum())
        held_out[name] = {"refused": count, "n": n, "share": count / n,
                          "interval": list(wilson_interval(count, n, confidence))}
    return TypicalityModel(reference, scales, threshold, feature, k, target_share, held_out, refused)


def gate_refusals(typicality: TypicalityModel, cosine: np.ndarray, labels: np.ndarray, tau: float,
                  confidence: float = 0.95) -> dict:
    """How often diagnose's gate would refuse the cohort's subjects, per group, with Wilson intervals: out of
    distribution (each subject scored against the others) or a probably swapped file."""
    if typicality.refused_rows is None or len(typicality.refused_rows) != len(labels):
        raise ValueError("the gate's refusals need the typicality model fitted on this cohort")
    swapped = swapped_files(cosine, tau).any(axis=1)
    refused = swapped | typicality.refused_rows
    report = {}
    for label, name in enumerate(COHORT_LABELS):
        rows = labels == label
        count, n = int(refused[rows].sum()), int(rows.sum())
        report[name] = {"n": n, "refused": count, "share": count / n,
                        "out_of_distribution": int(typicality.refused_rows[rows].sum()),
                        "swapped_file": int(swapped[rows].sum()), "interval": list(wilson_interval(count, n, confidence))}
    return report
