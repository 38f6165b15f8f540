"""The whole-cohort screening model: the fitted pipeline saved as safetensors + JSON, loaded bit-identical."""

import json
import shutil
import sys

import numpy as np
import pytest
from safetensors.torch import load_file

from dfer_pd.stage2.classifiers import build_pipeline
from dfer_pd.stage2.settings import RNN_CLASS_PATH, ClassifierConfig
from dfer_pd.stage2.features import sequence_inputs
from dfer_pd.synthetic.intensities import synthetic_cohort
from dfer_pd.stage2.screening_model import ScreeningModel, ScreeningModelError, fit_screening_model
from dfer_pd.stage2.runtime import running_on
from dfer_pd.stage2.settings import CPU, CVConfig

CLASSIFIER = ClassifierConfig(name="lstm", features="processed", init_args={"hidden_size": 8, "num_layers": 2, "max_epochs": 30})
RUNTIME_KEYS = {"accelerator", "deterministic", "engine", "num_threads"}  # how a network runs: never stored


@pytest.fixture(scope="module")
def screening_folder(tmp_path_factory):
    data = synthetic_cohort(n_pd=20, n_hc=20, seed=1)
    with running_on(CPU):
        model = fit_screening_model(data, CLASSIFIER, CVConfig())
    folder = model.save(tmp_path_factory.mktemp("screening") / "model")
    return folder, data, model


def test_save_load_round_trip_is_exact_and_pickle_free(screening_folder):
    folder, data, model = screening_folder
    assert sorted(p.name for p in folder.iterdir()) == ["model.safetensors", "screening.json", "typicality.safetensors"]
    loaded = ScreeningModel.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(data.cosine), model.predict_proba(data.cosine))
    p_pd = loaded.predict_proba(data.cosine)
    assert ((p_pd >= 0.5) == data.labels.astype(bool)).mean() > 0.8  # it learned the group difference
    meta = json.loads((folder / "screening.json").read_text())
    assert meta["reference"]["PD"]["n"] == 20 and np.asarray(meta["reference"]["HC"]["log_intensity"]).shape == (5, 4, 4)


def test_loaded_pipeline_is_bit_identical_to_the_fitted_one(screening_folder):
    folder, data, model = screening_folder
    loaded = ScreeningModel.load(folder)
    assert [name for name, _ in loaded.pipeline.steps] == ["scale", "classify"]
    assert loaded.pipeline[-1].get_params() == model.pipeline[-1].get_params()
    rng = np.random.default_rng(0)
    inputs = sequence_inputs(np.exp(rng.uniform(0, 60, size=(64, 4, 4))), "processed")  # beyond the cohort's range
    inputs = np.concatenate([inputs, sequence_inputs(data.intensities, "processed")])
    np.testing.assert_array_equal(loaded.pipeline.predict_proba(inputs), model.pipeline.predict_proba(inputs))
    np.testing.assert_array_equal(loaded.pipeline[0].transform(inputs), model.pipeline[0].transform(inputs))
    assert loaded.predict_proba(data.cosine[3]) == model.predict_proba(data.cosine)[3]  # one subject's (4, 4)
    # Weights in safetensors, scaler statistics and estimator parameters in JSON; nothing else.
    meta = json.loads((folder / "screening.json").read_text())
    assert meta["estimator"]["params"]["hidden_size"] == 8 and meta["estimator"]["fitted"]["classes"] == [0, 1]
    assert not RUNTIME_KEYS & set(meta["estimator"]["params"])
    assert meta["version"] == 3 and meta["classifier"] == {
        "name": "lstm", "features": "processed", "class_path": RNN_CLASS_PATH,
        "init_args": {"hidden_size": 8, "num_layers": 2, "max_epochs": 30}}
    assert len(meta["scaler"]["mean"]) == meta["input_size"] == 8
    tensors = load_file(str(folder / "model.safetensors"))
    assert set(tensors) == set(model.pipeline[-1].network_.state_dict())


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


def test_old_unknown_or_mismatched_metadata_is_refused(screening_folder, tmp_path):
    folder, _, _ = screening_folder

    def edited(name, change):
        copy = shutil.copytree(folder, tmp_path / name)
        meta = json.loads((copy / "screening.json").read_text())
        change(meta)
        (copy / "screening.json").write_text(json.dumps(meta))
        return copy

    with pytest.raises(ScreeningModelError, match="v1: re-run `dfer-pd train-pd`"):
        ScreeningModel.load(edited("v1", lambda meta: meta.update(version=1)))
    with pytest.raises(ScreeningModelError, match="v2: re-run `dfer-pd train-pd`"):  # the classifier by kind
        ScreeningModel.load(edited("v2", lambda meta: meta.update(version=2)))
    with pytest.raises(ScreeningModelError, match="hidden_size"):  # init_args are checked against the signature
        ScreeningModel.load(edited("args", lambda meta: meta["classifier"]["init_args"].update(hidden_size="wide")))
    with pytest.raises(ScreeningModelError, match="exec"):  # only the estimator's own parameters can be set
        ScreeningModel.load(edited("param", lambda meta: meta["estimator"]["params"].update(exec="rm -rf /")))
    with pytest.raises(ScreeningModelError, match="size mismatch"):
        ScreeningModel.load(edited("width", lambda meta: meta["estimator"]["params"].update(hidden_size=16)))


@pytest.mark.parametrize("class_path", ["os.system", "planted_module.Estimator", "sklearn.svm.SVC",
                                        "dfer_pd.stage2.classifiers.FlatClassifier"])
def test_a_classifier_other_than_the_residual_network_is_refused_before_import(screening_folder, tmp_path,
                                                                                monkeypatch, class_path):
    """Loading a model file never imports or builds a class it names: only the residual LSTM/GRU is accepted."""
    folder, _, _ = screening_folder
    planted = tmp_path / "planted_module.py"  # would leave a mark if it were ever imported
    planted.write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\nclass Estimator: pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr("os.system", lambda *args: pytest.fail("os.system was called"))
    monkeypatch.setattr("dfer_pd.stage2.screening_model.build_pipeline",
                        lambda *args, **kwargs: pytest.fail("a pipeline was built"))
    copy = shutil.copytree(folder, tmp_path / "model")
    meta = json.loads((copy / "screening.json").read_text())
    meta["classifier"].update(class_path=class_path, init_args={"command": "touch pwned"} if class_path == "os.system" else {})
    (copy / "screening.json").write_text(json.dumps(meta))
    with pytest.raises(ScreeningModelError, match=rf"'{class_path}' is not one a screening model stores \({RNN_CLASS_PATH}\)"):
        ScreeningModel.load(copy)
    assert not (tmp_path / "imported").exists() and "planted_module" not in sys.modules


@pytest.mark.parametrize("kind", ["dt", "bc", "rf", "svm"])
def test_baselines_are_refused_before_training(kind):
    data = synthetic_cohort(n_pd=6, n_hc=6, seed=1)
    classifier = ClassifierConfig.of_kind(kind)
    with pytest.raises(ScreeningModelError, match=rf"'{kind}' classifier has no pickle-free format.*\['lstm', 'gru'\]"):
        fit_screening_model(data, classifier, CVConfig())
    fitted = build_pipeline(classifier, seed=0).fit(sequence_inputs(data.intensities, "processed"), data.labels)
    with pytest.raises(ScreeningModelError, match="no pickle-free format"):
        ScreeningModel(classifier, fitted, tau=data.tau).save("never-written")


def test_calibration_is_saved_as_numbers_and_applied_after_loading(tmp_path):
    """Out-of-fold predictions made overconfident on purpose: the calibrator learnt from them lowers the
    (cross-fitted) Brier score, travels in screening.json and maps p(PD) and the threshold after loading."""
    import pandas as pd

    from dfer_pd.stage2.screening_model import calibration_from_cv
    from dfer_pd.stage2.statistics import Calibrator

    rng = np.random.default_rng(1)
    risk = rng.uniform(0.05, 0.95, size=600)
    labels = (rng.uniform(size=600) < risk).astype(int)
    overconfident = 1 / (1 + np.exp(-4 * np.log(risk / (1 - risk))))
    predictions = pd.DataFrame({"subject_id": [f"S{i % 200}" for i in range(600)], "label": labels, "p_pd": overconfident})
    calibrator, report = calibration_from_cv(predictions, "platt")
    assert report["brier_calibrated"] < report["brier_raw"] - 0.02 and report["n_subjects"] == 200
    data = synthetic_cohort(n_pd=12, n_hc=12, seed=1)
    with running_on(CPU):
        model = fit_screening_model(data, CLASSIFIER, CVConfig(), calibration=calibrator,
                                    calibration_report=report)
    assert model.threshold == report["threshold"] == 0.5  # one decision scale: calibrated p(PD) >= 0.5
    folder = model.save(tmp_path / "model")
    meta = json.loads((folder / "screening.json").read_text())
    assert meta["calibration"]["method"] == "platt" and set(meta["calibration"]["params"]) == {"a", "b"}
    loaded = ScreeningModel.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(data.cosine), model.predict_proba(data.cosine))
    np.testing.assert_allclose(loaded.predict_proba(data.cosine), calibrator(loaded.predict_proba(data.cosine, calibrated=False)))
    raw = loaded.predict_proba(data.cosine, calibrated=False)
    positive = loaded.predict_proba(data.cosine) >= loaded.threshold
    np.testing.assert_array_equal(positive, raw >= report["raw_threshold"])  # the raw p(PD) the report states
    # A file from before calibration existed loads as uncalibrated.
    del meta["calibration"], meta["calibration_report"]
    (folder / "screening.json").write_text(json.dumps(meta))
    assert ScreeningModel.load(folder).calibration == Calibrator("none")
    meta["calibration"] = {"method": "platt", "params": {}}
    (folder / "screening.json").write_text(json.dumps(meta))
    with pytest.raises(ScreeningModelError, match="not a platt, isotonic or none calibration"):
        ScreeningModel.load(folder)


def _verdicts(model, data):
    """Each subject's verdict, printed p(PD) and printed threshold, as `diagnose` prints them."""
    p_pd = model.predict_proba(data.cosine)
    return p_pd >= model.threshold, np.array([float(f"{p:.3f}") for p in p_pd]), float(f"{model.threshold:.2f}")


@pytest.mark.parametrize("cohort", ["permuted", "strong"])
def test_the_verdict_never_contradicts_the_printed_p(cohort):
    """Out-of-fold p(PD) on a label-permuted cohort (inverted: p falls with PD) and on a strong one (separated):
    the deployed calibration never inverts p(PD), a subject called POSITIVE has printed p(PD) at or above the
    printed threshold (0.50, a probability), and raw p 0.8 is never printed as a tiny p(PD) and called POSITIVE."""
    import pandas as pd

    from dfer_pd.stage2.screening_model import calibration_from_cv, describe_calibration

    rng = np.random.default_rng(4)
    labels = np.repeat(rng.integers(0, 2, 150), 2)
    if cohort == "permuted":
        p_pd = np.clip(np.where(labels == 1, 0.42, 0.58) + 0.15 * rng.standard_normal(300), 0.01, 0.99)
    else:
        p_pd = np.where(labels == 1, rng.uniform(0.9, 0.999, 300), rng.uniform(0.001, 0.1, 300))
    predictions = pd.DataFrame({"subject_id": [f"S{i // 2}" for i in range(300)], "label": labels, "p_pd": p_pd})
    calibrator, report = calibration_from_cv(predictions, "auto")
    assert report["requested"] == "auto" and report["method"] == calibrator.method
    assert report["brier_calibrated"] == pytest.approx(min(report["brier_candidates"].values()))
    if cohort == "permuted":
        assert report["platt_slope"] < 0 and "not positive" in report["note"] and calibrator.method != "platt"
    else:
        assert 0 < report["platt_slope"] < 20 and report["decision"]["accuracy"] == 1.0
    grid = np.linspace(0.001, 0.999, 999)
    assert (np.diff(calibrator(grid)) >= 0).all()  # never inverts
    line = describe_calibration(report)
    assert line.startswith(f"p(PD) calibration: {calibrator.method}, chosen by cross-fitted Brier score") and "0.50" in line
    data = synthetic_cohort(n_pd=12, n_hc=12, seed=1)
    with running_on(CPU):
        model = fit_screening_model(data, CLASSIFIER, CVConfig(), calibration=calibrator,
                                    calibration_report=report)
    positive, printed_p, printed_threshold = _verdicts(model, data)
    assert model.threshold == printed_threshold == 0.5
    np.testing.assert_array_equal(positive, printed_p >= printed_threshold)
    if calibrator(0.8) < 0.5:
        assert not calibrator(0.8) >= model.threshold
    assert (calibrator(0.8) >= model.threshold) == (calibrator(0.8) >= 0.5)


# --------------------------------------------------------------------------- MDS-UPDRS 3.2 (train-pd --target severity)

SEVERITY_SUMMARY = {"severity/subjects": 40.0, "severity/repeats": 2.0, "severity/confidence": 0.95,
                    "severity/permutation_p_spearman": 0.025,
                    **{f"severity/{metric}_{key}": value
                       for metric, values in {"mae": (0.61, 0.52, 0.70), "spearman": (0.78, 0.70, 0.86),
                                              "kappa": (0.64, 0.55, 0.73)}.items()
                       for key, value in zip(("mean", "ci_low", "ci_high"), values)}}


@pytest.fixture(scope="module")
def severity_folder(tmp_path_factory):
    data = synthetic_cohort(n_pd=20, n_hc=20, seed=1, severity=True)
    data.updrs_3_2[:3] = np.nan  # unscored subjects: in the classifier, not in the regressor
    with running_on(CPU):
        model = fit_screening_model(data, CLASSIFIER, CVConfig(), severity=SEVERITY_SUMMARY)
    return model.save(tmp_path_factory.mktemp("severity") / "model"), data, model


def test_severity_regressor_round_trips_without_pickle(severity_folder):
    folder, data, model = severity_folder
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.safetensors", "screening.json", "severity.safetensors", "typicality.safetensors"]
    loaded = ScreeningModel.load(folder)
    scores = np.array([model.estimate_severity(c) for c in data.cosine])
    np.testing.assert_array_equal([loaded.estimate_severity(c) for c in data.cosine], scores)
    np.testing.assert_array_equal(loaded.predict_proba(data.cosine), model.predict_proba(data.cosine))
    assert scores.min() >= 0 and scores.max() <= 4
    scored = ~np.isnan(data.updrs_3_2)
    assert np.corrcoef(scores[scored], data.updrs_3_2[scored])[0, 1] > 0.6  # it learned the score
    meta = json.loads((folder / "screening.json").read_text())["severity"]
    assert meta["config"]["class_path"] == RNN_CLASS_PATH and meta["config"]["init_args"]["hidden_size"] == 8
    assert meta["estimator"]["params"]["hidden_size"] == 8 and not RUNTIME_KEYS & set(meta["estimator"]["params"])
    assert meta["estimator"]["fitted"]["n_features_in"] == meta["input_size"] == len(meta["scaler"]["mean"]) == 8
    values = data.updrs_3_2[scored]  # target scaling from the 37 scored subjects only
    assert meta["target_scaling"] == pytest.approx({"mean": values.mean(), "scale": values.std()})
    assert meta["cv"] == {"subjects": 40, "repeats": 2, "n_splits": 5, "confidence": 0.95, "mae": 0.61,
                          "mae_ci": [0.52, 0.70], "spearman": 0.78, "spearman_ci": [0.70, 0.86], "kappa": 0.64,
                          "kappa_ci": [0.55, 0.73], "permutation_p_spearman": 0.025}
    line = loaded.severity.describe(scores[0])
    assert line == (f"Estimated MDS-UPDRS 3.2 (facial expression, 0-4): {scores[0]:.1f}, cross-validated MAE 0.61, "
                    "95% CI 0.52-0.70; a research estimate, not a clinical rating")
    assert loaded.severity.performance() == ("cross-validated MAE 0.61 (95% CI 0.52-0.70), Spearman rho 0.78 "
                                             "(95% CI 0.70-0.86); 2 x 5-fold CV on 40 scored subjects")


def test_mismatched_or_missing_severity_files_are_refused(severity_folder, screening_folder, tmp_path):
    folder, _, _ = severity_folder

    def edited(name, change):
        copy = shutil.copytree(folder, tmp_path / name)
        meta = json.loads((copy / "screening.json").read_text())
        change(meta["severity"])
        (copy / "screening.json").write_text(json.dumps(meta))
        return copy

    with pytest.raises(ScreeningModelError, match="(?s)severity.safetensors.*size mismatch"):
        ScreeningModel.load(edited("width", lambda s: s["estimator"]["params"].update(hidden_size=16)))
    with pytest.raises(ScreeningModelError, match="'raw' features have 4"):
        ScreeningModel.load(edited("features", lambda s: s["config"].update(features="raw")))
    rf = ClassifierConfig.of_kind("rf")
    with pytest.raises(ScreeningModelError, match="is not one a screening model stores"):
        ScreeningModel.load(edited("kind", lambda s: s["config"].update(class_path=rf.class_path, init_args=rf.init_args)))
    with pytest.raises(ScreeningModelError, match="positive scale"):
        ScreeningModel.load(edited("scale", lambda s: s["target_scaling"].update(scale=0)))
    with pytest.raises(ScreeningModelError, match="cross-validated figures"):
        ScreeningModel.load(edited("figures", lambda s: s["cv"].pop("mae")))
    missing = shutil.copytree(folder, tmp_path / "missing")
    (missing / "severity.safetensors").unlink()
    with pytest.raises(ScreeningModelError, match="severity regressor's weights cannot be read.*--target severity"):
        ScreeningModel.load(missing)
    # Without severity nothing changes: no key, no file, and an earlier run's weights in the folder are removed.
    plain, _, plain_model = screening_folder
    assert "severity" not in json.loads((plain / "screening.json").read_text())
    assert ScreeningModel.load(plain).severity is None and plain_model.estimate_severity(np.ones((4, 4))) is None
    shutil.copy(folder / "severity.safetensors", missing / "severity.safetensors")
    plain_model.save(missing)
    assert not (missing / "severity.safetensors").exists() and ScreeningModel.load(missing).severity is None
