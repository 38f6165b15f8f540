"""The whole-cohort screening model and `dfer-pd diagnose` on four videos."""

import json
import shutil

import numpy as np
import pytest

from conftest import save_stage1_checkpoint
from dfer_pd.common.files import file_digest
from dfer_pd.stage2.crossval import ClassifierConfig, CVConfig
from dfer_pd.stage2.cohort import read_manifest
from dfer_pd.screening.diagnose import DiagnoseInputError, diagnose, find_expression_videos, write_report
from dfer_pd.stage2.features import synthetic_cohort
from dfer_pd.stage2.screening_model import ScreeningModel, ScreeningModelError, fit_screening_model

CLASSIFIER = ClassifierConfig(name="lstm", kind="lstm", features="processed", hidden_size=8, num_layers=2, max_epochs=30)


@pytest.fixture(scope="module")
def screening_folder(tmp_path_factory):
    data = synthetic_cohort(n_pd=20, n_hc=20, seed=1)
    model = fit_screening_model(data, CLASSIFIER, CVConfig(accelerator="cpu"))
    folder = model.save(tmp_path_factory.mktemp("screening") / "model")
    return folder, data, model


def test_save_load_round_trip_is_exact_and_pickle_free(screening_folder):
    folder, data, model = screening_folder
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "screening.json"]
    loaded = ScreeningModel.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(data.cosine), model.predict_proba(data.cosine))
    p_pd = loaded.predict_proba(data.cosine)
    assert ((p_pd >= 0.5) == data.labels.astype(bool)).mean() > 0.8  # it learned the group difference
    meta = json.loads((folder / "screening.json").read_text())
    assert meta["reference"]["PD"]["n"] == 20 and np.asarray(meta["reference"]["HC"]["log_intensity"]).shape == (5, 4, 4)


def test_model_trained_on_other_features_or_corrupt_is_refused(screening_folder, tmp_path):
    folder, _, _ = screening_folder
    other = shutil.copytree(folder, tmp_path / "other")
    meta = json.loads((other / "screening.json").read_text())
    meta["classifier"]["features"] = "raw"
    (other / "screening.json").write_text(json.dumps(meta))
    with pytest.raises(ScreeningModelError, match="raw"):
        ScreeningModel.load(other)
    corrupt = shutil.copytree(folder, tmp_path / "corrupt")
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ScreeningModelError, match="model.safetensors"):
        ScreeningModel.load(corrupt)
    with pytest.raises(ScreeningModelError, match="not a screening model folder"):
        ScreeningModel.load(tmp_path)


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


def test_diagnose_four_videos_writes_report(tiny_cohort, tiny_stage1_checkpoint, tmp_path):
    data = synthetic_cohort(n_pd=10, n_hc=10, seed=2)
    model = fit_screening_model(data, CLASSIFIER, CVConfig(accelerator="cpu"),
                                stage1={"checkpoint_sha256": file_digest(tiny_stage1_checkpoint)})
    folder = model.save(tmp_path / "model")
    subject = read_manifest(tiny_cohort).subjects[0]
    result = diagnose(subject.videos, tiny_stage1_checkpoint, folder, crop_faces=False)
    assert 0.0 <= result.p_pd <= 1.0 and result.cosine.shape == (4, 4)
    assert "not a diagnosis" in result.headline()
    assert set(result.quality) == set(subject.videos)
    assert all("too_short" in q["flags"] for q in result.quality.values())  # 1.6 s videos, the protocol asks 5 s
    files = write_report(result, model, tmp_path / "report")
    report = json.loads(files["json"].read_text())
    assert report["p_pd"] == pytest.approx(result.p_pd) and len(report["videos"]) == 4
    happiness = report["videos"]["happiness"]
    assert set(happiness["vs_cohort"]["features"]) == {"hv", "mean", "std", "z", "pd", "range", "d_min", "d_max"}
    assert set(happiness["vs_cohort"]["log_intensity"]["anger"]) == {"HC", "PD"}
    assert files["png"].stat().st_size > 0 and "not a diagnosis" in files["html"].read_text()
    # A screening model trained on another stage-1 checkpoint's intensities is refused.
    other = save_stage1_checkpoint(tmp_path / "other.ckpt", seed=5)
    with pytest.raises(ScreeningModelError, match="another stage-1 checkpoint"):
        diagnose(subject.videos, other, folder, crop_faces=False)
