"""Progress bars where users wait (with time left), and Lightning's log lines printed once by the CLI."""

from __future__ import annotations

import subprocess
import sys

from dfer_pd.common.progress import progress_bar, track


def test_bar_shows_description_count_and_time_left(capsys, monkeypatch):
    monkeypatch.setenv("DFER_PD_PROGRESS", "1")
    assert list(track(range(3), 3, "writing clips", "clip")) == [0, 1, 2]
    err = capsys.readouterr().err
    assert "writing clips" in err and "3/3 clips" in err and "<" in err  # elapsed<remaining
    with progress_bar(2, "fits") as bar:
        for _ in range(7):
            bar.advance(1 / 3)  # fractions that add up past the total never overflow it
        assert bar._bar.n <= 2
    monkeypatch.setenv("DFER_PD_PROGRESS", "0")
    with progress_bar(5, "silent") as bar:
        bar.advance(5)
    assert "silent" not in capsys.readouterr().err


def test_cli_prints_lightning_log_lines_once():
    script = ("import logging, sys; from dfer_pd import cli; sys.argv = ['dfer-pd', '--version']\n"
              "try:\n    cli.main(['--version'])\nexcept SystemExit:\n    pass\n"
              "import lightning.pytorch\n"
              "logging.getLogger('lightning.pytorch.utilities.rank_zero').info('GPU available: probe')\n"
              "logging.getLogger('dfer_pd.stage2').info('a project line')\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert output.count("GPU available: probe") == 1, output
    assert output.count("a project line") == 1, output


def _sleep(seconds: float) -> None:
    import time

    time.sleep(seconds)


def test_pooled_writers_advance_the_bar_as_each_chunk_finishes(monkeypatch):
    """The bar moves when the first chunk is done, not when the last one is (its time left was 33 min for 70 s)."""
    import contextlib
    import time

    from dfer_pd.synthetic import writers

    advanced = []

    class Recording:
        def advance(self, amount=1.0):
            advanced.append((time.perf_counter(), amount))

    @contextlib.contextmanager
    def recording_bar(total, description, unit="fit", enabled=True):
        yield Recording()

    monkeypatch.setattr(writers, "progress_bar", recording_bar)
    writers.write_recordings(_sleep, [0.0, 3.0], ["fast", "slow"], workers=2, description="writing", unit="clip")
    assert [amount for _, amount in advanced] == [1, 1]
    assert advanced[1][0] - advanced[0][0] > 1.5, "the fast chunk was reported only when the slow one ended"
