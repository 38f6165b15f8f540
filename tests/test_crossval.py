"""Subject-level CV: folds and leakage guards, metrics, fold-local fitting, learning a real effect, chance on no
effect, outputs, loggers. The estimators themselves are tested in test_classifiers.py."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from lightning.pytorch.loggers import CSVLogger

from dfer_pd.common.loggers import finish_wandb_run
from dfer_pd.stage2.classifiers import CLASSIFIERS, ClassifierConfig
from dfer_pd.stage2.crossval import cross_validate, fit_predict_fold, wandb_metrics_sink
from dfer_pd.synthetic.intensities import synthetic_cohort
from dfer_pd.stage2.metrics import METRIC_NAMES, classification_metrics
from dfer_pd.stage2.plots import plot_intensity_boxplots, tsne_plot
from dfer_pd.stage2.splits import CVConfig, FoldLeakageError, subject_folds

FAST_LSTM = ClassifierConfig(hidden_size=16, max_epochs=30, lr=1e-2, patience=8, batch_size=16)
TINY_LSTM = ClassifierConfig(hidden_size=4, num_layers=1, max_epochs=2, batch_size=32)


@pytest.fixture(scope="module")
def effect_cohort():
    """PD subjects show the asked expression less: diagonal cosine 0.24 vs 0.30 in HC."""
    return synthetic_cohort(50, 50, seed=3)


@pytest.fixture(scope="module")
def null_cohort():
    """Both groups drawn from the same distribution."""
    return synthetic_cohort(50, 50, pd_diagonal=0.30, seed=4)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_subject_folds_partition_subjects_without_leakage(seed):
    ids = np.repeat([f"S{i}" for i in range(30)], 2)  # two rows per subject must stay together
    labels = np.repeat(np.arange(30) % 2, 2)
    folds = subject_folds(labels, ids, n_splits=5, seed=seed)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert sorted(tested) == list(range(60))  # every row tested exactly once
    for train, test in folds:
        assert not set(ids[train]) & set(ids[test])
        assert abs(labels[test].mean() - 0.5) <= 0.2  # stratified
    other = subject_folds(labels, ids, n_splits=5, seed=seed + 10)
    assert any(not np.array_equal(a[1], b[1]) for a, b in zip(folds, other))


def test_subject_folds_reject_too_few_subjects_and_mixed_labels():
    with pytest.raises(ValueError, match="at least 5 subjects of each class"):
        subject_folds(np.array([0, 0, 0, 1, 1, 1]), [str(i) for i in range(6)], n_splits=5)
    with pytest.raises(ValueError, match="different labels"):
        subject_folds(np.array([0, 1, 0, 1]), ["a", "a", "b", "b"], n_splits=2)


def test_classification_metrics_by_hand():
    metrics = classification_metrics(np.array([1, 1, 0, 0]), np.array([0.9, 0.2, 0.1, 0.6]))
    assert metrics["accuracy"] == 0.5 and metrics["sensitivity"] == 0.5 and metrics["specificity"] == 0.5
    assert metrics["roc_auc"] == 0.75
    assert metrics["recall_weighted"] == metrics["accuracy"]
    assert np.isnan(classification_metrics(np.array([1, 1]), np.array([0.9, 0.1]))["roc_auc"])


def test_test_fold_never_informs_scaling_or_fitting(effect_cohort):
    folds = subject_folds(effect_cohort.labels, effect_cohort.subject_ids, 5, 0)
    train, test = folds[0]
    config = ClassifierConfig(kind="bc", features="both")
    before = fit_predict_fold(effect_cohort, train, test, config, seed=0)
    changed = effect_cohort.subset(np.arange(len(effect_cohort)))
    # Give one test subject the videos of a training subject of the other group.
    donor = train[effect_cohort.labels[train] != effect_cohort.labels[test[0]]][0]
    changed.cosine[test[0]] = effect_cohort.cosine[donor] * 1.5
    after = fit_predict_fold(changed, train, test, config, seed=0)
    np.testing.assert_array_equal(before[1:], after[1:])
    assert before[0] != after[0]
    with pytest.raises(FoldLeakageError, match="share rows"):
        fit_predict_fold(effect_cohort, train, np.r_[test, train[:1]], config, seed=0)


def test_neural_fold_is_repeatable_with_a_seed(effect_cohort):
    train, test = subject_folds(effect_cohort.labels, effect_cohort.subject_ids, 5, 0)[0]
    first = fit_predict_fold(effect_cohort, train, test, TINY_LSTM, seed=7)
    second = fit_predict_fold(effect_cohort, train, test, TINY_LSTM, seed=7)
    third = fit_predict_fold(effect_cohort, train, test, TINY_LSTM, seed=8)
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, third)
    assert first.shape == (len(test),) and ((0 <= first) & (first <= 1)).all()


def test_residual_lstm_learns_a_clear_group_difference(effect_cohort, tmp_path):
    result = cross_validate(effect_cohort, FAST_LSTM, CVConfig(n_splits=5), out_dir=tmp_path)
    assert result.mean["accuracy"] > 0.85
    assert result.pooled["roc_auc"] > 0.9
    for name in ("predictions.csv", "folds.csv", "metrics.json", "roc.png", "confusion_matrix.png"):
        assert (tmp_path / name).stat().st_size > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert set(saved["mean"]) == set(METRIC_NAMES) and len(saved["folds"]) == 5
    assert saved["confusion_matrix"]["counts"] == result.confusion_matrix.tolist()
    assert result.confusion_matrix.sum() == len(effect_cohort)


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_every_classifier_is_near_chance_without_an_effect(null_cohort, kind):
    config = dataclasses.replace(FAST_LSTM, kind=kind, name=kind)  # the baselines ignore the network settings
    result = cross_validate(null_cohort, config, CVConfig(n_splits=5))
    assert abs(result.mean["accuracy"] - 0.5) < 0.2


def test_predictions_cover_each_subject_once_per_seed(effect_cohort, tmp_path):
    cv = CVConfig(n_splits=5, seeds=[0, 1])
    result = cross_validate(effect_cohort, ClassifierConfig(kind="dt"), cv, out_dir=tmp_path, plots=False)
    saved = pd.read_csv(tmp_path / "predictions.csv")
    assert list(saved.columns[:5]) == ["subject_id", "fold", "seed", "label", "p_pd"]
    assert len(saved) == 2 * len(effect_cohort)
    for _, group in saved.groupby("seed"):
        assert sorted(group["subject_id"]) == sorted(effect_cohort.subject_ids)
    # The same folds for both training seeds, and labels carried correctly.
    by_seed = saved.pivot(index="subject_id", columns="seed", values="fold")
    assert (by_seed[0] == by_seed[1]).all()
    truth = dict(zip(effect_cohort.subject_ids, effect_cohort.labels))
    assert (saved["label"] == saved["subject_id"].map(truth)).all()
    assert len(pd.read_csv(tmp_path / "folds.csv")) == 10 and not (tmp_path / "roc.png").exists()
    assert len(result.folds) == 10


def test_loggers_per_fold_and_metrics_sink(effect_cohort, tmp_path):
    calls, received = [], []

    def factory(fold, seed):
        calls.append((fold, seed))
        return CSVLogger(tmp_path, name=f"fold{fold}", version=f"seed{seed}")

    config = dataclasses.replace(TINY_LSTM, loss="ce")
    result = cross_validate(effect_cohort, config, CVConfig(n_splits=3), logger_factory=factory,
                            metrics_sink=received.append)
    assert calls == [(1, 0), (2, 0), (3, 0)]
    logged = pd.read_csv(tmp_path / "fold2" / "seed0" / "metrics.csv")
    assert {"train/loss", "val/loss", "val/roc_auc", "val/f1_weighted", "test/accuracy"} <= set(logged.columns)
    assert [sorted(m)[0] for m in received[:3]] == ["fold1/accuracy", "fold2/accuracy", "fold3/accuracy"]
    assert received[-1]["cv/accuracy_mean"] == pytest.approx(result.mean["accuracy"])
    assert "cv/f1_weighted_std" in received[-1]


def test_wandb_runs_are_finished_between_folds(effect_cohort, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "disabled")
    active = []
    sink = wandb_metrics_sink()

    def recording_sink(metrics):
        active.append(wandb.run is not None)
        sink(metrics)

    cross_validate(effect_cohort, TINY_LSTM, CVConfig(n_splits=2),
                   logger_factory=lambda fold, seed: WandbLogger(project="dfer-pd-test", name=f"fold{fold}"),
                   metrics_sink=recording_sink)
    assert active == [True, True, False] and wandb.run is None  # each fold's run closed, nothing left open
    assert finish_wandb_run() is False

    run = wandb.init(project="dfer-pd-test")  # sweep style: one run for the whole CV
    try:
        result = cross_validate(effect_cohort, ClassifierConfig(kind="bc"), CVConfig(n_splits=2),
                                metrics_sink=wandb_metrics_sink())
        assert run.summary["cv/accuracy_mean"] == pytest.approx(result.mean["accuracy"])
    finally:
        assert finish_wandb_run() is True


def test_figure_files(tmp_path):
    cohort = synthetic_cohort(6, 6, feature_dim=5, seed=0)
    boxes = plot_intensity_boxplots(cohort.intensities, cohort.labels, tmp_path / "fig4.png")
    tsne = tsne_plot(cohort.video_features, cohort.labels, tmp_path / "tsne.png")
    tiny = tsne_plot(cohort.video_features[:1], cohort.labels[:1], tmp_path / "tsne_one.png")
    assert all(path.stat().st_size > 0 for path in (boxes, tsne, tiny))
    with pytest.raises(ValueError, match=r"\(N, 4, 4\)"):
        plot_intensity_boxplots(cohort.cosine[:, :3], cohort.labels, tmp_path / "bad.png")
