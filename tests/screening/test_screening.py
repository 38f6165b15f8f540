"""`dfer-pd diagnose` on four videos (the screening model itself: test_screening_model.py)."""

import json

import numpy as np
import pytest

from helpers import save_stage1_checkpoint, with_cv_figures
from dfer_pd.screening.diagnose import DiagnoseInputError, diagnose, find_expression_videos
from dfer_pd.screening.report import write_report
from dfer_pd.stage1.contract import ContractError, ScoringContract
from dfer_pd.stage1.quality_policy import QualityPolicy
from dfer_pd.stage2.extraction import extract_intensities
from dfer_pd.stage2.settings import ClassifierConfig
from dfer_pd.stage2.cohort import read_manifest
from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule
from dfer_pd.synthetic.intensities import synthetic_cohort
from dfer_pd.stage2.screening_model import ScreeningModel, ScreeningModelError, fit_screening_model
from dfer_pd.stage2.runtime import running_on
from dfer_pd.stage2.settings import CPU, CVConfig

CLASSIFIER = ClassifierConfig(name="lstm", features="processed",
                              init_args={"hidden_size": 8, "num_layers": 2, "max_epochs": 30})


def test_find_expression_videos_by_name_and_errors(tmp_path):
    for name in ("S1_neutral.mp4", "happy.mov", "surprise.webm", "Anger.MP4", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    videos = find_expression_videos(tmp_path)
    assert {e: p.name for e, p in videos.items()} == {
        "neutral": "S1_neutral.mp4", "happiness": "happy.mov", "surprise": "surprise.webm", "anger": "Anger.MP4"}
    (tmp_path / "Anger.MP4").unlink()
    with pytest.raises(DiagnoseInputError, match="no video for anger"):
        find_expression_videos(tmp_path)
    assert find_expression_videos(tmp_path, anger=str(tmp_path / "happy.mov"))["anger"].name == "happy.mov"
    (tmp_path / "angry_take2.mp4").write_bytes(b"x")
    (tmp_path / "anger.mp4").write_bytes(b"x")
    with pytest.raises(DiagnoseInputError, match="two videos for anger"):
        find_expression_videos(tmp_path)


@pytest.fixture(scope="module")
def scored_cohort(tiny_cohort, tiny_stage1_checkpoint, tmp_path_factory):
    """The tiny cohort scored through extraction (batches of one subject's four videos), and a screening model."""
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    data, _ = extract_intensities(PDCohortDataModule(str(tiny_cohort), batch_size=4), tiny_stage1_checkpoint,
                                  contract, tmp_path_factory.mktemp("cache"), accelerator="cpu")
    with running_on(CPU):
        model = fit_screening_model(data, CLASSIFIER, CVConfig())
    return data, model.save(tmp_path_factory.mktemp("screening") / "model"), model


def test_diagnose_scores_a_subject_exactly_as_extraction_did(tiny_cohort, tiny_stage1_checkpoint, scored_cohort):
    data, folder, model = scored_cohort
    subject = read_manifest(tiny_cohort).subjects[0]
    result = diagnose(subject.videos, tiny_stage1_checkpoint, folder)  # defaults: the model's own contract
    np.testing.assert_array_equal(result.cosine, data.cosine[0])  # bit-identical, not merely close
    assert result.p_pd == float(model.predict_proba(data.cosine[0]))
    assert result.contract == data.contract == ScreeningModel.load(folder).contract


def test_diagnose_refuses_flags_or_checkpoints_against_the_contract(tiny_cohort, scored_cohort, tiny_stage1_checkpoint,
                                                                     tmp_path):
    _, folder, _ = scored_cohort
    subject = read_manifest(tiny_cohort).subjects[0]
    with pytest.raises(ContractError, match="--crop_faces true.*has false"):
        diagnose(subject.videos, tiny_stage1_checkpoint, folder, crop_faces=True)
    other = save_stage1_checkpoint(tmp_path / "other.ckpt", seed=5)
    with pytest.raises(ContractError, match="not the stage-1 checkpoint of this scoring contract"):
        diagnose(subject.videos, other, folder)
    # A screening model trained on intensities no checkpoint made cannot say how to score videos.
    with running_on(CPU):
        bare = fit_screening_model(synthetic_cohort(n_pd=10, n_hc=10, seed=2), CLASSIFIER, CVConfig())
    with pytest.raises(ScreeningModelError, match="without a scoring contract"):
        diagnose(subject.videos, tiny_stage1_checkpoint, bare)


def test_diagnose_four_videos_writes_report(tiny_cohort, tiny_stage1_checkpoint, scored_cohort, tmp_path):
    _, folder, model = scored_cohort
    subject = read_manifest(tiny_cohort).subjects[0]
    result = diagnose(subject.videos, tiny_stage1_checkpoint, folder)
    assert 0.0 <= result.p_pd <= 1.0 and result.cosine.shape == (4, 4)
    assert "not a diagnosis" in result.headline()
    assert set(result.quality) == set(subject.videos)
    assert all("too_short" in q["flags"] for q in result.quality.values())  # 1.6 s videos, the protocol asks 5 s
    files = write_report(result, model, tmp_path / "report")
    report = json.loads(files["json"].read_text())
    assert report["p_pd"] == pytest.approx(result.p_pd) and len(report["videos"]) == 4
    assert report["scoring_contract"] == result.contract.to_dict()
    happiness = report["videos"]["happiness"]
    assert set(happiness["vs_cohort"]["features"]) == {"hv", "mean", "std", "z", "pd", "range", "d_min", "d_max"}
    assert set(happiness["vs_cohort"]["log_intensity"]["anger"]) == {"HC", "PD"}
    assert files["png"].stat().st_size > 0 and "not a diagnosis" in files["html"].read_text()


def test_report_shows_the_models_cv_figures_and_reliability(tiny_cohort, tiny_stage1_checkpoint, scored_cohort,
                                                              tmp_path):
    _, folder, model = scored_cohort
    calibrated = with_cv_figures(model)
    result = diagnose(read_manifest(tiny_cohort).subjects[0].videos, tiny_stage1_checkpoint, calibrated)
    files = write_report(result, calibrated, tmp_path / "report")
    saved = json.loads(files["json"].read_text())
    assert saved["model_performance"].startswith("cross-validated accuracy 0.810 (95% CI 0.700-0.900), ROC AUC 0.880")
    assert saved["calibration"]["method"] == "platt" and saved["calibration"]["brier_calibrated"] == calibrated.calibration_report["brier_calibrated"]
    page = files["html"].read_text()
    assert "10 x 5-fold CV" in page and "Brier score" in page and (tmp_path / "report" / "reliability.png").stat().st_size


def test_severity_estimate_beside_p_pd_with_a_verdict_only(tiny_cohort, tiny_stage1_checkpoint, scored_cohort,
                                                           tmp_path, capsys):
    """A screening model trained with severity: diagnose prints the estimated MDS-UPDRS 3.2 under p(PD), the report
    and the web page show it; an INCONCLUSIVE answer gives none."""
    from dfer_pd.commands.diagnose import main as diagnose_command
    from dfer_pd.screening.webapp import Screening, verdict_html

    data = scored_cohort[0]
    figures = {"mae": (0.61, 0.52, 0.70), "spearman": (0.78, 0.70, 0.86), "kappa": (0.64, 0.55, 0.73)}
    summary = {"severity/subjects": 10.0, "severity/repeats": 2.0, "severity/confidence": 0.95,
               **{f"severity/{m}_{k}": v for m, values in figures.items() for k, v in zip(("mean", "ci_low", "ci_high"), values)}}
    with running_on(CPU):
        model = fit_screening_model(data, CLASSIFIER, CVConfig(), severity=summary)
    folder = model.save(tmp_path / "model")
    subject = read_manifest(tiny_cohort).subjects[0]
    videos = [arg for e, path in subject.videos.items() for arg in (f"--{e}", str(path))]
    answer = diagnose_command(["--stage1", str(tiny_stage1_checkpoint), "--screening_model", str(folder),
                               "--out", str(tmp_path / "report"), *videos])
    printed = capsys.readouterr().out.splitlines()
    score = model.estimate_severity(data.cosine[0])
    line = (f"Estimated MDS-UPDRS 3.2 (facial expression, 0-4): {score:.1f}, cross-validated MAE 0.61, 95% CI "
            "0.52-0.70; a research estimate, not a clinical rating")
    assert answer["verdict"] in ("POSITIVE", "NEGATIVE") and answer["severity"] == line
    assert printed[0].startswith("p(PD) = ") and printed[1] == f"  {line}"
    report = json.loads(answer["files"]["json"].read_text())
    assert report["severity"]["score"] == score and report["severity"]["note"] == "a research estimate, not a clinical rating"
    assert report["severity"]["cross_validated"]["mae_ci"] == [0.52, 0.70]
    assert line in answer["files"]["html"].read_text()
    page = verdict_html(Screening(verdict=answer["verdict"], headline=answer["headline"], severity=answer["severity"]))
    assert f'<p id="severity">{line}</p>' in page
    # One recording given twice: INCONCLUSIVE, and no estimate anywhere.
    twice = {**subject.videos, "anger": subject.videos["neutral"]}
    result = diagnose(twice, tiny_stage1_checkpoint, folder)
    assert result.inconclusive and result.severity is None and result.severity_line() is None
    files = write_report(result, model, tmp_path / "twice")
    assert "severity" not in json.loads(files["json"].read_text()) and "MDS-UPDRS" not in files["html"].read_text()


# --------------------------------------------------------------------------- honest verdicts


def colour_bars(frames: int = 8, size: int = 32) -> np.ndarray:
    bars = np.zeros((frames, size, size, 3), np.uint8)
    for i, colour in enumerate([(192, 192, 192), (192, 192, 0), (0, 192, 192), (0, 192, 0)]):
        bars[:, :, i * size // 4:(i + 1) * size // 4] = colour
    bars[..., 2] += np.arange(frames, dtype=np.uint8)[:, None, None] * 3  # a little change: not a still image
    return bars


def test_diagnose_is_inconclusive_naming_every_unusable_video(tiny_cohort, tiny_stage1_checkpoint, scored_cohort,
                                                             tmp_path):
    from dfer_pd.common.video import read_clip
    from dfer_pd.synthetic.encode import encode_mp4

    _, folder, model = scored_cohort
    subject = read_manifest(tiny_cohort).subjects[0]
    videos = dict(subject.videos)
    videos["surprise"] = encode_mp4(tmp_path / "bars.mp4", colour_bars(), fps=5)  # no face at all
    first = read_clip(subject.videos["anger"], 1)[0]
    videos["anger"] = encode_mp4(tmp_path / "photo.mp4", np.repeat(first, 8, axis=0), fps=5)  # a photo as a video
    # A partly copied phone file: its index at the front, only the first 70% of the bytes.
    frames = read_clip(subject.videos["happiness"], 8)[0]
    noisy = np.clip(np.repeat(frames, 15, axis=0) + np.random.default_rng(0).integers(-6, 7, (120, 32, 32, 3)), 0, 255)
    whole = encode_mp4(tmp_path / "whole.mp4", noisy.astype(np.uint8), fps=5, faststart=True)
    videos["happiness"] = tmp_path / "cut.mp4"
    videos["happiness"].write_bytes(whole.read_bytes()[: int(whole.stat().st_size * 0.7)])

    result = diagnose(videos, tiny_stage1_checkpoint, folder)
    assert result.verdict == "INCONCLUSIVE" and result.inconclusive and not result.positive
    assert result.p_pd is None and result.cosine is None  # no verdict, and no number that looks like one
    reasons = "\n".join(result.reasons)
    assert "surprise video (bars.mp4): no face found" in reasons
    assert "anger video (photo.mp4): a still image" in reasons
    assert "happiness video (cut.mp4): truncated: only" in reasons
    assert not any(r.startswith("neutral") for r in result.reasons)
    assert result.headline().startswith("screening INCONCLUSIVE") and "not a diagnosis" in result.headline()
    files = write_report(result, model, tmp_path / "report")
    report = json.loads(files["json"].read_text())
    assert report["verdict"] == "INCONCLUSIVE" and report["reasons"] == result.reasons and report["p_pd"] is None
    assert "still_image" in report["flags"]["anger"] and "truncated" in report["flags"]["happiness"]
    page = files["html"].read_text()
    assert page.index("INCONCLUSIVE") < page.index("<table") and "a still image" in page[:page.index("<table")]
    assert files["png"].stat().st_size > 0
    # A lenient truncation limit accepts the cut file (the rest still fail).
    lenient = diagnose(videos, tiny_stage1_checkpoint, folder, quality=QualityPolicy(0.05))
    assert not any("truncated" in r for r in lenient.reasons) and len(lenient.reasons) == 2


