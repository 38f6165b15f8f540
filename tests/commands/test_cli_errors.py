"""Every user mistake through the `dfer-pd` console script: exit code 2, one message naming the file, line or
flag and what to do, no traceback; `--debug` or DFER_PD_DEBUG=1 shows the traceback instead."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "dfer-pd"


def dfer_pd(*args, env: dict | None = None, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=300, cwd=cwd,
                          env={**os.environ, "WANDB_MODE": "disabled", **(env or {})})


def assert_user_error(done: subprocess.CompletedProcess, *wording: str) -> str:
    """Exit code 2, the wording on stderr, no traceback, and a short message."""
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr
    for text in wording:
        assert text in done.stderr, (text, done.stderr)
    assert len(done.stderr.strip().splitlines()) <= 12, done.stderr  # one message, not a log
    return done.stderr


def videos_args(videos: dict) -> list[str]:
    return [arg for expression, path in videos.items() for arg in (f"--{expression}", path)]


def test_missing_stage1_checkpoint_names_the_flag(screening_setup, tmp_path):
    _, model, videos = screening_setup
    done = dfer_pd("diagnose", "--stage1", tmp_path / "nope.ckpt", "--screening_model", model, *videos_args(videos))
    assert_user_error(done, "dfer-pd diagnose: error: --stage1", "nope.ckpt: file not found", "give the stage-1 checkpoint")


def test_corrupt_stage1_checkpoint_is_called_corrupt(screening_setup, tmp_path, monkeypatch):
    """Not "trained on another checkpoint": the file is truncated, and the message says so."""
    checkpoint, model, videos = screening_setup
    corrupt = tmp_path / "best.ckpt"
    corrupt.write_bytes(Path(checkpoint).read_bytes()[:4000])
    stderr = assert_user_error(dfer_pd("diagnose", "--stage1", corrupt, "--screening_model", model, *videos_args(videos),
                                       "--out", tmp_path / "out"),
                               f"{corrupt} is not a readable checkpoint", "corrupt, truncated", "what to do:")
    assert "not the stage-1 checkpoint of this scoring contract" not in stderr
    assert "pop from empty list" not in stderr and "Unpickler" not in stderr and "weights_only" not in stderr
    # With --debug (anywhere on the line) or DFER_PD_DEBUG=1 the traceback is shown, for a bug report.
    done = dfer_pd("diagnose", "--stage1", corrupt, "--screening_model", model, *videos_args(videos),
                   "--out", tmp_path / "out", "--debug")
    assert done.returncode == 1 and "Traceback" in done.stderr and "CheckpointError" in done.stderr
    from dfer_pd.cli import debug_requested

    assert debug_requested(["diagnose", "--debug"]) and not debug_requested(["diagnose"])
    monkeypatch.setenv("DFER_PD_DEBUG", "1")
    assert debug_requested(["diagnose"])


def test_missing_screening_model_and_missing_expression(screening_setup, tmp_path):
    checkpoint, model, videos = screening_setup
    assert_user_error(dfer_pd("diagnose", "--stage1", checkpoint, "--screening_model", tmp_path / "model",
                              *videos_args(videos)),
                      "--screening_model", "folder not found", "saved by `dfer-pd train-pd`")
    folder = tmp_path / "person"
    folder.mkdir()
    for expression in ("neutral", "happiness", "surprise"):
        (folder / f"{expression}.mp4").write_bytes(Path(videos[expression]).read_bytes())
    assert_user_error(dfer_pd("diagnose", "--stage1", checkpoint, "--screening_model", model, "--videos", folder),
                      f"no video for anger in {folder}", "--anger PATH")


def test_a_file_that_is_not_a_video_in_a_cohort(tiny_cohort, tiny_stage1_checkpoint, tmp_path):
    """Extraction checks every video first and lists the unusable ones with their manifest lines.

    (Given to `diagnose`, the same file makes the verdict INCONCLUSIVE with that reason: test_webapp_browser.py.)"""
    import csv

    with open(tiny_cohort, newline="") as handle:
        rows = list(csv.DictReader(handle))
    notes = tmp_path / "notes.mp4"
    notes.write_text("these are notes, not a video\n")
    for row in rows:
        row["path"] = str(Path(tiny_cohort).parent / row["path"])
    rows[5]["path"] = str(notes)  # manifest line 7
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert_user_error(dfer_pd("extract", "--cohort.manifest", manifest, "--extraction.checkpoint", tiny_stage1_checkpoint,
                              "--extraction.cache_dir", tmp_path / "cache", "--out_dir", tmp_path / "out"),
                      f"{manifest}: 1 video(s) of 1 subject(s) cannot be used", f"{notes} (manifest line 7",
                      "--cohort.skip_unusable true")


def test_manifest_problems_are_all_listed_with_their_lines(tiny_cohort, tiny_stage1_checkpoint, tmp_path):
    lines = Path(tiny_cohort).read_text().splitlines()
    lines[2] = lines[2].replace(",PD,", ",Parkinson,").replace(",HC,", ",Control,")  # line 3: a bad label
    header = lines[0].split(",")
    path_column = header.index("path")
    fields = lines[6].split(",")
    fields[path_column] = "missing/video.mp4"  # line 7: a missing file
    lines[6] = ",".join(fields)
    lines.append(lines[9])  # a repeated row
    manifest = Path(tiny_cohort).parent / "bad_manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    stderr = assert_user_error(
        dfer_pd("extract", "--cohort.manifest", manifest, "--extraction.checkpoint", tiny_stage1_checkpoint,
                "--out_dir", tmp_path / "out"),
        f"{manifest}: 3 problems:", "line 3: label", "line 7: video not found", f"line {len(lines)}: subject",
        "what to do: fix the manifest")
    assert not (tmp_path / "out").exists()


def test_stage2_flags_and_files(tmp_path):
    garbage = tmp_path / "intensities.npz"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    assert_user_error(dfer_pd("train-pd", "--intensities", garbage, "--out_dir", tmp_path / "a"),
                      str(garbage), "not a readable cohort .npz", "what to do: give an intensities .npz")
    assert_user_error(dfer_pd("train-pd", "--intensities", garbage, "--classifier.init_args.cell", "xgb"),
                      "--classifier: class_path dfer_pd.stage2.classifiers.ResidualRNNEstimator", "cell",
                      "'lstm', 'gru'", "Got value: xgb")
    assert_user_error(dfer_pd("extract", "--out_dir", tmp_path / "b"), "--cohort.manifest is required")
    assert_user_error(dfer_pd("train-pd", "--cv.n_splits", "five"), 'Parser key "cv.n_splits"', "dfer-pd train-pd --help")
    assert_user_error(dfer_pd("train-pd", "--config", "pd_lsmt"), "--config pd_lsmt: no such file",
                      "`dfer-pd configs` lists them")
    assert_user_error(dfer_pd("diagnose", "--stage1", "x.ckpt"), "required: --screening_model")
    assert_user_error(dfer_pd("extract", "--bogus", "1"), "unrecognized arguments: --bogus 1")


def test_a_misspelt_classifier_parameter_stops_before_extraction(tiny_cohort, tiny_stage1_checkpoint, tmp_path):
    """One line naming the misspelt parameter and the accepted ones, before any video is scored."""
    done = dfer_pd("train-pd", "--cohort.manifest", tiny_cohort, "--extraction.checkpoint", tiny_stage1_checkpoint,
                   "--out_dir", tmp_path / "out", "--classifier.init_args.hiden_size=8")
    stderr = assert_user_error(done, "dfer-pd train-pd: error: --classifier:", "'hiden_size' is not accepted",
                               "its parameters: cell, residual, hidden_size, num_layers")
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert not (tmp_path / "out").exists()


def test_describe_user_error_maps_every_project_error_class():
    """One table in cli.py names the user errors; each class it names exists, and a bug is not one."""
    import importlib

    from dfer_pd.common.errors import USER_ERRORS, describe_user_error

    for module, names in USER_ERRORS.items():
        loaded = importlib.import_module(module)
        for name in names:
            error = getattr(loaded, name)
            assert issubclass(error, Exception), name
            try:
                instance = error(f"x.bin: something wrong with {name}")
            except TypeError:  # an error built from structured arguments (UnusableVideosError)
                instance = Exception.__new__(error)
                instance.args = (f"x.bin: something wrong with {name}",)
            message = describe_user_error(instance)
            assert message is not None and message.startswith(f"x.bin: something wrong with {name}"), (name, message)
    from dfer_pd.faces.tracking import NoFaceError

    assert "record the face frontally" in describe_user_error(NoFaceError("v.mp4: a face in 1 of 16 frames"))
    assert describe_user_error(FileNotFoundError(2, "No such file or directory", "a/b.csv")) == "a/b.csv: No such file or directory"
    assert describe_user_error(KeyError("bug")) is None and describe_user_error(ZeroDivisionError()) is None
