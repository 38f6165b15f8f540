"""No verdict for input unlike the training cohort, and none refused for the weak expression the tool exists to
find: one recording given twice, a face the cohort never resembled, every problem of a video named with what
to do, exit codes a script can read, and the same verdict for the same videos re-encoded or rotated."""

import dataclasses
import json
from fractions import Fraction

import av
import numpy as np
import pytest

from dfer_pd.synthetic.photos import photo_video
from dfer_pd.cli import main as cli
from dfer_pd.common.video import read_frames
from dfer_pd.screening.diagnose import EXIT_INCONCLUSIVE, diagnose
from dfer_pd.stage2.cohort import read_manifest
from dfer_pd.stage2.typicality import fit_typicality


def reencode(source, target, crf: int = 18, rotation: int | None = None):
    """``source``'s frames as H.264 at ``crf``; with ``rotation`` the frames are stored turned and tagged with
    that display rotation, so that they read back upright (as a phone stores a portrait clip)."""
    with av.open(str(source)) as container:
        count = container.streams.video[0].frames or sum(1 for _ in container.decode(video=0))
        rate = container.streams.video[0].average_rate
    frames = read_frames(source, list(range(count)))
    stored = np.rot90(frames, k=-1, axes=(1, 2)) if rotation else frames
    with av.open(str(target), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(rate).limit_denominator(1001), options={"crf": str(crf)})
        stream.height, stream.width, stream.pix_fmt = stored.shape[1], stored.shape[2], "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in stored:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())
    return target


def remux(source, target):
    """The same coded frames in another container (new bytes, the same decoded frames)."""
    with av.open(str(source)) as inp, av.open(str(target), mode="w", format="matroska") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    return target


@pytest.fixture(scope="module")
def subject(tiny_cohort):
    return read_manifest(tiny_cohort).subjects[0]


def test_one_recording_given_for_two_expressions_is_refused_by_name(screening_setup, subject, tmp_path):
    checkpoint, model, _ = screening_setup
    copies = dict(subject.videos, anger=subject.videos["happiness"])  # the same file twice
    result = diagnose(copies, checkpoint, model)
    assert result.verdict == "INCONCLUSIVE" and result.p_pd is None
    assert any("the happiness and anger videos" in r and "identical file content" in r for r in result.reasons)
    assert "same_recording" in result.quality["anger"]["flags"] and "record each expression as its own video" \
        in result.headline()
    # Other bytes, the same decoded frames (remuxed into another container): still one recording.
    remuxed = dict(subject.videos, anger=remux(subject.videos["happiness"], tmp_path / "happiness_copy.mkv"))
    assert any("identical decoded frames" in r for r in diagnose(remuxed, checkpoint, model).reasons)


def test_a_person_unlike_the_training_cohort_gets_no_verdict_naming_the_video(screening_setup, tiny_cohort, subject):
    checkpoint, model_folder, _ = screening_setup
    from dfer_pd.stage2.screening_model import ScreeningModel

    model = ScreeningModel.load(model_folder)
    assert model.typicality.feature == "video_features" and model.gate_report["HC"]["n"] == 5
    assert diagnose(subject.videos, checkpoint, model).verdict in ("POSITIVE", "NEGATIVE")
    # A cohort whose happiness videos looked nothing like this person's: the check names that video.
    labels = read_manifest(tiny_cohort).labels  # the cohort's subjects in the model's order
    elsewhere = model.typicality.reference.copy()
    rng = np.random.default_rng(0)
    elsewhere[:, 1] = rng.normal(size=elsewhere.shape[-1]) + 0.05 * rng.normal(size=elsewhere[:, 1].shape)
    unlike = dataclasses.replace(model, typicality=fit_typicality(elsewhere, labels))
    result = diagnose(subject.videos, checkpoint, unlike)
    assert result.verdict == "INCONCLUSIVE" and result.typicality["atypical_videos"] == ["happiness"]
    assert "do not look like the training cohort's" in result.reasons[-1] and "happiness" in result.reasons[-1]
    assert "atypical" in result.quality["happiness"]["flags"] and "outside what the model was trained on" in result.headline()


def test_real_faces_are_checked_and_every_video_says_what_stage_1_recognised(screening_setup, tmp_path):
    """A real face (scikit-image's astronaut, animated by warping) goes through the whole gate. The tiny untrained
    stage 1 of the tests maps it among the synthetic cohort (the demo's trained one does not: docs/screening.md),
    so here the check runs and reports; each video carries the recognised expression and its probability."""
    checkpoint, model, _ = screening_setup
    motions = dict(neutral="nod", happiness="turn", surprise="zoom", anger="tilt")
    videos = {e: photo_video(tmp_path / f"{e}.mp4", "astronaut", m) for e, m in motions.items()}
    result = diagnose(videos, checkpoint, model)
    assert set(result.typicality["scores"]) == set(motions) and result.typicality["threshold"] > 0
    for quality in result.quality.values():
        assert quality["recognised_expression"] in motions and 0.25 <= quality["recognised_probability"] <= 1


def test_cli_exit_code_and_json_tell_a_verdict_from_inconclusive(screening_setup, subject, tmp_path, capsys):
    checkpoint, model, _ = screening_setup
    base = ["diagnose", "--stage1", str(checkpoint), "--screening_model", str(model), "--json", "true"]
    args = [a for e, path in subject.videos.items() for a in (f"--{e}", str(path))]
    assert cli([*base, *args, "--out", str(tmp_path / "ok"), "--subject_id", "P-017"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["subject_id"] == "P-017"
    assert report["verdict"] in ("POSITIVE", "NEGATIVE") and set(report["recognised"]) == set(subject.videos)
    twice = [*args[:-1], str(subject.videos["neutral"])]  # the anger video is the neutral one
    assert cli([*base, *twice, "--out", str(tmp_path / "twice")]) == EXIT_INCONCLUSIVE
    report = json.loads(capsys.readouterr().out)
    assert report["verdict"] == "INCONCLUSIVE" and "record each expression as its own video" in report["advice"]
    assert report["gate"]["PD"]["n"] == 5


def test_the_same_videos_reencoded_or_rotated_keep_their_verdict(screening_setup, subject, tmp_path):
    checkpoint, model, _ = screening_setup
    first = diagnose(subject.videos, checkpoint, model)
    for variant, options in (("crf18", {}), ("rotated", {"rotation": 90})):
        if options and not hasattr(av.video.stream.VideoStream, "set_display_rotation"):
            continue
        copies = {e: reencode(p, tmp_path / f"{variant}_{e}.mp4", **options) for e, p in subject.videos.items()}
        again = diagnose(copies, checkpoint, model)
        assert again.verdict == first.verdict, (variant, again.reasons)
        assert abs(again.p_pd - first.p_pd) < 0.01, variant
