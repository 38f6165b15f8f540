"""`dfer-pd diagnose`: one person's four expression videos -> p(PD), intensities, quality flags, a report.

A research screening aid, not a diagnosis: the report says so in its first line.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ArgumentParser

from dfer_pd.common.files import file_digest
from dfer_pd.common.constants import COHORT_LABELS, EXPRESSIONS
from dfer_pd.stage2.cohort import EXPRESSION_ALIASES
from dfer_pd.screening.faces import read_face_clip
from dfer_pd.stage1.transforms import build_clip_transform, frames_to_video
from dfer_pd.common.video import VIDEO_SUFFIXES, read_clip
from dfer_pd.stage1.extraction import load_stage1, sampling_settings
from dfer_pd.stage2.features import FEATURE_NAMES, expression_features
from dfer_pd.screening.quality import video_quality
from dfer_pd.stage2.screening_model import ScreeningModel, ScreeningModelError

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
    cosine: np.ndarray  # (4, 4)
    tau: float
    quality: dict[str, dict]
    videos: dict[str, Path]
    seconds: float

    @property
    def positive(self) -> bool:
        return self.p_pd >= self.threshold

    def headline(self) -> str:
        verdict = "screening POSITIVE (PD-like hypomimia)" if self.positive else "screening negative"
        flagged = sum(bool(q["flags"]) for q in self.quality.values())
        return (f"p(PD) = {self.p_pd:.3f} (threshold {self.threshold:.2f}): {verdict}; "
                f"{flagged} of 4 videos with quality flags. {DISCLAIMER}")


def score_videos(videos: dict[str, Path], stage1_checkpoint: str | Path, crop_faces: bool = True,
                 face_detector: str = "haar", device: str = "cpu") -> tuple[np.ndarray, float, dict, dict]:
    """Stage 1 on the four videos in one batch: (4, 4) cosines, tau, quality per video, scoring settings."""
    module = load_stage1(stage1_checkpoint, map_location=device).eval()
    settings = sampling_settings(module.hparams, crop_faces, face_detector)
    transform = build_clip_transform(False, settings["image_size"], settings["mean"], settings["std"])
    clips, quality = [], {}
    for expression, path in videos.items():
        if crop_faces:
            frames, report = read_face_clip(path, settings["num_frames"], detector=face_detector, size=settings["image_size"])
        else:
            (frames, _), report = read_clip(path, settings["num_frames"]), None
        quality[expression] = video_quality(path, frames, face_report=report)
        clips.append(transform(frames_to_video(frames)).as_subclass(torch.Tensor))
    with torch.no_grad():
        cosine = module(torch.stack(clips).to(device)).cosine.double().cpu().numpy()
    for j, expression in enumerate(EXPRESSIONS):
        recognised = EXPRESSIONS[int(cosine[j].argmax())]
        quality[expression]["recognised_expression"] = recognised
        if recognised != expression:
            quality[expression]["flags"] = [*quality[expression]["flags"], "expression_not_recognised"]
    return cosine, float(module.hparams.tau), quality, settings


def diagnose(videos: dict[str, Path], stage1_checkpoint: str | Path, screening_model: str | Path | ScreeningModel,
             crop_faces: bool = True, face_detector: str = "haar", device: str = "cpu",
             allow_other_stage1: bool = False) -> Diagnosis:
    started = time.perf_counter()
    model = screening_model if isinstance(screening_model, ScreeningModel) else ScreeningModel.load(screening_model)
    name = model.source or "the screening model"
    recorded = (model.stage1 or {}).get("checkpoint_sha256")
    if recorded and not allow_other_stage1 and file_digest(stage1_checkpoint) != recorded:
        raise ScreeningModelError(
            f"{name} was trained on intensities from another stage-1 checkpoint (sha256 {recorded[:12]}...) "
            f"than {stage1_checkpoint}; pass the checkpoint the cohort was scored with (or --allow_other_stage1 true)"
        )
    cosine, tau, quality, _ = score_videos(videos, stage1_checkpoint, crop_faces, face_detector, device)
    if abs(tau - model.tau) > 1e-12:
        raise ScreeningModelError(f"{name} expects tau = {model.tau}, the stage-1 checkpoint has {tau}")
    p_pd = float(model.predict_proba(cosine))
    return Diagnosis(p_pd=p_pd, threshold=model.threshold, cosine=cosine, tau=tau, quality=quality,
                     videos=videos, seconds=time.perf_counter() - started)


def _position(value: float, quantiles: list[float]) -> str:
    """Where a value falls among a group's 5/25/50/75/95th percentiles."""
    edges = ["below the 5th percentile", "5th-25th percentile", "25th-50th percentile", "50th-75th percentile",
             "75th-95th percentile", "above the 95th percentile"]
    return edges[int(np.searchsorted(quantiles, value))]


def report_dict(result: Diagnosis, model: ScreeningModel) -> dict:
    log_intensity = result.cosine / result.tau
    features = expression_features(np.exp(log_intensity))
    per_video = {}
    for j, expression in enumerate(EXPRESSIONS):
        entry = {
            "video": str(result.videos[expression]),
            "log_intensity": dict(zip(EXPRESSIONS, log_intensity[j].round(4).tolist())),
            "features": dict(zip(FEATURE_NAMES, features[j].tolist())),
            "quality": result.quality[expression],
        }
        if model.reference:
            ref = {g: (np.asarray(model.reference[g]["log_intensity"]), np.asarray(model.reference[g]["features"]))
                   for g in COHORT_LABELS}
            entry["asked_expression_vs_cohort"] = {
                g: _position(log_intensity[j, j], ref[g][0][:, j, j].tolist()) for g in COHORT_LABELS}
            entry["vs_cohort"] = {
                "log_intensity": {c: {g: _position(log_intensity[j, k], ref[g][0][:, j, k].tolist()) for g in COHORT_LABELS}
                                  for k, c in enumerate(EXPRESSIONS)},
                "features": {f: {g: _position(features[j, i], ref[g][1][:, j, i].tolist()) for g in COHORT_LABELS}
                             for i, f in enumerate(FEATURE_NAMES)},
            }
        per_video[expression] = entry
    return {
        "disclaimer": DISCLAIMER,
        "p_pd": result.p_pd,
        "threshold": result.threshold,
        "screening_positive": result.positive,
        "headline": result.headline(),
        "tau": result.tau,
        "intensities_exp": np.exp(log_intensity).tolist(),
        "videos": per_video,
        "classifier": model.classifier.name,
        "seconds": round(result.seconds, 2),
    }


def plot_against_cohort(result: Diagnosis, model: ScreeningModel, path: Path) -> Path:
    """Fig. 4 for one person: the cohort's HC and PD boxes (from stored quantiles) and this person's values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log_intensity = result.cosine / result.tau
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8), sharey=True)
    colours = {"HC": "#4C72B0", "PD": "#DD8452"}
    for j, (ax, expression) in enumerate(zip(axes, EXPRESSIONS)):
        for g, group in enumerate(COHORT_LABELS):
            if not model.reference:
                break
            q = np.asarray(model.reference[group]["log_intensity"])[:, j, :]  # (5 quantiles, 4 classes)
            stats = [{"whislo": q[0, k], "q1": q[1, k], "med": q[2, k], "q3": q[3, k], "whishi": q[4, k], "fliers": []}
                     for k in range(4)]
            positions = np.arange(4) * 3 + g
            boxes = ax.bxp(stats, positions=positions, widths=0.8, patch_artist=True, showfliers=False)
            for box in boxes["boxes"]:
                box.set_facecolor(colours[group])
                box.set_alpha(0.6)
        ax.scatter(np.arange(4) * 3 + 0.5, log_intensity[j], marker="D", color="black", zorder=5, label="this person")
        ax.set_xticks(np.arange(4) * 3 + 0.5, [e[:4] for e in EXPRESSIONS])
        ax.set_title(f"{expression} video")
    axes[0].set_ylabel("log intensity (cos / tau)")
    handles = [plt.Rectangle((0, 0), 1, 1, color=c, alpha=0.6) for c in colours.values()]
    axes[-1].legend(handles + [axes[-1].collections[0]], [*colours, "this person"], loc="best", fontsize=8)
    fig.suptitle(f"p(PD) = {result.p_pd:.2f} - {DISCLAIMER}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_report(result: Diagnosis, model: ScreeningModel, out_dir: str | Path) -> dict[str, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = report_dict(result, model)
    json_path = out_dir / "report.json"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    png_path = plot_against_cohort(result, model, out_dir / "report.png")
    rows = "".join(
        f"<tr><td>{html.escape(e)}</td><td>{html.escape(Path(v['video']).name)}</td>"
        f"<td>{v['log_intensity'][e]:.2f}</td><td>{html.escape(', '.join(v.get('asked_expression_vs_cohort', {}).get(g, '-') for g in COHORT_LABELS))}</td>"
        f"<td>{html.escape(', '.join(v['quality']['flags']) or 'ok')}</td></tr>"
        for e, v in report["videos"].items()
    )
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>dfer-pd screening report</title></head>
<body style="font-family: sans-serif; max-width: 70em">
<p><strong>{html.escape(DISCLAIMER)}</strong></p>
<h1>p(PD) = {result.p_pd:.3f}</h1>
<p>Decision threshold {result.threshold:.2f}: {"screening positive" if result.positive else "screening negative"}.
Classifier: {html.escape(model.classifier.name)}.</p>
<table border="1" cellpadding="4"><tr><th>asked expression</th><th>video</th><th>log intensity of the asked expression</th>
<th>vs cohort (HC, PD)</th><th>quality flags</th></tr>{rows}</table>
<p><img src="report.png" alt="intensities against the cohort" style="max-width: 100%"></p>
</body></html>"""
    html_path = out_dir / "report.html"
    html_path.write_text(page)
    return {"json": json_path, "html": html_path, "png": png_path}


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="dfer-pd diagnose", description=__doc__)
    parser.add_argument("--videos", type=str | None, default=None, help="folder with one video per expression, named after it")
    for expression in EXPRESSIONS:
        parser.add_argument(f"--{expression}", type=str | None, default=None, help=f"path of the {expression} video")
    parser.add_argument("--stage1", type=str, required=True, help="stage-1 checkpoint the cohort was scored with")
    parser.add_argument("--screening_model", type=str, required=True, help="folder saved by `dfer-pd train-pd`")
    parser.add_argument("--crop_faces", type=bool, default=True, help="detect and crop the face (raw phone videos)")
    parser.add_argument("--face_detector", type=str, default="haar")
    parser.add_argument("--device", type=str, default="cpu")
    parser.add_argument("--allow_other_stage1", type=bool, default=False)
    parser.add_argument("--out", type=str, default="runs/diagnose")
    return parser


def main(args: list[str] | None = None) -> dict:
    cfg = build_parser().parse_args(args)
    videos = find_expression_videos(cfg.videos, **{e: cfg.get(e) for e in EXPRESSIONS})
    model = ScreeningModel.load(cfg.screening_model)
    result = diagnose(videos, cfg.stage1, model, cfg.crop_faces, cfg.face_detector, cfg.device, cfg.allow_other_stage1)
    files = write_report(result, model, cfg.out)
    print(result.headline())
    for expression, q in result.quality.items():
        print(f"  {expression:10s} {Path(videos[expression]).name}: {', '.join(q['flags']) or 'ok'}")
    print(f"report: {files['html']} ({files['json'].name}, {files['png'].name}); {result.seconds:.1f} s")
    return {"p_pd": result.p_pd, "positive": result.positive, "files": files, "headline": result.headline()}
