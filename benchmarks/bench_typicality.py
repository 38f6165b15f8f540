"""How the out-of-distribution check was chosen: candidate methods on a scored cohort and on real faces.

For each candidate it reports (1) the share of each group's subjects the threshold refuses when new subjects
come in (outer subject-level 5-fold, repeated; the check fitted on the other folds), with the PD refusals'
mean severity beside the PD group's when a ground_truth.csv is given, (2) whether it refuses the four videos
of real faces (scikit-image's astronaut, matplotlib's Grace Hopper, animated by warping) scored by the
cohort's stage 1 under the cohort's scoring contract, and (3) the scores of chosen subjects.

    python benchmarks/bench_typicality.py runs/demo/stage2/intensities.npz \
        --checkpoint runs/demo/stage1/checkpoints/best.ckpt --ground_truth runs/demo/data/cohort/ground_truth.csv \
        --subjects S001 S002
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import numpy as np

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.common.machine import machine_line


class GaussianCheck:
    """The issue's first proposal: per group, a Ledoit-Wolf Mahalanobis model of the 16 cosines or of the
    concatenated video features; score = distance to the nearer group over its median; threshold = the
    largest leave-one-fold-out score of either group (the conformal rule for cohorts under 100 per group)."""

    def __init__(self, features, labels, feature):
        from sklearn.covariance import LedoitWolf
        from sklearn.model_selection import StratifiedKFold

        self.feature = feature
        flat = features.reshape(len(features), -1)
        held = np.zeros(len(labels))
        for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(flat, labels):
            models = [LedoitWolf().fit(flat[train][labels[train] == g]) for g in (0, 1)]
            held[test] = np.min([np.sqrt(m.mahalanobis(flat[test])) for m in models], axis=0)
        self.models = [LedoitWolf().fit(flat[labels == g]) for g in (0, 1)]
        self.scale = np.median(held)
        self.threshold = max((held[labels == g] / self.scale).max() for g in (0, 1))

    def score(self, person):
        flat = np.asarray(person, dtype=np.float64).reshape(1, -1)
        return float(min(np.sqrt(m.mahalanobis(flat))[0] for m in self.models) / self.scale)


class NeighbourCheck:
    """The shipped check (dfer_pd.stage2.typicality) with a given k."""

    def __init__(self, features, labels, feature, k):
        from dfer_pd.stage2.typicality import fit_typicality

        self.model = fit_typicality(features, labels, feature, k=k)
        self.feature, self.threshold = feature, self.model.threshold

    def score(self, person):
        return self.model.check(person).score


CANDIDATES = {
    "kNN k=1, video features": lambda f, y, c: NeighbourCheck(f["video_features"], y, "video_features", 1),
    "kNN k=3, video features (shipped)": lambda f, y, c: NeighbourCheck(f["video_features"], y, "video_features", 3),
    "kNN k=5, video features": lambda f, y, c: NeighbourCheck(f["video_features"], y, "video_features", 5),
    "kNN k=3, 16 cosines": lambda f, y, c: NeighbourCheck(f["cosine"], y, "cosine", 3),
    "Ledoit-Wolf Mahalanobis, 16 cosines": lambda f, y, c: GaussianCheck(f["cosine"], y, "cosine"),
    "Ledoit-Wolf Mahalanobis, video features": lambda f, y, c: GaussianCheck(f["video_features"], y, "video_features"),
}


def real_faces(checkpoint: Path, contract, size: int, frames: int, fps: float) -> dict[str, dict[str, np.ndarray]]:
    """{photo: {"cosine": (4, 4), "video_features": (4, D)}} scored under ``contract``."""
    from dfer_pd.stage1.quality import check_video
    from dfer_pd.stage1.scoring import Stage1Scorer, expression_cosines
    from dfer_pd.synthetic.photos import MOTIONS, PHOTOS, photo_video

    scorer = Stage1Scorer.for_contract(checkpoint, contract, None, "cpu")
    folder = Path(tempfile.mkdtemp(prefix="bench_typicality_"))
    out = {}
    for name in PHOTOS:
        cosines, features = [], []
        for expression, motion in zip(EXPRESSIONS, MOTIONS):
            video = photo_video(folder / f"{name}_{expression}.mp4", name, motion, frames, size, fps)
            check = check_video(video, contract)
            if check.reasons:
                raise SystemExit(f"{video}: {check.reasons}")
            scores = scorer.runtime(check.clip.pixel_values[None])
            cosines.append(scores.cosine)
            features.append(scores.video_features)
        out[name] = {"cosine": expression_cosines(np.concatenate(cosines), contract),
                     "video_features": np.concatenate(features)}
    return out


def main() -> None:
    from sklearn.model_selection import StratifiedKFold

    from dfer_pd.stage2.features import CohortIntensities

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("intensities", type=Path, help="a cohort's intensities.npz with stage-1 video features")
    parser.add_argument("--checkpoint", type=Path, help="the stage-1 checkpoint that scored it (for the real faces)")
    parser.add_argument("--ground_truth", type=Path, help="synthetic cohort's ground_truth.csv (severity of each subject)")
    parser.add_argument("--subjects", nargs="*", default=[], help="subjects whose own scores to print (each scored against the others)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the outer 5-fold split")
    parser.add_argument("--size", type=int, default=160, help="side of the real-face videos (pixels)")
    args = parser.parse_args()
    data = CohortIntensities.load(args.intensities)
    if data.video_features is None:
        raise SystemExit(f"{args.intensities} has no stage-1 video features")
    features = {"cosine": data.cosine.astype(np.float64), "video_features": data.video_features.astype(np.float64)}
    labels = np.asarray(data.labels)
    severity = None
    if args.ground_truth:
        truth = {row["subject_id"]: row for row in csv.DictReader(open(args.ground_truth))}
        severity = np.array([float(truth[s]["severity"]) for s in data.subject_ids])
    faces = real_faces(args.checkpoint, data.contract, args.size, 30, 6.0) if args.checkpoint else {}
    print(f"cohort: {args.intensities} ({(labels == 0).sum()} HC, {(labels == 1).sum()} PD); {data.contract.describe()}")
    print("| method | new HC refused | new PD refused | PD refused: mean severity (all PD) | "
          + " | ".join(faces) + " | " + " | ".join(args.subjects) + " |")
    print("|---" * (4 + len(faces) + len(args.subjects)) + "|")
    for name, build in CANDIDATES.items():
        refused, trials = np.zeros(len(labels)), 0
        for repeat in range(args.repeats):
            for train, test in StratifiedKFold(5, shuffle=True, random_state=100 + repeat).split(labels, labels):
                check = build({k: v[train] for k, v in features.items()}, labels[train], None)
                refused[test] += [check.score(features[check.feature][i]) > check.threshold for i in test]
            trials += 1
        share = refused / trials
        pd_rows = labels == 1
        hc, pd = share[labels == 0].mean(), share[pd_rows].mean()
        severe = "-"
        if severity is not None and refused[pd_rows].sum():
            severe = f"{np.average(severity[pd_rows], weights=refused[pd_rows]):.2f} ({severity[pd_rows].mean():.2f})"
        check = build(features, labels, None)
        cells = [f"{check.score(faces[f][check.feature]):.2f} {'refused' if check.score(faces[f][check.feature]) > check.threshold else 'kept'}"
                 for f in faces]
        for subject in args.subjects:
            i = data.subject_ids.index(subject)
            keep = np.arange(len(labels)) != i
            own = build({k: v[keep] for k, v in features.items()}, labels[keep], None)
            cells.append(f"{own.score(features[own.feature][i]):.2f} / {own.threshold:.2f}")
        print(f"| {name} | {hc:.1%} | {pd:.1%} | {severe} | " + " | ".join(cells) + " |")
    print("cells for faces and subjects: score (threshold of the check fitted on the whole cohort, "
          "or on the others for a subject) and whether it refuses")


if __name__ == "__main__":
    print(machine_line())
    main()
