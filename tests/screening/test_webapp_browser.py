"""`dfer-pd serve` in a real browser: Debian's chromium, headless, driven by Playwright.

The test starts the console script, uploads one synthetic subject's four videos, waits for the verdict,
checks it against `dfer-pd diagnose` on the same videos, follows the report downloads, checks that the
page asked nothing of any host but 127.0.0.1, and saves a screenshot (under $DFER_PD_TEST_ARTIFACTS too,
when set: `make test-browser` keeps it in runs/test-artifacts/webapp.png).
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCRIPT = Path(sys.executable).parent / "dfer-pd"
PROGRESS_TEXTS = ("Checking the four videos", "Finding the face and scoring", "Writing the report")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp and tcp6)."""
    addresses = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                if len(address) == 8:
                    addresses.add(socket.inet_ntop(socket.AF_INET, bytes.fromhex(address)[::-1]))
                else:
                    addresses.add(socket.inet_ntop(socket.AF_INET6, b"".join(
                        bytes.fromhex(address[i:i + 8])[::-1] for i in range(0, 32, 8))))
    return addresses


@pytest.fixture
def served_model(screening_setup, tmp_path):
    """The screening model with its CV summary and platt calibration, as `train-pd` saves one."""
    from test_webapp import with_cv_figures

    from dfer_pd.stage2.screening_model import ScreeningModel

    return with_cv_figures(ScreeningModel.load(screening_setup[1])).save(tmp_path / "served_model")


@pytest.fixture
def server(screening_setup, served_model, tmp_path):
    """`dfer-pd serve` on a free localhost port, stopped (by its pid) after the test."""
    checkpoint, _, videos = screening_setup
    model = served_model
    port = free_port()
    log = open(tmp_path / "serve.log", "w")
    process = subprocess.Popen([str(SCRIPT), "serve", "--stage1", str(checkpoint), "--screening_model", str(model),
                                "--port", str(port), "--out", str(tmp_path / "reports")],
                               stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "WANDB_MODE": "disabled"})
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"dfer-pd serve did not come up: {(tmp_path / 'serve.log').read_text()[-3000:]}")
        time.sleep(0.5)
    assert listening_addresses(port) == {"127.0.0.1"}  # bound to loopback only, not to the network
    yield url, tmp_path / "reports", videos
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
    printed = (tmp_path / "serve.log").read_text()
    assert "share=True" not in printed and "public link" not in printed, printed  # sharing is off by design


def cli_report(screening_setup, model: Path, videos: dict, out: Path) -> dict:
    checkpoint = screening_setup[0]
    args = [str(SCRIPT), "diagnose", "--stage1", str(checkpoint), "--screening_model", str(model), "--out", str(out)]
    for expression, path in videos.items():
        args += [f"--{expression}", str(path)]
    done = subprocess.run(args, capture_output=True, text=True, timeout=300, env={**os.environ, "WANDB_MODE": "disabled"})
    report = json.loads((out / "report.json").read_text())
    assert done.returncode == (3 if report["verdict"] == "INCONCLUSIVE" else 0), done.stderr[-3000:]
    return report


def screen(page, url: str, videos: dict, subject_id: str = "") -> dict:
    """Upload the four videos, press Screen, wait for the verdict; what the page showed."""
    page.goto(url)
    page.wait_for_selector("#screen-button", timeout=60_000)
    page.locator("#subject-id textarea, #subject-id input").first.fill(subject_id)
    for expression in ("neutral", "happiness", "surprise", "anger"):
        assert "5 seconds" in page.locator(f"#prompt-{expression}").inner_text()  # one prompt per expression
        page.locator(f"#video-{expression} input[type=file]").set_input_files(str(videos[expression]))
        page.wait_for_selector(f"#video-{expression} video", state="attached", timeout=60_000)  # uploaded
    page.click("#screen-button")
    progress_seen: set[str] = set()
    deadline = time.monotonic() + 240
    while not page.locator("#verdict-box").count():
        text = page.locator("body").inner_text()
        progress_seen.update(t for t in PROGRESS_TEXTS if t in text)
        assert time.monotonic() < deadline, "no verdict within 240 s"
        time.sleep(0.1)
    page.wait_for_selector("#report-figure img", timeout=60_000)
    page.wait_for_selector("#reliability-figure img", timeout=60_000)
    verdict = page.locator("#verdict-box")
    links = page.locator("#report-files a")
    hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
    downloads = {}
    for href in hrefs:
        response = page.request.get(href if href.startswith("http") else url.rstrip("/") + href)
        downloads[href.rsplit("/", 1)[-1]] = (response.status, response.body())
    return {"text": verdict.inner_text(), "kind": verdict.get_attribute("data-verdict"), "progress": progress_seen,
            "figure_width": page.locator("#report-figure img").evaluate("img => img.naturalWidth"),
            "reliability_width": page.locator("#reliability-figure img").evaluate("img => img.naturalWidth"),
            "downloads": downloads}


def test_upload_four_videos_and_get_the_same_verdict_as_the_cli(server, screening_setup, served_model, tmp_path):
    required = os.environ.get("DFER_PD_REQUIRE_BROWSER") == "1"  # .ci/run and `make test-browser`: never skip
    try:
        from playwright import sync_api
    except ImportError:
        assert not required, "playwright is not installed (it is in the dev extra)"
        pytest.skip("playwright is not installed (it is in the dev extra)")
    if not Path(CHROMIUM).is_file():
        assert not required, f"{CHROMIUM} not found: apt-get install chromium"
        pytest.skip("Debian's chromium is not installed (apt-get install chromium; .ci/run does)")
    url, reports, videos = server
    notes = tmp_path / "anger.mp4"  # not a video: diagnose gives no verdict for it
    notes.write_text("notes about the recording, saved under a video's name\n")
    unusable = {**videos, "anger": notes}
    requested: list[str] = []
    screenshots = {"webapp.png": tmp_path / "webapp.png", "webapp-inconclusive.png": tmp_path / "webapp-inconclusive.png"}
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda request: requested.append(request.url))
        shown = screen(page, url, videos, subject_id="S-17")
        page.screenshot(path=str(screenshots["webapp.png"]), full_page=True)
        shown_unusable = screen(page, url, unusable)
        page.screenshot(path=str(screenshots["webapp-inconclusive.png"]), full_page=True)
        browser.close()
    if os.environ.get("DFER_PD_TEST_ARTIFACTS"):
        artifacts = Path(os.environ["DFER_PD_TEST_ARTIFACTS"])
        artifacts.mkdir(parents=True, exist_ok=True)
        for name, path in screenshots.items():
            shutil.copy2(path, artifacts / name)

    # The page's verdict is the CLI's, to the digit.
    web_reports = sorted(reports.glob("*/report.json"), key=lambda p: p.stat().st_mtime)
    assert len(web_reports) == 2
    web = json.loads(web_reports[0].read_text())
    cli = cli_report(screening_setup, served_model, videos, tmp_path / "cli")
    assert web["p_pd"] == cli["p_pd"] and web["screening_positive"] == cli["screening_positive"]
    assert cli["p_pd"] is not None and web["headline"] == cli["headline"] and web["headline"] in shown["text"]
    assert shown["kind"] == ("POSITIVE" if cli["screening_positive"] else "NEGATIVE"), (shown["kind"], cli["headline"])
    assert re.search(r"p\(PD\) = \d\.\d{3}", shown["text"]) and "not a diagnosis" in shown["text"]
    assert shown["figure_width"] > 0 and shown["progress"], "no progress was shown while screening"
    # Beside p(PD): the model's cross-validated accuracy and ROC AUC with intervals, and its reliability curve.
    assert "cross-validated accuracy 0.810 (95% CI 0.700-0.900), ROC AUC 0.880 (95% CI 0.800-0.950)" in shown["text"]
    assert shown["text"].index("p(PD) =") < shown["text"].index("cross-validated accuracy")
    assert shown["reliability_width"] > 0 and "What stage 1 recognises in each video" in shown["text"]
    assert {"report.zip", "report.html", "report.json", "report.png", "reliability.png"} <= set(shown["downloads"])
    assert all(status == 200 for status, _ in shown["downloads"].values())
    assert json.loads(shown["downloads"]["report.json"][1])["p_pd"] == web["p_pd"]
    assert web["subject_id"] == "S-17" and json.loads(web_reports[1].read_text())["subject_id"] == "anonymous"
    # The zip is the report whole: report.html with every image it references.
    import io
    import zipfile

    with zipfile.ZipFile(io.BytesIO(shown["downloads"]["report.zip"][1])) as archive:
        names = set(archive.namelist())
        page_html = archive.read("report.html").decode()
    assert set(re.findall(r'<img src="([^"]+)"', page_html)) | {"report.json"} <= names
    # A video that cannot be used: INCONCLUSIVE with the reason, as the CLI says it.
    cli_unusable = cli_report(screening_setup, served_model, unusable, tmp_path / "cli-unusable")
    assert "INCONCLUSIVE" in cli_unusable["headline"]
    assert shown_unusable["kind"] == "INCONCLUSIVE" and "anger video (anger.mp4): not a readable video file" in shown_unusable["text"]
    assert "Errno" not in shown_unusable["text"] and "gradio" not in shown_unusable["text"].lower()
    assert "No verdict is given" in shown_unusable["text"] and "not a diagnosis" in shown_unusable["text"]
    web_unusable = json.loads(web_reports[1].read_text())
    assert "INCONCLUSIVE" in web_unusable["headline"] and "anger video" in web_unusable["headline"]
    # The same reasons as the CLI's (the page's name the uploaded copy of the file, so compare their count).
    assert len(web_unusable.get("reasons", [])) == len(cli_unusable.get("reasons", [])) >= 1
    # Nothing left the machine: every request the page made went to the local server.
    hosts = {re.sub(r"^[a-z]+://([^/]+)/.*$", r"\1", u) for u in requested if u.startswith(("http:", "https:", "ws:"))}
    assert hosts == {url.split("/")[2]}, hosts
    assert all(path.stat().st_size > 10_000 for path in screenshots.values())
