"""`dfer-pd diagnose` on four videos (the screening model itself: test_screening_model.py)."""

import json

import numpy as np
import pytest

from conftest import save_stage1_checkpoint
from dfer_pd.screening.diagnose import DiagnoseInputError, diagnose, find_expression_videos
from dfer_pd.screening.report import write_report
from dfer_pd.stage1.contract import ContractError, ScoringContract
from dfer_pd.stage1.extraction import extract_intensities
from dfer_pd.stage2.classifiers import ClassifierConfig
from dfer_pd.stage2.cohort import read_manifest
from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule
from dfer_pd.synthetic.intensities import synthetic_cohort
from dfer_pd.stage2.screening_model import ScreeningModel, ScreeningModelError, fit_screening_model
from dfer_pd.stage2.splits import CVConfig

CLASSIFIER = ClassifierConfig(name="lstm", kind="lstm", features="processed", hidden_size=8, num_layers=2, max_epochs=30)


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
    model = fit_screening_model(data, CLASSIFIER, CVConfig(accelerator="cpu"))
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
    bare = fit_screening_model(synthetic_cohort(n_pd=10, n_hc=10, seed=2), CLASSIFIER, CVConfig(accelerator="cpu"))
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
