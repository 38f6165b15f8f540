"""Screening one person: four expression videos -> p(PD), quality per video, under the screening model's contract.

A research screening aid, not a diagnosis: every headline and report says so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.common.video import VIDEO_SUFFIXES
from dfer_pd.screening.faces import FaceCropCache
from dfer_pd.screening.quality import video_quality
from dfer_pd.stage1.contract import ScoringContract
from dfer_pd.stage1.scoring import Stage1Scorer, expression_cosines
from dfer_pd.stage2.cohort import EXPRESSION_ALIASES
from dfer_pd.stage2.screening_model import ScreeningModel

DISCLAIMER = "Research screening aid, not a diagnosis: discuss any concern with a neurologist."


class DiagnoseInputError(ValueError):
    """The videos given to diagnose are missing, ambiguous, or do not cover the four expressions."""


def find_expression_videos(folder: str | Path | None = None, **explicit: str | None) -> dict[str, Path]:
    """One video per expression: explicit paths win; otherwise files in `folder` named after the expression
    (`happiness.mp4`, `happy.mov`, `S001_anger.mp4` ...)."""
    videos: dict[str, Path] = {}
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise DiagnoseInputError(f"{folder} is not a folder of expression videos")
        names = {**{e: e for e in EXPRESSIONS}, **EXPRESSION_ALIASES}
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            tokens = path.stem.lower().replace("-", "_").split("_")
            matches = {names[t] for t in tokens if t in names}
            for expression in matches:
                if expression in videos:
                    raise DiagnoseInputError(f"{folder}: two videos for {expression}: {videos[expression].name} and {path.name}")
                videos[expression] = path
    for expression, path in explicit.items():
        if path:
            videos[expression] = Path(path)
    missing = [e for e in EXPRESSIONS if e not in videos]
    if missing:
        raise DiagnoseInputError(
            f"no video for {', '.join(missing)}" + (f" in {folder}" if folder else "")
            + f": name files after the expression ({', '.join(EXPRESSIONS)}) or pass --<expression> PATH"
        )
    for expression, path in videos.items():
        if not path.is_file():
            raise DiagnoseInputError(f"{path} ({expression} video) does not exist")
    return {e: videos[e] for e in EXPRESSIONS}


@dataclass
class Diagnosis:
    p_pd: float
    threshold: float
    cosine: np.ndarray  # (4, 4): [asked expression, EXPRESSIONS class]
    contract: ScoringContract
    quality: dict[str, dict]
    videos: dict[str, Path]
    seconds: float

    @property
    def tau(self) -> float:
        return self.contract.tau

    @property
    def positive(self) -> bool:
        return self.p_pd >= self.threshold

    def headline(self) -> str:
        verdict = "screening POSITIVE (PD-like hypomimia)" if self.positive else "screening negative"
        flagged = sum(bool(q["flags"]) for q in self.quality.values())
        return (f"p(PD) = {self.p_pd:.3f} (threshold {self.threshold:.2f}): {verdict}; "
                f"{flagged} of 4 videos with quality flags. {DISCLAIMER}")


def diagnose(
    videos: dict[str, Path],
    stage1_checkpoint: str | Path,
    screening_model: str | Path | ScreeningModel,
    device: str = "cpu",
    crop_faces: bool | None = None,
    face_detector: str | None = None,
    precision: str | None = None,
    face_cache: FaceCropCache | None = None,
) -> Diagnosis:
    """Score the four videos exactly as the screening model's cohort was scored, then classify.

    The preprocessing is the screening model's scoring contract; ``crop_faces``, ``face_detector`` and
    ``precision`` are only checks: a value that disagrees with the contract is refused.
    """
    started = time.perf_counter()
    model = screening_model if isinstance(screening_model, ScreeningModel) else ScreeningModel.load(screening_model)
    name = str(model.source or "the screening model")
    contract = model.scoring_contract().with_overrides(
        name, crop_faces=crop_faces, face_detector=face_detector, precision=precision)
    scorer = Stage1Scorer.from_checkpoint(stage1_checkpoint, contract, map_location=device)
    scores, clips = scorer.score_videos([videos[e] for e in EXPRESSIONS], face_cache)
    quality = {}
    for j, (expression, clip) in enumerate(zip(EXPRESSIONS, clips)):
        quality[expression] = video_quality(videos[expression], clip.frames, face_report=clip.face_report)
        recognised = contract.class_names[int(scores.cosine[j].argmax())]
        quality[expression]["recognised_expression"] = recognised
        if recognised != expression:
            quality[expression]["flags"] = [*quality[expression]["flags"], "expression_not_recognised"]
    cosine = expression_cosines(scores.cosine, contract)
    p_pd = float(model.predict_proba(cosine))
    return Diagnosis(p_pd=p_pd, threshold=model.threshold, cosine=cosine, contract=contract, quality=quality,
                     videos=videos, seconds=time.perf_counter() - started)
