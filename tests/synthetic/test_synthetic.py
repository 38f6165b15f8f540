"""The synthetic DFEW and PD cohort: real layouts, seeded bytes, a controllable hypomimia effect."""

from __future__ import annotations

import csv
import hashlib
import json
import re
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.stage1.datasets.dfew import DFEW_LABELS
from dfer_pd.synthetic.cohort import make_pd_cohort, sample_subject_latents
from dfer_pd.synthetic.dfew import DFEW_FRAMES_DIR, DFEW_SPLIT_DIRS, make_dfew_tree
from dfer_pd.synthetic.encode import encode_mp4
from dfer_pd.synthetic.render import (
    ExpressionParams,
    HeadPose,
    expression_params,
    render_face,
    sample_head_motion,
    sample_identity,
)

TINY_DFEW = dict(
    num_clips=20, min_frames=4, max_frames=18, size=32, other_class_fraction=0.15, short_clip_fraction=0.1
)
TINY_COHORT = dict(num_subjects=6, fps=5, seconds=1.6, size=32)


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def _decode(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _tree_sha256(root: Path) -> dict[str, str]:
    return {name: hashlib.sha256(data).hexdigest() for name, data in _tree_bytes(root).items()}


@pytest.fixture(scope="module")
def dfew_root(tmp_path_factory) -> Path:
    return make_dfew_tree(tmp_path_factory.mktemp("dfew"), seed=3, **TINY_DFEW)


@pytest.fixture(scope="module")
def cohort_manifest(tmp_path_factory) -> Path:
    return make_pd_cohort(tmp_path_factory.mktemp("cohort"), seed=5, **TINY_COHORT)


def test_dfew_test_sets_partition_clips_and_train_sets_are_complements(dfew_root):
    clips = sorted(p.name for p in (dfew_root / DFEW_FRAMES_DIR).iterdir())
    assert clips == [f"{i:05d}" for i in range(1, TINY_DFEW["num_clips"] + 1)]
    test_sets, labels = [], {}
    for k in range(1, 6):
        test_path = dfew_root / DFEW_SPLIT_DIRS["test"] / f"set_{k}.csv"
        train_path = dfew_root / DFEW_SPLIT_DIRS["train"] / f"set_{k}.csv"
        assert test_path.read_text().splitlines()[0] == "video_name,label"
        test_rows, train_rows = _read_csv(test_path), _read_csv(train_path)
        test, train = {r["video_name"] for r in test_rows}, {r["video_name"] for r in train_rows}
        assert test and not test & train and test | train == set(clips)
        for row in test_rows + train_rows:
            assert labels.setdefault(row["video_name"], row["label"]) == row["label"]
        test_sets.append(test)
    assert sum(len(s) for s in test_sets) == len(clips) and set().union(*test_sets) == set(clips)

    counts = {label: list(labels.values()).count(label) for label in set(labels.values())}
    assert set(counts) <= {str(i) for i in range(1, 8)}
    used = [counts.get(str(i), 0) for i, name in DFEW_LABELS.items() if name in EXPRESSIONS]
    assert min(used) >= 1 and max(used) - min(used) <= 1  # balanced over neutral/happy/surprise/angry
    assert sum(counts.get(str(i), 0) for i in (2, 6, 7)) == round(0.15 * TINY_DFEW["num_clips"])


def test_dfew_frames_are_numbered_from_one_and_some_clips_are_short(dfew_root):
    lengths = []
    for clip in sorted((dfew_root / DFEW_FRAMES_DIR).iterdir()):
        names = sorted(p.name for p in clip.iterdir())
        assert all(re.fullmatch(rf"{clip.name}_\d{{5}}\.jpg", n) for n in names)
        assert names == [f"{clip.name}_{i:05d}.jpg" for i in range(1, len(names) + 1)]
        lengths.append(len(names))
    assert min(lengths) >= TINY_DFEW["min_frames"] and max(lengths) <= TINY_DFEW["max_frames"]
    assert 1 <= sum(n < 16 for n in lengths) < len(lengths)
    with Image.open(dfew_root / DFEW_FRAMES_DIR / "00001" / "00001_00001.jpg") as image:
        assert image.size == (32, 32) and image.mode == "RGB"
    info = json.loads((dfew_root / "synthetic_info.json").read_text())
    assert info["seed"] == 3 and info["size"] == 32 and info["num_frames_total"] == sum(lengths)


def test_dfew_optional_mp4_holds_the_same_frames(tmp_path):
    root = make_dfew_tree(tmp_path, num_clips=5, min_frames=6, max_frames=10, size=32, write_mp4=True)
    video = _decode(root / "Clip" / "original" / "00002.mp4")
    frames = sorted((root / DFEW_FRAMES_DIR / "00002").iterdir())
    assert video.shape == (len(frames), 32, 32, 3)
    first = np.asarray(Image.open(frames[0]), dtype=float)
    assert np.abs(video[0] - first).mean() < 12  # same picture, up to lossy coding


def test_cohort_manifest_lists_four_decodable_videos_per_subject(cohort_manifest):
    rows = _read_csv(cohort_manifest)
    assert cohort_manifest.read_text().splitlines()[0] == "subject_id,label,expression,path,sex,age,updrs_3_2"
    subjects = sorted({r["subject_id"] for r in rows})
    assert subjects == [f"S{i:03d}" for i in range(1, 7)]
    for subject in subjects:
        mine = [r for r in rows if r["subject_id"] == subject]
        assert [r["expression"] for r in mine] == list(EXPRESSIONS)
        assert len({(r["label"], r["sex"], r["age"], r["updrs_3_2"]) for r in mine}) == 1
    labels = {r["subject_id"]: r["label"] for r in rows}
    assert sorted(labels.values()).count("PD") == 3 and set(labels.values()) == {"PD", "HC"}
    assert {r["sex"] for r in rows} <= {"M", "F"} and all(r["age"].isdigit() for r in rows)
    for row in rows:
        video = _decode(cohort_manifest.parent / row["path"])
        assert video.shape == (8, 32, 32, 3)  # fps 5 * 1.6 s
    truth = _read_csv(cohort_manifest.parent / "ground_truth.csv")
    assert list(truth[0]) == ["subject_id", "label", "expressivity", "onset_seconds", "severity", "updrs_3_2"]
    assert {r["subject_id"]: r["label"] for r in truth} == labels
    assert all(float(r["severity"]) == 0 and r["updrs_3_2"] in ("0", "1") for r in truth if r["label"] == "HC")
    assert all(r["updrs_3_2"] in ("1", "2", "3", "4") for r in truth if r["label"] == "PD")
    assert {r["subject_id"]: r["updrs_3_2"] for r in rows} == {r["subject_id"]: r["updrs_3_2"] for r in truth}


@pytest.mark.parametrize(
    "num_subjects, pd_fraction, expected_pd", [(5, 0.1, 1), (5, 0.9, 4), (7, 0.5, 4), (4, 0.0, 0)]
)
def test_cohort_label_counts_round_and_keep_both_classes(tmp_path, num_subjects, pd_fraction, expected_pd):
    manifest = make_pd_cohort(tmp_path, num_subjects=num_subjects, pd_fraction=pd_fraction, fps=2, seconds=1,
                              size=16, expressions=("neutral",))
    labels = [r["label"] for r in _read_csv(manifest)]
    assert labels.count("PD") == expected_pd and labels.count("HC") == num_subjects - expected_pd


def test_same_seed_gives_identical_bytes_and_another_seed_differs(tmp_path):
    dfew_args = dict(num_clips=5, min_frames=4, max_frames=8, size=16, write_mp4=True)
    cohort_args = dict(num_subjects=2, fps=4, seconds=1, size=16, expressions=("neutral", "happiness"))
    trees = {}
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        if name == "b":  # decoding in between once changed x264's output (CRF mbtree); it must not
            _decode(tmp_path / "a" / "cohort" / "S001" / "happiness.mp4")
        make_dfew_tree(tmp_path / name / "dfew", seed=seed, **dfew_args)
        make_pd_cohort(tmp_path / name / "cohort", seed=seed, **cohort_args)
        trees[name] = _tree_bytes(tmp_path / name)
    assert trees["a"] == trees["b"]
    first_frame = "dfew/Clip/clip_224x224/00001/00001_00001.jpg"
    assert trees["a"][first_frame] != trees["c"][first_frame]
    assert trees["a"]["cohort/S001/happiness.mp4"] != trees["c"]["cohort/S001/happiness.mp4"]


def test_effect_size_zero_draws_pd_and_hc_from_one_distribution():
    is_pd = np.arange(4000) % 2 == 0
    as_pd = sample_subject_latents(np.random.default_rng(0), np.ones(4000, bool), effect_size=0.0)
    as_hc = sample_subject_latents(np.random.default_rng(0), np.zeros(4000, bool), effect_size=0.0)
    np.testing.assert_array_equal(as_pd["expressivity"], as_hc["expressivity"])
    np.testing.assert_array_equal(as_pd["onset_seconds"], as_hc["onset_seconds"])
    mixed = sample_subject_latents(np.random.default_rng(1), is_pd, effect_size=0.0)
    assert abs(mixed["expressivity"][is_pd].mean() - mixed["expressivity"][~is_pd].mean()) < 0.01
    assert abs(mixed["onset_seconds"][is_pd].mean() - mixed["onset_seconds"][~is_pd].mean()) < 0.01


def test_effect_size_lowers_pd_expressivity_and_slows_onset():
    is_pd = np.arange(2000) % 2 == 0
    gaps, slowing = [], []
    for effect in (0.5, 1.0):
        latents = sample_subject_latents(np.random.default_rng(0), is_pd, effect_size=effect)
        gaps.append(latents["expressivity"][~is_pd].mean() - latents["expressivity"][is_pd].mean())
        slowing.append(latents["onset_seconds"][is_pd].mean() / latents["onset_seconds"][~is_pd].mean())
        assert np.all((latents["severity"][is_pd] >= 0.5) & (latents["severity"][is_pd] <= 1.0))
    assert 0.15 < gaps[0] < gaps[1]
    # The hypomimia is derived from the MDS-UPDRS 3.2 score: higher scores, less expressive faces.
    scores = latents["updrs_3_2"][is_pd]
    assert set(scores.tolist()) == {1, 2, 3, 4} and set(latents["updrs_3_2"][~is_pd].tolist()) == {0}
    by_score = [latents["expressivity"][is_pd][scores == s].mean() for s in (1, 2, 3, 4)]
    assert by_score == sorted(by_score, reverse=True) and by_score[0] - by_score[3] > 0.1
    assert np.all(np.diff([latents["severity"][is_pd][scores == s].max() for s in (1, 2, 3, 4)]) > 0)
    assert 1.3 < slowing[0] < slowing[1]
    with pytest.raises(ValueError, match="effect_size"):
        sample_subject_latents(np.random.default_rng(0), is_pd, effect_size=-1.0)


def test_hypomimia_only_touches_pd_videos_and_damps_their_expression(tmp_path):
    """Same seed with and without the effect: HC videos are unchanged, each PD face moves less."""
    peaks, videos = {}, {}
    for effect in (0.0, 1.0):
        manifest = make_pd_cohort(tmp_path / str(effect), num_subjects=6, effect_size=effect, fps=5, seconds=3,
                                  size=32, seed=0, expressions=("surprise",))
        for row in _read_csv(manifest):
            path = manifest.parent / row["path"]
            video = _decode(path).astype(float)
            key = (row["subject_id"], row["label"])
            videos.setdefault(key, []).append(path.read_bytes())
            peaks.setdefault(key, []).append(np.abs(video - video[0]).mean(axis=(1, 2, 3)).max())
    assert {label for _, label in peaks} == {"PD", "HC"}
    for (subject, label), (without, with_effect) in peaks.items():
        if label == "HC":
            assert videos[subject, label][0] == videos[subject, label][1]
        else:
            assert with_effect < 0.95 * without, subject


def test_expressions_change_many_pixels_compared_with_neutral():
    for seed in range(5):
        rng = np.random.default_rng(seed)
        identity, pose = sample_identity(rng), sample_head_motion(rng, 1)[0]
        frames = [
            render_face(identity, np.eye(4)[k], 32, np.random.default_rng(9), pose).astype(int) for k in range(4)
        ]
        noise_only = render_face(identity, np.zeros(4), 32, np.random.default_rng(10), pose).astype(int)
        changed = lambda a, b: (np.abs(a - b).max(axis=-1) > 40).mean()  # noqa: E731
        assert changed(frames[0], noise_only) == 0
        for k in (1, 2, 3):
            assert changed(frames[k], frames[0]) > 0.01  # at least ~10 of 1024 pixels change strongly
        assert changed(frames[1], frames[2]) > 0.01 and changed(frames[2], frames[3]) > 0.01


def test_render_face_shape_dtype_and_pose():
    rng = np.random.default_rng(0)
    identity = sample_identity(rng)
    frame = render_face(identity, [0, 0.5, 0, 0], 40, rng)
    assert frame.shape == (40, 40, 3) and frame.dtype == np.uint8
    moved = render_face(identity, [0, 0.5, 0, 0], 40, rng, HeadPose(dx=0.2, roll_degrees=10))
    assert np.abs(frame.astype(int) - moved).mean() > 5


def test_expression_params_blend_linearly_and_check_shape():
    assert expression_params(np.zeros(4)) == ExpressionParams()
    half, full = expression_params([0, 0, 0.5, 0]), expression_params([0, 0, 1, 0])
    assert full.mouth_open == pytest.approx(2 * half.mouth_open) and full.brow_raise > 0 and full.eye_open > 0
    assert expression_params([0, 1, 0, 0]).mouth_corner > 0 and expression_params([0, 0, 0, 1]).brow_inner_drop > 0
    with pytest.raises(ValueError, match="shape"):
        expression_params(np.zeros(3))
    with pytest.raises(ValueError, match="unknown"):
        expression_params([1.0], names=("contempt",))


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="num_clips"):
        make_dfew_tree(tmp_path, num_clips=3)
    with pytest.raises(ValueError, match="min_frames"):
        make_dfew_tree(tmp_path, num_clips=5, min_frames=20, max_frames=30)
    with pytest.raises(ValueError, match="even"):
        make_pd_cohort(tmp_path, num_subjects=2, size=33)
    with pytest.raises(ValueError, match="expressions"):
        make_pd_cohort(tmp_path, num_subjects=2, expressions=("joy",))
    with pytest.raises(ValueError, match="odd.mp4"):
        encode_mp4(tmp_path / "odd.mp4", np.zeros((2, 15, 16, 3), np.uint8), fps=5)


def test_phone_recordings_move_the_face_in_a_larger_frame_where_the_default_detector_finds_it(tmp_path):
    from dfer_pd.common.video import read_clip
    from dfer_pd.faces.settings import FaceCropSettings
    from dfer_pd.faces.tracking import read_face_clip
    from dfer_pd.stage2.cohort import read_manifest

    manifest = make_pd_cohort(tmp_path, num_subjects=4, fps=5, seconds=2.0, seed=7, recording="phone")
    info = json.loads((tmp_path / "synthetic_info.json").read_text())
    assert info["recording"] == "phone" and info["frame_size"] == [180, 240]
    fractions, travel = [], []
    face = FaceCropSettings(crop_faces=True)
    for subject in read_manifest(manifest).subjects:
        for path in subject.videos.values():
            frames, _ = read_clip(path, 10)
            assert frames.shape == (10, 240, 180, 3)  # portrait, like a phone held upright
            crops, report = read_face_clip(path, num_frames=10, settings=face, size=64)
            fractions.append(report.face_fraction)
            centres = (report.face_boxes[:, :2] + report.face_boxes[:, 2:]) / 2
            travel.append(np.ptp(centres, axis=0).max())
            face_side = np.median(report.face_boxes[:, 2] - report.face_boxes[:, 0])
            assert 60 < face_side < 130  # the face is part of the picture, not all of it
    assert np.mean(fractions) > 0.9 and min(fractions) >= 0.5  # dlib, the default, finds the faces
    assert np.median(travel) > 3  # and they move, so tracking and alignment have work to do


def test_dfew_workers_write_the_same_bytes_as_one_process(tmp_path):
    args = dict(TINY_DFEW, num_clips=12, write_mp4=True, seed=4)
    one = _tree_sha256(make_dfew_tree(tmp_path / "one", workers=1, **args))
    two = _tree_sha256(make_dfew_tree(tmp_path / "two", workers=2, **args))
    assert one == two and len(one) > 12 * 5  # frames, mp4s, ten split files and the info file
    assert any(name.endswith(".mp4") for name in one) and "synthetic_info.json" in one


def test_phone_cohort_workers_write_the_same_bytes_as_one_process(tmp_path):
    args = dict(num_subjects=3, fps=5, seconds=1.2, seed=6, recording="phone", expressions=("neutral", "happiness"))
    one = _tree_sha256(make_pd_cohort(tmp_path / "one", workers=1, **args).parent)
    two = _tree_sha256(make_pd_cohort(tmp_path / "two", workers=2, **args).parent)
    assert one == two and {"manifest.csv", "ground_truth.csv", "S003/happiness.mp4"} <= set(one)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_failing_clip_or_subject_is_named(tmp_path, workers):
    blocked = tmp_path / "dfew" / DFEW_FRAMES_DIR / "00003"
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where clip 00003's folder goes")
    with pytest.raises(RuntimeError, match="clip 00003 failed: FileExistsError"):
        make_dfew_tree(tmp_path / "dfew", num_clips=6, min_frames=2, max_frames=3, size=16, workers=workers)
    (tmp_path / "cohort" / "S002" / "neutral.mp4").mkdir(parents=True)  # a folder where a video goes
    with pytest.raises(RuntimeError, match="subject S002 failed"):
        make_pd_cohort(tmp_path / "cohort", num_subjects=3, fps=2, seconds=1, size=16, expressions=("neutral",),
                       workers=workers)
    assert not (tmp_path / "cohort" / "manifest.csv").exists()


def test_workers_argument_and_cli_flag(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        make_dfew_tree(tmp_path / "dfew", num_clips=5, workers=-1)
    assert not (tmp_path / "dfew").exists()
    from dfer_pd.commands.synth import add_subcommands, build_parser

    parser = build_parser()
    add_subcommands(parser)
    assert parser.parse_args(["cohort", "out"]).cohort.workers == 0  # the CLI uses every CPU by default
    assert parser.parse_args(["dfew", "out", "--workers", "3"]).dfew.workers == 3
