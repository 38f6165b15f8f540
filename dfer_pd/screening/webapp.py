"""The local web page behind `dfer-pd serve`: the four expression videos in, the screening report out.

For the clinician who will not use a terminal. The page runs :func:`dfer_pd.screening.diagnose.diagnose`
and :func:`dfer_pd.screening.report.write_report` exactly as `dfer-pd diagnose` does, under the screening
model's scoring contract. Nothing leaves the machine: the server listens on localhost only, there is no
share link, Gradio's analytics and version check are off, the page uses system fonts, and uploaded videos
are deleted from Gradio's cache about an hour after upload, and all of them when the server restarts
(reports stay in the output folder).
"""

from __future__ import annotations

import html
import os
import secrets
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

# Before gradio is imported: no telemetry, no version check, no Hugging Face telemetry.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from dfer_pd.common.constants import EXPRESSIONS  # noqa: E402

LOCALHOST = "127.0.0.1"

# One prompt per expression, as the recording protocol asks (each held for more than five seconds,
# in good light, face to the camera: the paper's PD-FEV protocol).
PROMPTS: dict[str, str] = {
    "neutral": "Neutral: look straight at the camera with a relaxed, expressionless face for at least 5 seconds.",
    "happiness": "Happiness: smile as broadly as you can and hold the smile for at least 5 seconds.",
    "surprise": "Surprise: raise your eyebrows high and open your mouth, as if astonished, for at least 5 seconds.",
    "anger": "Anger: frown, draw your brows down and press your lips together, as if angry, for at least 5 seconds.",
}
TIPS = ("Record each expression in its own video, face to the camera, in good light (a lamp in front of the face "
        "helps). Upload a file or record it with the webcam. The result is a research screening aid, not a diagnosis.")


@dataclass
class Screening:
    """One person's screening, as the page shows it."""

    verdict: str  # POSITIVE, NEGATIVE or INCONCLUSIVE
    headline: str
    reasons: list[str] = field(default_factory=list)
    flags: dict[str, list[str]] = field(default_factory=dict)
    recognised: dict[str, str] = field(default_factory=dict)  # per video: the expression stage 1 sees, its probability
    advice: list[str] = field(default_factory=list)  # what to do, when INCONCLUSIVE
    p_pd: float | None = None
    files: dict[str, Path] = field(default_factory=dict)
    performance: str = ""  # the model's cross-validated accuracy and ROC AUC with intervals (ScreeningModel.performance)
    severity: str | None = None  # the estimated MDS-UPDRS 3.2 line, with a verdict from a model trained with severity


def verdict_of(result) -> tuple[str, list[str]]:
    """POSITIVE / NEGATIVE / INCONCLUSIVE and the reasons, from whatever :func:`diagnose` returns.

    A result that names its own verdict (``verdict``, with ``reasons`` or ``inconclusive_reasons``) is
    taken at its word; otherwise the verdict follows ``positive``.
    """
    verdict = getattr(result, "verdict", None)
    verdict = getattr(verdict, "value", verdict)  # an Enum or a string
    reasons = getattr(result, "reasons", None) or getattr(result, "inconclusive_reasons", None) or []
    if isinstance(reasons, str):
        reasons = [reasons]
    if verdict is None:
        if getattr(result, "inconclusive", False):
            verdict = "INCONCLUSIVE"
        else:
            verdict = "POSITIVE" if result.positive else "NEGATIVE"
    verdict = str(verdict).upper()
    if "INCONCLUSIVE" in verdict:
        verdict = "INCONCLUSIVE"
    elif "POSITIVE" in verdict:
        verdict = "POSITIVE"
    elif "NEGATIVE" in verdict:
        verdict = "NEGATIVE"
    return verdict, [str(r) for r in reasons]


class Screener:
    """Loads the screening model and stage 1 once (under the screening model's scoring contract, on the
    chosen runtime) and screens one person per call into its own report folder."""

    def __init__(self, stage1: str | Path, screening_model: str | Path, out_dir: str | Path, device: str = "cpu",
                 runtime: str | None = None) -> None:
        from dfer_pd.stage1.scoring import Stage1Scorer
        from dfer_pd.stage2.screening_model import ScreeningModel

        self.model_dir = Path(screening_model)
        self.model = ScreeningModel.load(screening_model)
        self.scorer = Stage1Scorer.for_contract(stage1, self.model.scoring_contract(), runtime, device,
                                                source=str(self.model.source or screening_model))
        self.out_dir = Path(out_dir)

    def screen(self, videos: dict[str, str | Path], progress=None, subject_id: str | None = None) -> Screening:
        from dfer_pd.screening.diagnose import diagnose
        from dfer_pd.screening.inputs import find_expression_videos
        from dfer_pd.screening.report import write_report

        def step(fraction: float, text: str) -> None:
            if progress is not None:
                progress(fraction, desc=text)

        step(0.05, "Checking the four videos")
        found = find_expression_videos(None, **{e: str(videos[e]) for e in EXPRESSIONS})
        step(0.15, "Finding the face and scoring the four expressions (stage 1)")
        result = diagnose(found, self.scorer, self.model)
        step(0.85, "Writing the report")
        folder = self.out_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        files = write_report(result, self.model, folder, subject_id=subject_id)
        files["zip"] = zip_folder(folder)  # report.html with every image it shows, in one download
        verdict, reasons = verdict_of(result)
        flags = {e: list(q.get("flags", [])) for e, q in getattr(result, "quality", {}).items()}
        recognised = {e: f"{q['recognised_expression']} ({q['recognised_probability']:.2f})"
                      for e, q in getattr(result, "quality", {}).items() if "recognised_expression" in q}
        step(1.0, "Done")
        return Screening(verdict=verdict, headline=result.headline(), reasons=reasons, flags=flags,
                         recognised=recognised, advice=getattr(result, "advice", list)(),
                         p_pd=getattr(result, "p_pd", None), files={k: Path(v) for k, v in files.items()},
                         performance=self.model.performance(),
                         severity=getattr(result, "severity_line", lambda: None)())


def zip_folder(folder: Path) -> Path:
    """``folder/report.zip``: every file of the report folder (report.html and the images it references)."""
    target = folder / "report.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file() and path != target:
                archive.write(path, path.name)
    return target


def plain_message(message: str, videos: dict[str, str | Path]) -> str:
    """A message about the uploaded files without Gradio's temporary folders: the files are named by their names."""
    for path in videos.values():
        if path:
            message = message.replace(str(Path(path).parent) + os.sep, "")
    return message


VERDICT_STYLE = {
    "POSITIVE": ("#8a1c1c", "#fde8e8", "Screening POSITIVE"),
    "NEGATIVE": ("#14532d", "#e7f6ec", "Screening negative"),
    "INCONCLUSIVE": ("#7a4b00", "#fff4dc", "INCONCLUSIVE"),
}


def verdict_html(screening: Screening) -> str:
    """The verdict box: the verdict, the headline (p(PD), threshold, disclaimer), reasons and per-video flags."""
    from dfer_pd.screening.diagnose import DISCLAIMER

    colour, background, title = VERDICT_STYLE.get(screening.verdict, ("#222", "#eee", screening.verdict))
    parts = [f'<div id="verdict-box" data-verdict="{screening.verdict}" style="border:2px solid {colour};'
             f'background:{background};color:#111;padding:12px 16px;border-radius:8px">',
             f'<div style="font-size:1.5em;font-weight:700;color:{colour}">{html.escape(title)}</div>']
    if screening.reasons:  # the headline would repeat the reasons: list them once, then the disclaimer
        parts.append("<p><b>No verdict is given until every video passes. Why:</b></p><ul>"
                     + "".join(f"<li>{html.escape(r)}</li>" for r in screening.reasons) + "</ul>"
                     + (f"<p><b>What to do:</b> {html.escape('; '.join(screening.advice))}.</p>" if screening.advice else "")
                     + f"<p>{html.escape(DISCLAIMER)}</p>")
    else:
        parts.append(f"<p>{html.escape(screening.headline)}</p>")
        parts += [f'<p id="severity">{html.escape(screening.severity)}</p>'] if screening.severity else []
    if screening.performance:  # how far p(PD) can be trusted, beside it
        parts.append(f'<p id="model-performance"><b>How good this model is:</b> {html.escape(screening.performance)}.</p>')
    if screening.recognised:
        parts.append("<p><b>What stage 1 recognises in each video:</b> " + html.escape("; ".join(
            f"{e}: {seen}" for e, seen in screening.recognised.items())) + "</p>")
    flagged = {e: f for e, f in screening.flags.items() if f}
    if flagged:
        parts.append("<p><b>Quality flags:</b></p><ul>" + "".join(
            f"<li>{html.escape(e)}: {html.escape(', '.join(f))}</li>" for e, f in flagged.items()) + "</ul>")
    parts.append("</div>")
    return "".join(parts)


def error_html(message: str) -> str:
    return ('<div id="verdict-box" data-verdict="ERROR" style="border:2px solid #8a1c1c;background:#fde8e8;color:#111;'
            f'padding:12px 16px;border-radius:8px"><b>The videos could not be screened.</b><p>{html.escape(message)}</p></div>')


def video_input(gr, expression: str):
    """A video input (upload or webcam, no microphone) that hands the file over as it is.

    The scorer reads any container and ignores sound, so Gradio's ffmpeg pass that strips the audio
    (which needs an ffmpeg executable) is skipped by replacing this one component's ``preprocess``.
    (A subclass of gr.Video would make Gradio write a .pyi stub beside this module.)
    """
    video = gr.Video(label=expression, sources=["upload", "webcam"], include_audio=False,
                     elem_id=f"video-{expression}", height=220)
    video.preprocess = lambda payload: None if payload is None else str(payload.path)
    return video


def build_app(screener: Screener):
    """The Gradio page: four video inputs (upload or webcam), one prompt each; verdict, figure, downloads."""
    import gradio as gr

    from dfer_pd.common.errors import describe_user_error

    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])  # system fonts: nothing fetched
    with gr.Blocks(title="dfer-pd screening", analytics_enabled=False, delete_cache=(600, 3600)) as app:
        gr.Markdown("# Parkinson's disease screening from facial expressions\n" + TIPS)
        inputs = []
        with gr.Row():
            for expression in EXPRESSIONS:
                with gr.Column(min_width=220):
                    gr.Markdown(f"**{PROMPTS[expression]}**", elem_id=f"prompt-{expression}")
                    inputs.append(video_input(gr, expression))
        subject = gr.Textbox(label="Subject id (optional; printed on the report, else \"anonymous\")",
                             elem_id="subject-id", max_lines=1)
        button = gr.Button("Screen", variant="primary", elem_id="screen-button")
        verdict = gr.HTML(elem_id="verdict")
        gr.Markdown("**This person against the training cohort (HC and PD)**")
        # No label or buttons drawn over the figure: its own headline sits at its top edge.
        figure = gr.Image(show_label=False, type="filepath", elem_id="report-figure", interactive=False, buttons=[])
        gr.Markdown("**How far p(PD) can be taken at face value: the model's reliability curve (training cohort, "
                    "out-of-fold)**")
        reliability = gr.Image(show_label=False, type="filepath", elem_id="reliability-figure", interactive=False,
                               buttons=[], height=420)
        downloads = gr.File(label="Download the report: report.zip (report.html with its images) or each file",
                            file_count="multiple", elem_id="report-files", interactive=False)

        def on_screen(neutral, happiness, surprise, anger, subject_id, progress=gr.Progress()):
            videos = dict(zip(EXPRESSIONS, (neutral, happiness, surprise, anger)))
            missing = [e for e, v in videos.items() if not v]
            if missing:
                return (error_html(f"Upload or record the {', '.join(missing)} video(s) first: one video per expression."),
                        None, None, None)
            try:
                screening = screener.screen(videos, progress, subject_id=subject_id)
            except Exception as err:  # noqa: BLE001 - a user error is shown on the page; a bug propagates
                message = describe_user_error(err)
                if message is None:
                    raise
                return error_html(plain_message(message, videos)), None, None, None
            files = [str(screening.files[k]) for k in ("zip", "html", "json", "png", "reliability") if k in screening.files]
            shown = [str(screening.files[k]) if k in screening.files else None for k in ("png", "reliability")]
            return verdict_html(screening), *shown, files

        button.click(on_screen, inputs=[*inputs, subject], outputs=[verdict, figure, reliability, downloads],
                     concurrency_limit=1)
    app.theme_for_launch = theme
    return app


def launch(app, screener: Screener, port: int = 7860, open_browser: bool = False, block: bool = True):
    """Serve on localhost only: no share link, no analytics, no server-side rendering helper.

    Only the report folder is served besides Gradio's own upload cache. ``quiet``: Gradio's own start-up lines
    (among them its hint to set share=True: sharing is off by design) are not printed; `dfer-pd serve` prints the URL.
    """
    screener.out_dir.mkdir(parents=True, exist_ok=True)
    return app.launch(server_name=LOCALHOST, server_port=port, share=False, inbrowser=open_browser,
                      prevent_thread_lock=not block, show_error=True, theme=getattr(app, "theme_for_launch", None),
                      ssr_mode=False, allowed_paths=[str(screener.out_dir.resolve())], enable_monitoring=False,
                      mcp_server=False, pwa=False, quiet=True)
