"""The screening report: report.json, report.html and report.png place one person against the cohort."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from dfer_pd.common.constants import COHORT_LABELS, EXPRESSIONS
from dfer_pd.common.files import atomic_write_json
from dfer_pd.screening.diagnose import DISCLAIMER, Diagnosis
from dfer_pd.stage1.modeling_dfer_clip import intensities_from_cosine, log_intensities_from_cosine
from dfer_pd.stage2.features import FEATURE_NAMES, expression_features
from dfer_pd.stage2.screening_model import ScreeningModel


def _position(value: float, quantiles: list[float]) -> str:
    """Where a value falls among a group's 5/25/50/75/95th percentiles."""
    edges = ["below the 5th percentile", "5th-25th percentile", "25th-50th percentile", "50th-75th percentile",
             "75th-95th percentile", "above the 95th percentile"]
    return edges[int(np.searchsorted(quantiles, value))]


def report_dict(result: Diagnosis, model: ScreeningModel) -> dict:
    log_intensity = log_intensities_from_cosine(result.cosine, result.tau)
    features = expression_features(intensities_from_cosine(result.cosine, result.tau))
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
        "scoring_contract": result.contract.to_dict(),
        "intensities_exp": intensities_from_cosine(result.cosine, result.tau).tolist(),
        "videos": per_video,
        "classifier": model.classifier.name,
        "seconds": round(result.seconds, 2),
    }


def plot_against_cohort(result: Diagnosis, model: ScreeningModel, path: Path) -> Path:
    """Fig. 4 for one person: the cohort's HC and PD boxes (from stored quantiles) and this person's values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log_intensity = log_intensities_from_cosine(result.cosine, result.tau)
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
    atomic_write_json(json_path, report)
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
