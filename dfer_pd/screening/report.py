"""The screening report: report.json, report.html and report.png place one person against the cohort.

Each starts with the verdict (POSITIVE, NEGATIVE or INCONCLUSIVE), the reasons of an INCONCLUSIVE one
and every video's quality flags; then the person's intensities (and landmark kinematics, when the
screening model has the cohort's) against the training cohort's HC and PD distributions.
"""

from __future__ import annotations

import html
import time
from pathlib import Path

import numpy as np

from dfer_pd.common.constants import COHORT_LABELS, EXPRESSIONS
from dfer_pd.common.files import atomic_write, atomic_write_json
from dfer_pd.common.plots import PERSON_COLOUR, group_boxes, group_legend_handles, new_figure, save_figure
from dfer_pd.screening.diagnose import DISCLAIMER, Diagnosis
from dfer_pd.stage1.modeling_dfer_clip import intensities_from_cosine, log_intensities_from_cosine
from dfer_pd.stage2.features import FEATURE_NAMES, expression_features
from dfer_pd.stage2.kinematics import KINEMATIC_FEATURES, KINEMATIC_MEASURES
from dfer_pd.stage2.screening_model import ScreeningModel

VERDICT_COLOURS = {"POSITIVE": "#8a1c1c", "NEGATIVE": "#1f5f2c", "INCONCLUSIVE": "#7a5b00"}
FIGURE_WIDTH_INCHES = 11.0
FIGURE_DPI = 100
"""report.png is 1100 px wide: report.html (70em wide) and the web page show it at about its own size, so its
smallest text (:data:`SMALLEST_FONT_POINTS`, 11 px) stays readable rather than being scaled to a few pixels."""
SMALLEST_FONT_POINTS = 8.0


def subject_line(subject_id: str | None, date: str) -> str:
    """Who and when, on every report: the subject id as given (or "anonymous") and the date of the screening."""
    return f"Subject: {(subject_id or '').strip() or 'anonymous'}; screened {date}"


def _position(value: float, quantiles: list[float]) -> str:
    """Where a value falls among a group's 5/25/50/75/95th percentiles."""
    edges = ["below the 5th percentile", "5th-25th percentile", "25th-50th percentile", "50th-75th percentile",
             "75th-95th percentile", "above the 95th percentile"]
    return edges[int(np.searchsorted(quantiles, value))]


def report_dict(result: Diagnosis, model: ScreeningModel, subject_id: str | None = None, date: str | None = None) -> dict:
    scored = result.cosine is not None
    log_intensity = log_intensities_from_cosine(result.cosine, result.tau) if scored else None
    features = expression_features(intensities_from_cosine(result.cosine, result.tau)) if scored else None
    reference = model.reference or {}
    per_video = {}
    for j, expression in enumerate(EXPRESSIONS):
        entry = {"video": str(result.videos[expression]), "quality": result.quality[expression]}
        if scored:
            entry["log_intensity"] = dict(zip(EXPRESSIONS, log_intensity[j].round(4).tolist()))
            entry["features"] = dict(zip(FEATURE_NAMES, features[j].tolist()))
        if result.kinematics is not None:
            entry["kinematics"] = dict(zip(KINEMATIC_FEATURES, result.kinematics[j].round(5).tolist()))
        if scored and reference:
            ref = {g: (np.asarray(reference[g]["log_intensity"]), np.asarray(reference[g]["features"]))
                   for g in COHORT_LABELS}
            entry["asked_expression_vs_cohort"] = {
                g: _position(log_intensity[j, j], ref[g][0][:, j, j].tolist()) for g in COHORT_LABELS}
            entry["vs_cohort"] = {
                "log_intensity": {c: {g: _position(log_intensity[j, k], ref[g][0][:, j, k].tolist()) for g in COHORT_LABELS}
                                  for k, c in enumerate(EXPRESSIONS)},
                "features": {f: {g: _position(features[j, i], ref[g][1][:, j, i].tolist()) for g in COHORT_LABELS}
                             for i, f in enumerate(FEATURE_NAMES)},
            }
        if result.kinematics is not None and reference and "kinematics" in reference.get("HC", {}):
            entry.setdefault("vs_cohort", {})["kinematics"] = {
                f: {g: _position(result.kinematics[j, i], np.asarray(reference[g]["kinematics"])[:, j, i].tolist())
                    for g in COHORT_LABELS} for i, f in enumerate(KINEMATIC_FEATURES)}
        per_video[expression] = entry
    return {
        "subject_id": (subject_id or "").strip() or "anonymous",
        "date": date or time.strftime("%Y-%m-%d %H:%M"),
        "verdict": result.verdict,
        "reasons": result.reasons,
        "flags": {e: result.quality[e]["flags"] for e in EXPRESSIONS},
        "headline": result.headline(),
        "disclaimer": DISCLAIMER,
        "p_pd": result.p_pd,
        "threshold": result.threshold,
        "screening_positive": result.positive,
        "advice": result.advice(),
        "recognised": {e: {k: result.quality[e][k] for k in ("recognised_expression", "recognised_probability",
                                                              "asked_probability") if k in result.quality[e]}
                       for e in EXPRESSIONS},
        "out_of_distribution": result.typicality,
        "gate": model.gate_report,
        "gate_summary": model.gate(),
        "tau": result.tau,
        "scoring_contract": result.contract.to_dict(),
        "intensities_exp": intensities_from_cosine(result.cosine, result.tau).tolist() if scored else None,
        "videos": per_video,
        "classifier": model.classifier.name,
        "model_performance": model.performance(),
        "calibration": {"method": model.calibration.method, **(model.calibration_report or {})},
        "seconds": round(result.seconds, 2),
        **({"severity": result.severity} if result.severity_line() else {}),  # only with a verdict
    }


def _verdict_lines(result: Diagnosis, who: str) -> list[str]:
    """The verdict and what it rests on, who and when, in a few short lines for the top of the figure."""
    if result.inconclusive:
        lines = [f"INCONCLUSIVE: no verdict until every video passes ({len(result.reasons)} reason(s))"]
        lines += [f"- {r}" for r in result.reasons[:4]] + (["- ..."] if len(result.reasons) > 4 else [])
        lines.append("What to do: " + ("; ".join(result.advice()) or "record the four videos again as the protocol asks"))
    else:
        word = "POSITIVE (PD-like hypomimia)" if result.positive else "NEGATIVE"
        lines = [f"Screening {word}: p(PD) = {result.p_pd:.3f}, threshold {result.threshold:.2f}"]  # as the CLI rounds it
        lines += [result.severity_line()] if result.severity_line() else []
    flags = [f"{e}: {', '.join(result.quality[e]['flags'])}" for e in EXPRESSIONS if result.quality[e]["flags"]]
    lines.append("Flags - " + ("; ".join(flags) if flags else "none"))
    lines.append(f"{who}. {DISCLAIMER}")
    return lines


def _quantile_boxes(ax, quantiles: np.ndarray, positions: np.ndarray, group: str) -> None:
    """Box plots from stored quantiles (5/25/50/75/95th: whiskers at 5 and 95), in the group's colour."""
    stats = [{"whislo": q[0], "q1": q[1], "med": q[2], "q3": q[3], "whishi": q[4], "fliers": []} for q in quantiles.T]
    group_boxes(ax, stats, positions, group)


def plot_against_cohort(result: Diagnosis, model: ScreeningModel, path: Path, who: str = subject_line(None, "")) -> Path:
    """report.png: :func:`cohort_figure` at :data:`FIGURE_DPI`."""
    return save_figure(cohort_figure(result, model, who), path, dpi=FIGURE_DPI)


def cohort_figure(result: Diagnosis, model: ScreeningModel, who: str):
    """Fig. 4 for one person: the verdict, reasons, flags, subject and date on top; then the cohort's HC and PD boxes
    (from stored quantiles) with this person's values, for the intensities and, when present, the kinematic amplitudes."""
    from matplotlib.lines import Line2D

    reference = model.reference or {}
    has_kinematics = result.kinematics is not None or "kinematics" in reference.get("HC", {})
    rows = 2 if has_kinematics else 1
    header = _verdict_lines(result, who)
    top = 0.9 + 0.22 * len(header)  # inches of text above the plots
    fig = new_figure(figsize=(FIGURE_WIDTH_INCHES, 3.3 * rows + top))
    axes = fig.subplots(rows, 4, squeeze=False)
    amplitude_columns = [KINEMATIC_FEATURES.index(f"{m}_amplitude") for m in KINEMATIC_MEASURES]
    for j, expression in enumerate(EXPRESSIONS):
        ax = axes[0, j]
        for g, group in enumerate(COHORT_LABELS):
            if reference:
                q = np.asarray(reference[group]["log_intensity"])[:, j, :]  # (5 quantiles, 4 classes)
                _quantile_boxes(ax, q, np.arange(4) * 3 + g, group)
        if result.cosine is not None:
            values = log_intensities_from_cosine(result.cosine, result.tau)[j]
            ax.scatter(np.arange(4) * 3 + 0.5, values, marker="D", color=PERSON_COLOUR, zorder=5)
        ax.set_xticks(np.arange(4) * 3 + 0.5, [e[:4] for e in EXPRESSIONS])
        ax.set_xlim(-1, 11)
        ax.set_title(f"{expression} video:\nstage-1 intensity", fontsize=10)
        if has_kinematics:
            ax = axes[1, j]
            for g, group in enumerate(COHORT_LABELS):
                if "kinematics" in reference.get(group, {}):
                    q = np.asarray(reference[group]["kinematics"])[:, j, amplitude_columns]
                    _quantile_boxes(ax, q, np.arange(4) * 3 + g, group)
            if result.kinematics is not None:
                ax.scatter(np.arange(4) * 3 + 0.5, result.kinematics[j, amplitude_columns], marker="D",
                           color=PERSON_COLOUR, zorder=5)
            ax.set_xticks(np.arange(4) * 3 + 0.5, ["mouth\ncorners", "brows", "eyelids", "jaw"])
            ax.set_xlim(-1, 11)
            ax.set_title(f"{expression} video:\nmovement amplitude", fontsize=10)
    axes[0, 0].set_ylabel("log intensity (cos / tau)")
    if has_kinematics:
        axes[1, 0].set_ylabel("amplitude (eye distances)")
    handles = group_legend_handles(prefix="cohort ")
    handles.append(Line2D([], [], marker="D", color=PERSON_COLOUR, linestyle="none", label="this person"))
    colour = VERDICT_COLOURS[result.verdict]
    fig.text(0.01, 1 - 0.25 / fig.get_figheight(), header[0], fontsize=13, fontweight="bold", color=colour, va="top")
    for i, line in enumerate(header[1:], start=1):
        fig.text(0.01, 1 - (0.3 + 0.22 * i + 0.1) / fig.get_figheight(), line, fontsize=9, va="top", wrap=True,
                 style="italic" if i == len(header) - 1 else "normal")
    # The legend sits in its own band under the header, never over the boxes.
    fig.legend(handles=handles, loc="upper center", ncol=3, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 1 - (top - 0.35) / fig.get_figheight()))
    fig.tight_layout(rect=(0, 0, 1, 1 - top / fig.get_figheight()))
    return fig


def write_report(result: Diagnosis, model: ScreeningModel, out_dir: str | Path,
                 subject_id: str | None = None) -> dict[str, Path]:
    """report.json, report.png, report.html (and reliability.png, when the model has its calibration report) in
    ``out_dir``; each names the subject (``subject_id``, else "anonymous") and the date. Returns the files by kind."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report = report_dict(result, model, subject_id)
    who = subject_line(report["subject_id"], report["date"])
    json_path = out_dir / "report.json"
    atomic_write_json(json_path, report)
    png_path = plot_against_cohort(result, model, out_dir / "report.png", who)
    files = {"json": json_path, "png": png_path}
    reliability = ""
    if model.calibration_report:  # how far p(PD) can be taken at face value: the model's reliability curve
        from dfer_pd.stage2.plots import plot_reliability

        files["reliability"] = plot_reliability(model.calibration_report, out_dir / "reliability.png")
        brier = model.calibration_report
        reliability = (f"<p>Reliability of p(PD) on the training cohort's out-of-fold predictions: Brier score "
                       f"{brier['brier_raw']:.3f} raw, {brier['brier_calibrated']:.3f} as reported here "
                       f"({html.escape(model.calibration.method)} calibration; 0 is perfect, 0.25 is p = 0.5 for everyone)."
                       f"</p>\n<p><img src=\"reliability.png\" alt=\"reliability curve\" style=\"max-width: 30em\"></p>")
    rows = []
    for e, v in report["videos"].items():
        asked = f"{v['log_intensity'][e]:.2f}" if "log_intensity" in v else "-"
        versus = ", ".join(v.get("asked_expression_vs_cohort", {}).get(g, "-") for g in COHORT_LABELS)
        reasons = "; ".join(v["quality"].get("reasons", []))
        seen = report["recognised"].get(e, {})
        recognised = (f"{seen['recognised_expression']} ({seen['recognised_probability']:.2f})"
                      if "recognised_expression" in seen else "-")
        rows.append(f"<tr><td>{html.escape(e)}</td><td>{html.escape(Path(v['video']).name)}</td>"
                    f"<td>{html.escape(recognised)}</td><td>{asked}</td>"
                    f"<td>{html.escape(versus)}</td><td>{html.escape(', '.join(v['quality']['flags']) or 'ok')}</td>"
                    f"<td>{html.escape(reasons or '-')}</td></tr>")
    colour = VERDICT_COLOURS[result.verdict]
    if result.inconclusive:
        verdict = "Screening INCONCLUSIVE"
        detail = ("<p>No verdict is given until every video passes. Reasons:</p><ul>"
                  + "".join(f"<li>{html.escape(r)}</li>" for r in result.reasons) + "</ul>"
                  + f"<p>What to do: {html.escape('; '.join(result.advice()) or 'record the four videos again')}.</p>")
    else:
        verdict = f"Screening {'POSITIVE' if result.positive else 'NEGATIVE'}"
        detail = (f"<p>p(PD) = {result.p_pd:.3f}, decision threshold {result.threshold:.2f}. "
                  f"Classifier: {html.escape(model.classifier.name)}.</p>")
        if result.severity_line():
            detail += (f"<p id=\"severity\">{html.escape(result.severity_line())} "
                       f"(regressor: {html.escape(result.severity['model'])}).</p>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>dfer-pd screening report</title></head>
<body style="font-family: sans-serif; max-width: 70em">
<div style="border: 3px solid {colour}; padding: 0.5em 1em; margin-bottom: 1em">
<h1 style="color: {colour}; margin: 0.2em 0">{verdict}</h1>
<p>{html.escape(who)}.</p>
{detail}
<p>Model: {html.escape(model.performance())}.</p>
<p>{html.escape(model.gate())}.</p>
<p><strong>{html.escape(DISCLAIMER)}</strong></p>
</div>
<table border="1" cellpadding="4"><tr><th>asked expression</th><th>video</th><th>recognised (probability)</th><th>log intensity of the asked expression</th>
<th>vs cohort (HC, PD)</th><th>quality flags</th><th>unusable because</th></tr>{"".join(rows)}</table>
<p><img src="report.png" alt="verdict, flags and this person's values against the cohort" style="max-width: 100%"></p>
{reliability}
</body></html>"""
    html_path = out_dir / "report.html"
    with atomic_write(html_path, "w") as handle:
        handle.write(page)
    return {"html": html_path, **files}
