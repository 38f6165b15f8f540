"""Subject-level CV: folds and leakage guards, repeats, metrics, fold-local fitting, learning a real effect, chance on
no effect, the permutation test, outputs, loggers. The estimators themselves are tested in test_classifiers.py and
test_ensemble.py."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from lightning.pytorch.loggers import CSVLogger

from dfer_pd.common.loggers import finish_wandb_run
from dfer_pd.stage2.settings import CLASSIFIERS, RECURRENT_KINDS, ClassifierConfig
from dfer_pd.stage2.crossval import (
    cross_validate,
    fit_predict_fold,
    permutation_test,
    repeated_folds,
    training_seed,
    wandb_metrics_sink,
)
from dfer_pd.synthetic.intensities import synthetic_cohort
from dfer_pd.stage2.metrics import METRIC_NAMES, classification_metrics
from dfer_pd.stage2.plots import plot_intensity_boxplots, tsne_plot
from dfer_pd.stage2.splits import FoldLeakageError, subject_folds
from dfer_pd.stage2.runtime import running_on
from dfer_pd.stage2.settings import CPU, CVConfig, RuntimeSettings

FAST_ARGS = dict(hidden_size=16, max_epochs=30, lr=1e-2, patience=8, batch_size=16)
FAST_LSTM = ClassifierConfig(init_args=FAST_ARGS)
TINY_ARGS = dict(hidden_size=4, num_layers=1, max_epochs=2, batch_size=32)
TINY_LSTM = ClassifierConfig(init_args=TINY_ARGS)


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


def _sklearn_metrics(labels, p_pd, threshold=0.5):
    from sklearn import metrics as skm

    predicted = (p_pd >= threshold).astype(int)
    out = {"accuracy": skm.accuracy_score(labels, predicted)}
    for average in ("binary", "weighted"):
        out[f"precision_{average}"] = skm.precision_score(labels, predicted, average=average, zero_division=0)
        out[f"recall_{average}"] = skm.recall_score(labels, predicted, average=average, zero_division=0)
        out[f"f1_{average}"] = skm.f1_score(labels, predicted, average=average, zero_division=0)
    out["roc_auc"] = skm.roc_auc_score(labels, p_pd) if len(np.unique(labels)) == 2 else np.nan
    out["sensitivity"] = skm.recall_score(labels, predicted, pos_label=1, zero_division=0)
    out["specificity"] = skm.recall_score(labels, predicted, pos_label=0, zero_division=0)
    out["brier"] = skm.brier_score_loss(labels, np.clip(p_pd, 0, 1), labels=[0, 1])
    return out


@pytest.mark.parametrize("case", range(40))
def test_classification_metrics_are_scikit_learns(case):
    rng = np.random.default_rng(case)
    n = int(rng.integers(1, 30))
    labels = rng.integers(0, 2, n) if case % 5 else np.full(n, case % 2)  # one class only in some cases
    p_pd = rng.random(n) if case % 3 else rng.integers(0, 5, n) / 4  # tied scores, p exactly at the threshold
    if case % 7 == 0:
        p_pd = np.zeros(n)  # nothing predicted PD
    ours, theirs = classification_metrics(labels, p_pd), _sklearn_metrics(labels, p_pd)
    assert set(ours) == set(METRIC_NAMES)
    for name in METRIC_NAMES:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=0, atol=1e-12, err_msg=name)
    with pytest.raises(ValueError, match="labels must be 0"):
        classification_metrics(np.array([0, 2]), np.array([0.1, 0.9]))


def test_test_fold_never_informs_scaling_or_fitting(effect_cohort):
    folds = subject_folds(effect_cohort.labels, effect_cohort.subject_ids, 5, 0)
    train, test = folds[0]
    config = ClassifierConfig.of_kind("bc", "both")
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
    result = cross_validate(effect_cohort, FAST_LSTM, CVConfig(n_splits=5, repeats=1), out_dir=tmp_path)
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
    config = ClassifierConfig.of_kind(kind, name=kind, **(FAST_ARGS if kind in RECURRENT_KINDS else {}))
    result = cross_validate(null_cohort, config, CVConfig(n_splits=5, repeats=1))
    assert abs(result.mean["accuracy"] - 0.5) < 0.2


def test_predictions_cover_each_subject_once_per_seed(effect_cohort, tmp_path):
    cv = CVConfig(n_splits=5, repeats=1, seeds=[0, 1])
    result = cross_validate(effect_cohort, ClassifierConfig.of_kind("dt"), cv, out_dir=tmp_path, plots=False)
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


@pytest.mark.parametrize("engine", ["batched", "lightning"])
def test_loggers_per_fit_and_metrics_sink(effect_cohort, tmp_path, engine):
    calls, received = [], []

    def factory(repeat, fold, seed):
        calls.append((repeat, fold, seed))
        return CSVLogger(tmp_path / engine, name=f"fold{fold}", version=f"seed{seed}")

    config = ClassifierConfig(init_args={**TINY_ARGS, "loss": "ce"})
    with running_on(RuntimeSettings(accelerator="cpu", engine=engine)):
        result = cross_validate(effect_cohort, config, CVConfig(n_splits=3, repeats=1), logger_factory=factory,
                                metrics_sink=received.append)
    assert calls == [(0, 1, 0), (0, 2, 0), (0, 3, 0)]
    logged = pd.read_csv(tmp_path / engine / "fold2" / "seed0" / "metrics.csv")
    assert {"train/loss", "val/loss", "test/accuracy", "test/roc_auc"} <= set(logged.columns)
    # Every fit's per-epoch curves are replayed after the fits: one val/loss row per epoch trained.
    assert "val/accuracy" in logged.columns and logged["val/loss"].notna().sum() == len(result.histories) // 3
    if engine == "lightning":  # the Lightning module also records every metric on the validation split
        assert {"val/roc_auc", "val/f1_weighted"} <= set(logged.columns)
    assert sorted(k for k in received[0] if k.endswith("/accuracy")) == ["fold1/accuracy", "fold2/accuracy", "fold3/accuracy"]
    assert received[-1]["cv/accuracy_mean"] == pytest.approx(result.mean["accuracy"])
    assert "cv/f1_weighted_std" in received[-1] and "cv/accuracy_ci_low" in received[-1]


def test_wandb_runs_are_finished_between_fits(effect_cohort, monkeypatch):
    wandb = pytest.importorskip("wandb")
    from lightning.pytorch.loggers import WandbLogger

    monkeypatch.setenv("WANDB_MODE", "disabled")
    open_before = []

    def factory(repeat, fold, seed):
        open_before.append(wandb.run is not None)
        logger = WandbLogger(project="dfer-pd-test", name=f"fold{fold}")
        logger.experiment  # start the run now, as a logger that logs does
        return logger

    cross_validate(effect_cohort, TINY_LSTM, CVConfig(n_splits=2, repeats=1), logger_factory=factory)
    assert open_before == [False, False] and wandb.run is None  # each fit's run closed before the next
    assert finish_wandb_run() is False

    run = wandb.init(project="dfer-pd-test")  # sweep style: one run for the whole CV
    try:
        result = cross_validate(effect_cohort, ClassifierConfig.of_kind("bc"), CVConfig(n_splits=2, repeats=1),
                                metrics_sink=wandb_metrics_sink())
        assert run.summary["cv/accuracy_mean"] == pytest.approx(result.mean["accuracy"])
    finally:
        assert finish_wandb_run() is True


def test_each_repeat_seeds_the_networks_and_draws_new_validation_splits(effect_cohort, monkeypatch):
    """CV sets the training seed on every random_state and ``cv.split_seed + repeat`` on every network's split_seed;
    an unnamed config is named by its values."""
    from dfer_pd.stage2 import crossval

    seen, fit_pipelines = [], crossval.fit_pipelines

    def spy(pipelines, *args, **kwargs):
        seen.extend((p[-1].split_seed, p[-1].random_state) for p in pipelines)
        return fit_pipelines(pipelines, *args, **kwargs)

    monkeypatch.setattr(crossval, "fit_pipelines", spy)
    config = ClassifierConfig(init_args={**TINY_ARGS, "val_fraction": 0.3, "residual": False})
    result = cross_validate(effect_cohort, config, CVConfig(n_splits=2, repeats=2, split_seed=5, seeds=[3]))
    assert sorted(seen) == [(5, training_seed(3, 0))] * 2 + [(6, training_seed(3, 1))] * 2
    assert result.config.name == "lstm_processed" and result.config.init_args["val_fraction"] == 0.3


def test_repeats_use_different_splits_and_are_summarised_over_repeats(effect_cohort, tmp_path):
    cv = CVConfig(n_splits=5, repeats=3, split_seed=7)
    splits = repeated_folds(effect_cohort, cv)
    assert len(splits) == 3
    for folds in splits:  # each repeat is a partition of the subjects into 5 test folds
        assert sorted(np.concatenate([test for _, test in folds])) == list(range(len(effect_cohort)))
    tests = [[frozenset(test) for _, test in folds] for folds in splits]
    assert len({frozenset(t) for t in tests}) == 3, "every repeat must draw other folds"
    assert [training_seed(0, r) for r in range(3)] == [0, 1000, 2000]
    result = cross_validate(effect_cohort, ClassifierConfig.of_kind("bc"), cv, out_dir=tmp_path, plots=False)
    assert len(result.folds) == 15 and sorted(result.folds["repeat"].unique()) == [0, 1, 2]
    saved = pd.read_csv(tmp_path / "predictions.csv")
    for repeat, group in saved.groupby("repeat"):
        assert sorted(group["subject_id"]) == sorted(effect_cohort.subject_ids)
        by_fold = group.set_index("subject_id")["fold"]
        expected = {effect_cohort.subject_ids[i]: k for k, (_, test) in enumerate(splits[repeat], 1) for i in test}
        assert by_fold.to_dict() == expected  # the folds repeated_folds gives, repeat by repeat
    repeats = pd.read_csv(tmp_path / "repeats.csv")
    assert len(repeats) == 3 and {"accuracy", "oof_roc_auc", "sensitivity", "specificity"} <= set(repeats.columns)
    assert result.std_over == "repeats"
    assert result.std["accuracy"] == pytest.approx(repeats["accuracy"].std())
    assert result.mean["accuracy"] == pytest.approx(repeats["accuracy"].mean())
    low, high = result.interval["accuracy"]
    assert 0 <= low < result.mean["accuracy"] < high <= 1
    summary = result.summary()
    assert summary["cv/repeats"] == 3 and summary["cv/oof_roc_auc_mean"] == pytest.approx(repeats["oof_roc_auc"].mean())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["std_over"] == "repeats" and len(metrics["per_repeat"]) == 3


def test_permutation_test_null_and_strong_effect():
    """The chosen model (a small residual LSTM) against 100 label permutations (smallest possible p: 1/101): chance on a null cohort, p < 0.01
    on a strong effect."""
    config = ClassifierConfig(init_args=dict(hidden_size=4, num_layers=1, max_epochs=15, patience=5, lr=1e-2))
    cv = CVConfig(n_splits=3, repeats=1)
    null = permutation_test(synthetic_cohort(20, 20, pd_diagonal=0.30, seed=4), config, cv, n_permutations=100)
    strong = permutation_test(synthetic_cohort(20, 20, seed=3), config, cv, n_permutations=100)
    assert null.p_values["accuracy"] > 0.05 and null.p_values["roc_auc"] > 0.05
    assert strong.p_values["accuracy"] < 0.01 and strong.p_values["roc_auc"] < 0.01
    assert strong.observed["accuracy"] > 0.9 and abs(strong.null["accuracy"].mean() - 0.5) < 0.1
    assert len(strong.null["roc_auc"]) == 100 and strong.to_dict()["n_permutations"] == 100


def test_figure_files(tmp_path):
    cohort = synthetic_cohort(6, 6, feature_dim=5, seed=0)
    boxes = plot_intensity_boxplots(cohort.intensities, cohort.labels, tmp_path / "fig4.png")
    tsne = tsne_plot(cohort.video_features, cohort.labels, tmp_path / "tsne.png")
    tiny = tsne_plot(cohort.video_features[:1], cohort.labels[:1], tmp_path / "tsne_one.png")
    assert all(path.stat().st_size > 0 for path in (boxes, tsne, tiny))
    with pytest.raises(ValueError, match=r"\(N, 4, 4\)"):
        plot_intensity_boxplots(cohort.cosine[:, :3], cohort.labels, tmp_path / "bad.png")


def test_repeated_cv_is_deterministic_per_seed(effect_cohort):
    """Two runs of the batched CV with the same seeds give identical predictions; another training seed does not."""
    cv = CVConfig(n_splits=3, repeats=2)
    first = cross_validate(effect_cohort, TINY_LSTM, cv).predictions
    second = cross_validate(effect_cohort, TINY_LSTM, cv).predictions
    pd.testing.assert_frame_equal(first, second)
    other = cross_validate(effect_cohort, TINY_LSTM, CVConfig(n_splits=3, repeats=2, seeds=[5])).predictions
    assert not np.allclose(first["p_pd"], other["p_pd"])


def test_learning_curves_are_kept_and_charted_for_wandb(effect_cohort, tmp_path):
    pytest.importorskip("wandb")
    from dfer_pd.stage2.crossval import wandb_learning_curves

    result = cross_validate(effect_cohort, TINY_LSTM, CVConfig(n_splits=2, repeats=2), out_dir=tmp_path, plots=False)
    curves = pd.read_csv(tmp_path / "curves.csv")
    assert {"repeat", "seed", "fold", "epoch", "train/loss", "val/loss", "val/accuracy"} <= set(curves.columns)
    assert len(curves.groupby(["repeat", "fold"])) == 4 and curves["train/loss"].notna().all()
    charts = wandb_learning_curves("lstm", result.histories)
    assert set(charts) == {"curves/lstm/train/loss", "curves/lstm/val/loss"}
    assert wandb_learning_curves("dt", None) == {}


def test_fits_shared_among_worker_processes_predict_what_one_process_does(effect_cohort):
    """Table 3 rows (networks batched with others, a forest) and repeats dealt to two processes."""
    from dfer_pd.stage2.ablation import TABLE3_ROWS, run_ablation

    rows = tuple(r for r in TABLE3_ROWS if r.config.name in {"rf_processed", "gru_raw", "lstm_processed_residual"})
    base = ClassifierConfig(init_args=dict(hidden_size=8, max_epochs=6, patience=3))
    tables = {}
    for workers in (1, 2):
        with running_on(RuntimeSettings(accelerator="cpu", workers=workers)):
            tables[workers] = run_ablation(effect_cohort, CVConfig(n_splits=3, repeats=2), base_config=base, rows=rows,
                                           progress=workers == 2)
    columns = [c for c in tables[1].columns if c not in ("seconds", "fits_per_second") and "second" not in c]
    # The same fits, batched with other batch-mates: equal to float32 rounding (p(PD) measured within 6e-8).
    pd.testing.assert_frame_equal(tables[1][columns], tables[2][columns], check_exact=False, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="workers must be 0"):
        RuntimeSettings(workers=-1)


def test_one_process_per_cpu_only_where_the_network_fits_pay_for_starting_it(monkeypatch):
    from dfer_pd.stage2 import crossval

    monkeypatch.setattr(crossval, "resolve_workers", lambda workers: workers or 4)  # a 4-CPU machine

    def jobs(kind: str, count: int) -> list:
        config = ClassifierConfig.of_kind(kind)
        return [crossval.FitJob(config, 0, 0, k, np.arange(2), np.arange(2, 4)) for k in range(count)]

    per = crossval.NETWORK_FITS_PER_WORKER
    assert crossval.worker_count(jobs("dt", 200), 0) == 1  # baselines take milliseconds: never worth a process
    assert crossval.worker_count(jobs("lstm", per - 1), 0) == 1
    assert crossval.worker_count(jobs("lstm", 2 * per), 0) == 2
    assert crossval.worker_count(jobs("lstm", 100 * per) + jobs("rf", 10), 0) == 4  # one per CPU at most
    assert crossval.worker_count(jobs("dt", 3), 2) == 2  # a count given explicitly is used as given
    assert crossval.worker_count(jobs("dt", 1), 3) == 1  # but never more processes than fits


def test_intervals_on_a_perfectly_separable_cohort_do_not_collapse():
    """Every fold scores 1.0: the corrected interval alone is 1.000-1.000; the Wilson (accuracy, sensitivity)
    and Hanley-McNeil score (AUC) floors keep it open, and the hold-out's bootstrap AUC interval too."""
    from dfer_pd.stage2.crossval import evaluate_holdout
    from dfer_pd.stage2.statistics import Calibrator, corrected_t_interval

    data = synthetic_cohort(20, 20, pd_diagonal=0.10, noise=0.01, seed=2)
    forest = ClassifierConfig.of_kind("rf", "processed", name="rf")
    result = cross_validate(data, forest, CVConfig(repeats=2), progress=False)
    assert result.mean["accuracy"] == 1.0 and result.pooled["roc_auc"] == 1.0
    assert corrected_t_interval(result.fold_scores("accuracy"), *result.fold_sizes) == (1.0, 1.0)  # the collapse
    interval = result.interval
    for name, n in (("accuracy", 40), ("sensitivity", 20), ("specificity", 20), ("roc_auc", 20)):
        low, high = interval[name]
        assert high == 1.0 and 0.75 < low < 0.95, (name, low)
    assert interval["accuracy"][0] > interval["sensitivity"][0]  # 40 subjects say more than 20
    summary = result.summary()
    assert summary["cv/accuracy_ci_low"] == interval["accuracy"][0] < 1.0
    held = np.zeros(len(data), bool)
    held[np.flatnonzero(data.labels == 1)[:5]] = held[np.flatnonzero(data.labels == 0)[:5]] = True
    development, held_out = data.subset(np.flatnonzero(~held)), data.subset(np.flatnonzero(held))
    platt = Calibrator("platt", {"a": 0.5, "b": 0.0})
    report = evaluate_holdout(development, held_out, forest, CVConfig(), calibration=platt)
    assert report["metrics"]["roc_auc"] == 1.0 and report["intervals"]["roc_auc"][0] < 0.9
    assert report["intervals"]["accuracy"][0] < 0.8
    # The calibrated p(PD) the screening model would return is what is scored, with its Brier score.
    raw = np.array([p["p_pd_raw"] for p in report["predictions"]])
    calibrated = np.array([p["p_pd"] for p in report["predictions"]])
    np.testing.assert_allclose(calibrated, platt(raw))
    assert report["brier"] == pytest.approx(np.mean((calibrated - held_out.labels) ** 2))
    assert report["brier"] > report["brier_raw"]  # a = 0.5 pulls p(PD) towards 0.5
    assert report["calibration"]["method"] == "platt" and report["threshold"] == 0.5
    assert sum(report["reliability"]["count"]) == 10


def test_train_pd_logs_every_holdout_evaluation(tmp_path):
    """Each --holdout.evaluate run appends a line (time, configuration, figures) to holdout_log.jsonl."""
    from dfer_pd.stage2.settings import HoldoutConfig, StatsConfig
    from dfer_pd.stage2.workflows import Stage2Job, train_pd

    data = synthetic_cohort(15, 15, seed=6)
    job = Stage2Job(out_dir=tmp_path, classifier=ClassifierConfig.of_kind("rf", "processed", name="rf"),
                    cv=CVConfig(repeats=1, n_splits=3), runtime=CPU, stats=StatsConfig(permutations=0),
                    holdout=HoldoutConfig(fraction=0.3, seed=1, evaluate=True), plots=False, save_screening_model=False)
    first = train_pd(job, data)
    second = train_pd(dataclasses.replace(job, stats=StatsConfig(permutations=0, calibration="none")), data)
    lines = [json.loads(line) for line in (tmp_path / "holdout_log.jsonl").read_text().splitlines()]
    assert [line["evaluation"] for line in lines] == [1, 2] and second.holdout_report["log"]["evaluations"] == 2
    assert lines[0]["configuration"]["stats"]["calibration"] == "auto"
    assert lines[1]["configuration"]["stats"]["calibration"] == "none" and lines[1]["calibration"] == "none"
    assert lines[0]["calibration"] == first.calibration["method"] and lines[0]["n_held_out"] == 9
    assert all("T" in line["time"] and 0 <= line["metrics"]["accuracy"] <= 1 for line in lines)
    assert json.loads((tmp_path / "holdout.json").read_text())["log"]["evaluations"] == 2
