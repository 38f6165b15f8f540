"""MDS-UPDRS 3.2 severity: the metrics, the regression head, the CV on synthetic cohorts and `train-pd --target severity`."""

import json

import numpy as np
import pandas as pd
import pytest

from dfer_pd.common.errors import UsageError
from dfer_pd.commands.train_pd import main as train_pd
from dfer_pd.stage2.regressors import ResidualRNNRegressor, build_regression_pipeline
from dfer_pd.stage2.runtime import running_on
from dfer_pd.stage2.settings import ClassifierConfig, CVConfig, RuntimeSettings
from dfer_pd.stage2.severity import (
    SeverityError,
    SeverityRow,
    cross_validate_severity,
    scored_subjects,
    severity_metrics,
    severity_permutation_test,
    table_rows,
)
from dfer_pd.synthetic.intensities import synthetic_cohort

SMALL = ClassifierConfig(init_args={"hidden_size": 16, "max_epochs": 40, "patience": 10})
CV = CVConfig(repeats=2)
RUNTIME = RuntimeSettings(accelerator="cpu", workers=1)  # one process: the fits are tiny
LSTM = SeverityRow("lstm_processed", "lstm", "processed")


def test_metrics_perfect_constant_and_rounded():
    true = np.array([0, 1, 2, 3, 4, 2.0])
    assert severity_metrics(true, true) == {"mae": 0.0, "spearman": 1.0, "kappa": 1.0}
    constant = severity_metrics(true, np.full(6, 2.0))
    assert np.isnan(constant["spearman"]) and constant["kappa"] == 0.0
    clipped = severity_metrics(np.array([0.0, 4.0]), np.array([-3.0, 9.0]))  # outside the scale: clipped to 0-4
    assert clipped["mae"] == 0.0 and clipped["kappa"] == 1.0
    assert severity_metrics(true, true[::-1])["spearman"] < 0


def test_regression_head_round_trips_and_learns_a_score():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 4, 6))
    y = np.clip(np.rint(2 + 1.5 * X[:, :, 0].mean(axis=1) * 2), 0, 4)
    pipeline = build_regression_pipeline("lstm", SMALL, 0).fit(X[:60], y[:60])
    estimator = pipeline[-1]
    assert isinstance(estimator, ResidualRNNRegressor) and estimator.loss == "mse"
    predicted = pipeline.predict(X[60:])
    assert severity_metrics(y[60:], predicted)["spearman"] > 0.5
    tensors, attributes = estimator.export_fitted()
    again = ResidualRNNRegressor(**estimator.get_params()).import_fitted(tensors, json.loads(json.dumps(attributes)))
    scaled = pipeline[0].transform(X[60:])
    np.testing.assert_allclose(again.predict(scaled), estimator.predict(scaled))
    with pytest.raises(AttributeError):
        estimator.predict_proba(scaled)


def test_rho_rises_with_the_effect_size():
    rho = []
    for pd_diagonal in (0.30, 0.28, 0.24):  # no, small and large hypomimia per score point
        data = synthetic_cohort(50, 40, pd_diagonal=pd_diagonal, seed=1, severity=True)
        with running_on(RUNTIME):
            rho.append(cross_validate_severity(data, SMALL, CV, rows=[LSTM])[0].summary()["severity/spearman_mean"])
    # Without hypomimia the score still follows PD vs HC only by chance; with it, rho rises with the effect.
    assert rho[0] < rho[1] < rho[2] and rho[2] > 0.8 and rho[0] < 0.4


def test_shuffled_scores_are_at_chance():
    data = synthetic_cohort(50, 40, pd_diagonal=0.24, seed=1, severity=True)
    with running_on(RUNTIME):
        true = severity_permutation_test(data, SMALL, CV, 19, row=LSTM)
    assert true["p_values"]["spearman"] == pytest.approx(0.05)  # the smallest p 19 permutations give
    data.updrs_3_2 = data.updrs_3_2[np.random.default_rng(3).permutation(len(data))]
    with running_on(RUNTIME):
        shuffled = severity_permutation_test(data, SMALL, CV, 19, row=LSTM)
    assert shuffled["p_values"]["spearman"] > 0.05 and abs(shuffled["observed"]["spearman"]) < 0.3


def test_subjects_without_a_score_are_left_out_and_too_few_refused():
    data = synthetic_cohort(10, 10, seed=2, severity=True)
    data.updrs_3_2[:4] = np.nan
    assert len(scored_subjects(data, 5)) == 16
    data.updrs_3_2[:12] = np.nan
    with pytest.raises(SeverityError, match="8 subjects have an updrs_3_2 score"):
        scored_subjects(data, 5)
    data.updrs_3_2 = None
    with pytest.raises(SeverityError, match="add an updrs_3_2 column"):
        scored_subjects(data, 5)
    with pytest.raises(SeverityError, match="no regression form"):
        table_rows(ClassifierConfig.of_kind("bc"), synthetic_cohort(10, 10, severity=True))


def test_train_pd_target_severity_end_to_end(tmp_path, capsys):
    npz = synthetic_cohort(24, 16, pd_diagonal=0.24, seed=4, severity=True).save(tmp_path / "intensities.npz")
    out = tmp_path / "run"
    common = ["--intensities", str(npz), "--classifier.init_args.hidden_size", "8",
              "--classifier.init_args.max_epochs", "10",
              "--runtime.accelerator", "cpu", "--cv.repeats", "2", "--stats.permutations", "0", "--wandb.mode", "disabled"]
    summary = train_pd("train-pd", [*common, "--out_dir", str(out), "--target", "severity",
                                    "--stats.severity_permutations", "9"])
    assert 0 <= summary["severity/mae_mean"] <= 4 and summary["severity/subjects"] == 40
    assert summary["severity/spearman_ci_low"] <= summary["severity/spearman_mean"] <= summary["severity/spearman_ci_high"]
    assert 0.1 <= summary["severity/permutation_p_spearman"] <= 1  # 9 permutations: p is at least 1 / 10
    assert "cv/accuracy_mean" in summary  # PD vs HC is reported as always
    folder = out / "severity"
    table = pd.read_csv(folder / "severity_table.csv")
    assert list(table["model"]) == ["lstm_processed", "ridge_processed", "rf_processed"]
    predictions = pd.read_csv(folder / "predictions.csv")
    assert len(predictions) == 2 * 40 and predictions["predicted"].between(0, 4).all()
    for name in ("severity_table.md", "severity_scatter.png", "permutation_test.json", "metrics.json", "folds.csv"):
        assert (folder / name).is_file(), name
    printed = capsys.readouterr().out
    assert "MDS-UPDRS 3.2 severity (lstm_processed): 2 x 5-fold CV on 40 scored subjects" in printed
    assert "Spearman rho" in printed and "permutation test (scores shuffled)" in printed
    # The screening model carries the regressor with the CV's figures (its own tests: test_screening_model.py).
    meta = json.loads((out / "screening_model" / "screening.json").read_text())
    assert (out / "screening_model" / "severity.safetensors").is_file()
    assert meta["severity"]["cv"]["mae"] == pytest.approx(summary["severity/mae_mean"])
    assert meta["severity"]["cv"]["permutation_p_spearman"] == summary["severity/permutation_p_spearman"]
    assert ("it estimates MDS-UPDRS 3.2 too (regressor fitted on every scored subject): cross-validated MAE "
            f"{summary['severity/mae_mean']:.2f}") in printed

    plain = tmp_path / "plain"
    plain_summary = train_pd("train-pd", [*common, "--cv.repeats", "1", "--out_dir", str(plain)])
    assert not (plain / "severity").exists() and not any(k.startswith("severity/") for k in plain_summary)
    assert "severity" not in json.loads((plain / "screening_model" / "screening.json").read_text())
    assert not (plain / "screening_model" / "severity.safetensors").exists()

    # Refused before any training: no CV output is written.
    unscored = synthetic_cohort(12, 12, seed=4).save(tmp_path / "unscored.npz")
    with pytest.raises(UsageError, match="^--target severity: --target severity needs MDS-UPDRS 3.2 scores"):
        train_pd("train-pd", [*common[2:], "--intensities", str(unscored), "--out_dir", str(tmp_path / "x"),
                              "--target", "severity"])
    assert not (tmp_path / "x" / "predictions.csv").exists()
