"""One bad video never sinks a cohort: every video is checked first, all problems are listed at once (file,
manifest line, reason); then extraction stops with that list, or leaves those subjects out and records them."""

import json
import shutil

import numpy as np
import pytest

from dfer_pd.common.video import read_clip
from dfer_pd.stage1.contract import ScoringContract
from dfer_pd.stage2.extraction import UnusableVideosError, extract_intensities
from dfer_pd.stage2.cohort import read_manifest
from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule
from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.synthetic.encode import encode_mp4


@pytest.fixture
def damaged_cohort(tiny_cohort, tmp_path):
    """The tiny cohort with three unusable videos: colour bars, a photo as a video, a partly copied file."""
    root = shutil.copytree(tiny_cohort.parent, tmp_path / "cohort")
    subjects = {s.subject_id: s for s in read_manifest(root / "manifest.csv").subjects}
    bars = np.zeros((8, 32, 32, 3), np.uint8)
    for i, colour in enumerate([(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0)]):
        bars[:, :, i * 8:(i + 1) * 8] = colour
    bars[..., 2] += np.arange(8, dtype=np.uint8)[:, None, None] * 3
    encode_mp4(subjects["S002"].videos["surprise"], bars, fps=5)
    still = read_clip(subjects["S003"].videos["anger"], 1)[0]
    encode_mp4(subjects["S003"].videos["anger"], np.repeat(still, 8, axis=0), fps=5)
    frames = read_clip(subjects["S004"].videos["happiness"], 8)[0]
    noisy = np.clip(np.repeat(frames, 15, axis=0) + np.random.default_rng(0).integers(-6, 7, (120, 32, 32, 3)), 0, 255)
    whole = encode_mp4(tmp_path / "whole.mp4", noisy.astype(np.uint8), fps=5, faststart=True)
    subjects["S004"].videos["happiness"].write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])
    return root / "manifest.csv", subjects


@pytest.mark.parametrize("workers", [0, 2], ids=["in-process", "two-worker-processes"])
def test_all_unusable_videos_are_listed_at_once_then_skipped_on_request(damaged_cohort, tiny_stage1_checkpoint, tmp_path,
                                                                        workers):
    manifest, subjects = damaged_cohort
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    with pytest.raises(UnusableVideosError) as error:
        extract_intensities(PDCohortDataModule(str(manifest), batch_size=4, num_workers=workers), tiny_stage1_checkpoint,
                            contract, tmp_path / "cache", accelerator="cpu")
    message = str(error.value)
    assert "3 video(s) of 3 subject(s) cannot be used" in message and "--cohort.skip_unusable true" in message
    lines = {u.subject_id: u for u in error.value.unusable}
    assert set(lines) == {"S002", "S003", "S004"}
    for subject_id, expression, reason in (("S002", "surprise", "no face found"), ("S003", "anger", "a still image"),
                                           ("S004", "happiness", "truncated: only")):
        unusable = lines[subject_id]
        assert unusable.expression == expression and unusable.path == subjects[subject_id].videos[expression]
        assert unusable.line == subjects[subject_id].line(expression) and reason in unusable.reason
        assert f"{unusable.path} (manifest line {unusable.line}, subject {subject_id}, {expression}): " in message
    assert not list((tmp_path / "cache").rglob("*.npz"))  # nothing was scored before the list was given

    data, report = extract_intensities(PDCohortDataModule(str(manifest), batch_size=4, num_workers=workers),
                                       tiny_stage1_checkpoint, contract, tmp_path / "cache", accelerator="cpu",
                                       skip_unusable=True)
    assert data.subject_ids == [s for s in subjects if s not in {"S002", "S003", "S004"}]
    assert report.excluded_subjects == ["S002", "S003", "S004"] and report.excluded["count"] == 3
    assert {v["reason"].split(" (")[0].split(":")[0] for v in report.excluded["videos"]} == {
        "no face found", "a still image, not a video", "truncated"}


def test_train_pd_extract_records_the_left_out_subjects(damaged_cohort, tiny_stage1_checkpoint, tmp_path, capsys):
    from dfer_pd.commands.train_pd import main as stage2

    manifest, _ = damaged_cohort
    out = tmp_path / "run"
    stage2("extract", ["--cohort.manifest", str(manifest), "--extraction.checkpoint", str(tiny_stage1_checkpoint),
                       "--extraction.cache_dir", str(tmp_path / "cache"), "--extraction.accelerator", "cpu",
                       "--cohort.skip_unusable", "true", "--out_dir", str(out)])
    printed = capsys.readouterr().out
    assert "left out 3 subject(s) with unusable videos" in printed and "manifest line" in printed
    excluded = json.loads((out / "excluded_subjects.json").read_text())
    assert excluded["count"] == 3 and len(excluded["videos"]) == 3
    assert CohortIntensities.load(out / "intensities.npz").excluded == excluded
