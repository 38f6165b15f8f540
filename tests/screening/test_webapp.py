"""The web page's pieces without a browser: the verdict read from whatever diagnose returns, its HTML,
and the Gradio app built with analytics off (the browser test: test_webapp_browser.py)."""

import enum
import os
from types import SimpleNamespace

import pytest

from dfer_pd.screening.webapp import PROMPTS, Screening, error_html, verdict_html, verdict_of


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
