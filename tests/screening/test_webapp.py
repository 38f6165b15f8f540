"""The web page's pieces without a browser: the verdict read from whatever diagnose returns, its HTML,
and the Gradio app built with analytics off (the browser test: test_webapp_browser.py)."""

import enum
import os
from types import SimpleNamespace

import pytest

from dfer_pd.screening.webapp import PROMPTS, Screening, error_html, verdict_html, verdict_of
from helpers import with_cv_figures


class Verdict(enum.Enum):
    INCONCLUSIVE = "INCONCLUSIVE"
    POSITIVE = "POSITIVE"


def test_verdict_of_whatever_diagnose_returns():
    assert verdict_of(SimpleNamespace(positive=True)) == ("POSITIVE", [])
    assert verdict_of(SimpleNamespace(positive=False)) == ("NEGATIVE", [])
    inconclusive = SimpleNamespace(positive=True, verdict=Verdict.INCONCLUSIVE, reasons=["anger: no face found"])
    assert verdict_of(inconclusive) == ("INCONCLUSIVE", ["anger: no face found"])
    assert verdict_of(SimpleNamespace(positive=False, verdict="inconclusive", inconclusive_reasons="truncated")) == (
        "INCONCLUSIVE", ["truncated"])
    assert verdict_of(SimpleNamespace(positive=False, inconclusive=True, reasons=("still image",))) == (
        "INCONCLUSIVE", ["still image"])
    assert verdict_of(SimpleNamespace(positive=False, verdict="screening POSITIVE")) == ("POSITIVE", [])


def test_verdict_html_shows_reasons_flags_and_escapes():
    page = verdict_html(Screening(verdict="INCONCLUSIVE", headline="INCONCLUSIVE: <2 usable videos>",
                                  reasons=["anger: no face"], flags={"anger": ["no_face"], "neutral": []}))
    assert 'data-verdict="INCONCLUSIVE"' in page and "No verdict is given" in page and "anger: no face" in page
    assert "not a diagnosis" in page and page.count("anger: no face") == 1
    assert "neutral" not in page  # only flagged videos are listed
    page = verdict_html(Screening(verdict="NEGATIVE", headline="p(PD) = 0.1 <b>", flags={}))
    assert "p(PD) = 0.1 &lt;b&gt;" in page and "No verdict" not in page
    assert 'data-verdict="ERROR"' in error_html("x.mp4: not a video")
    assert set(PROMPTS) == {"neutral", "happiness", "surprise", "anger"}
    assert all("5 seconds" in prompt for prompt in PROMPTS.values())


def test_app_builds_with_analytics_off(screening_setup, tmp_path):
    pytest.importorskip("gradio", reason="the web extra")
    from dfer_pd.screening.webapp import Screener, build_app

    checkpoint, model, _ = screening_setup
    app = build_app(Screener(checkpoint, model, tmp_path / "reports"))
    assert os.environ["GRADIO_ANALYTICS_ENABLED"] == "False" and app.analytics_enabled is False
    ids = {getattr(block, "elem_id", None) for block in app.blocks.values()}
    assert {"video-neutral", "video-happiness", "video-surprise", "video-anger", "screen-button", "verdict",
            "report-figure", "report-files"} <= ids


def test_verdict_box_shows_the_models_cv_accuracy_and_auc_beside_p_pd():
    performance = "cross-validated accuracy 0.810 (95% CI 0.700-0.900), ROC AUC 0.880 (95% CI 0.800-0.950); 10 x 5-fold CV"
    page = verdict_html(Screening(verdict="POSITIVE", headline="p(PD) = 0.998 (threshold 0.50)", performance=performance))
    assert page.index("p(PD) = 0.998") < page.index('id="model-performance"') and performance in page
    assert 'id="model-performance"' not in verdict_html(Screening(verdict="NEGATIVE", headline="p(PD) = 0.1"))


def test_report_png_rounds_as_the_cli_names_the_subject_and_date_and_stays_readable(screening_setup, tmp_path):
    """p(PD) 0.9984 is "0.998" (the CLI's rounding), not "1.00"; subject id (or "anonymous") and date on the
    figure, the page and the JSON; the figure is drawn at the size report.html (70em, about 1120 px) shows it, so
    its smallest text is SMALLEST_FONT_POINTS at FIGURE_DPI (11 px), not scaled down to a few pixels."""
    import json

    import numpy as np
    from matplotlib.text import Text
    from PIL import Image

    from dfer_pd.common.constants import EXPRESSIONS
    from dfer_pd.screening.diagnose import Diagnosis
    from dfer_pd.screening.report import FIGURE_DPI, SMALLEST_FONT_POINTS, cohort_figure, subject_line, write_report
    from dfer_pd.stage2.screening_model import ScreeningModel

    _, folder, videos = screening_setup
    model = ScreeningModel.load(folder)
    result = Diagnosis(p_pd=0.9984, threshold=0.5, cosine=np.random.default_rng(0).uniform(0.1, 0.3, (4, 4)),
                       contract=model.scoring_contract(), quality={e: {"flags": [], "reasons": []} for e in EXPRESSIONS},
                       videos=videos, seconds=1.0)
    figure = cohort_figure(result, model, subject_line("S-17", "2026-01-02 10:00"))
    texts = [t for t in figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
    shown = " ".join(t.get_text() for t in texts)
    assert "p(PD) = 0.998" in shown and "1.00" not in shown and "Subject: S-17; screened 2026-01-02 10:00" in shown
    assert min(t.get_fontsize() for t in texts) >= SMALLEST_FONT_POINTS
    files = write_report(result, model, tmp_path / "report")
    width = Image.open(files["png"]).size[0]
    assert width <= 70 * 16 and SMALLEST_FONT_POINTS * FIGURE_DPI / 72 >= 11  # shown at its own size in report.html
    report = json.loads(files["json"].read_text())
    assert report["subject_id"] == "anonymous" and report["date"][:2] == "20"
    assert f"Subject: anonymous; screened {report['date']}" in files["html"].read_text()
    assert json.loads(write_report(result, model, tmp_path / "named", subject_id=" S-17 ")["json"].read_text())[
        "subject_id"] == "S-17"


def test_screening_a_text_file_names_it_plainly_and_the_report_downloads_whole(screening_setup, tmp_path):
    """A text file uploaded as the anger video: INCONCLUSIVE naming anger.mp4 and what it is, without errno or Gradio's
    temporary folder; report.zip holds report.html and every image it references (reliability.png too); the page
    shows the model's CV figures."""
    import re
    import zipfile

    pytest.importorskip("gradio", reason="the web extra")
    from dfer_pd.screening.webapp import Screener, plain_message

    checkpoint, model, videos = screening_setup
    screener = Screener(checkpoint, model, tmp_path / "reports")
    screener.model = with_cv_figures(screener.model)
    upload = tmp_path / "gradio" / "3f9c0e1a" / "anger.mp4"  # where Gradio keeps an upload
    upload.parent.mkdir(parents=True)
    upload.write_text("notes about the recording, saved under a video's name\n")
    screening = screener.screen({**videos, "anger": upload}, subject_id="S-17")
    assert screening.verdict == "INCONCLUSIVE"
    (reason,) = screening.reasons
    assert reason.startswith("anger video (anger.mp4): not a readable video file"), reason
    page = verdict_html(screening)
    assert str(upload.parent) not in page and "Errno" not in page and "errno" not in page
    assert "cross-validated accuracy 0.810 (95% CI 0.700-0.900), ROC AUC 0.880" in page
    html_page = screening.files["html"].read_text()
    referenced = set(re.findall(r'<img src="([^"]+)"', html_page))
    assert {"report.png", "reliability.png"} <= referenced
    with zipfile.ZipFile(screening.files["zip"]) as archive:
        assert referenced | {"report.html", "report.json"} <= set(archive.namelist())
    assert screening.files["reliability"].is_file()
    assert plain_message(f"{upload}: not a video", {"anger": upload}) == "anger.mp4: not a video"


def test_the_server_prints_no_share_hint(screening_setup, tmp_path, capfd):
    """Sharing is off by design: Gradio's "To create a public link, set `share=True`" is not printed."""
    import socket

    pytest.importorskip("gradio", reason="the web extra")
    from dfer_pd.screening.webapp import Screener, build_app, launch

    checkpoint, model, _ = screening_setup
    screener = Screener(checkpoint, model, tmp_path / "reports")
    app = build_app(screener)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    launch(app, screener, port=port, block=False)
    try:
        printed = capfd.readouterr()
    finally:
        app.close()
    assert "share=True" not in printed.out + printed.err and "public link" not in printed.out + printed.err
