"""Subject-level cross-validation of the stage-2 classifiers (residual LSTM/GRU and the Table 3 baselines).

Every fold fits a fresh :func:`~dfer_pd.stage2.classifiers.build_pipeline` (scaler + estimator) on its
training rows only; folds come from ``CVConfig.split_seed`` only (:mod:`dfer_pd.stage2.splits`), so every
training seed and every classifier sees the same subjects in the same folds. An estimator that selects
weights does so on a validation split carved from the training fold, never on the test fold.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from lightning.pytorch.loggers import Logger

from dfer_pd.common.loggers import finish_wandb_run
from dfer_pd.stage2.classifiers import ClassifierConfig, build_pipeline
from dfer_pd.stage2.features import CohortIntensities, sequence_inputs
from dfer_pd.stage2.metrics import CVResult, classification_metrics, confusion_counts
from dfer_pd.stage2.splits import CVConfig, FoldLeakageError, subject_folds

LoggerFactory = Callable[[int, int], Logger | None]
"""``logger_factory(fold, seed)`` -> a Lightning logger for that fold's training run, or None."""
MetricsSink = Callable[[dict[str, float]], None]
"""Receives ``{"fold{k}/<metric>": value}`` after each fold and ``{"cv/<metric>_mean" / "_std": value}`` at the end."""


def fit_predict_fold(
    data: CohortIntensities,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    config: ClassifierConfig,
    seed: int,
    cv: CVConfig | None = None,
    logger: Logger | None = None,
) -> np.ndarray:
    """Fit a fresh pipeline (scaler + classifier) on ``train_idx`` and return P(PD) for ``test_idx``.

    Only the training rows reach ``fit``: the test fold never informs scaling, early stopping or
    best-weight selection (the estimator carves its validation split from the training rows).
    """
    cv = cv or CVConfig()
    train_idx, test_idx = np.asarray(train_idx), np.asarray(test_idx)
    if np.intersect1d(train_idx, test_idx).size:
        raise FoldLeakageError("train_idx and test_idx share rows")
    labels = data.labels
    inputs = sequence_inputs(data.intensities, config.features)
    pipeline = build_pipeline(config, seed, cv)
    pipeline.fit(inputs[train_idx], labels[train_idx], classify__logger=logger)
    if list(pipeline.classes_) != [0, 1]:
        raise ValueError(f"training fold must hold both classes, got {pipeline.classes_}")
    return pipeline.predict_proba(inputs[test_idx])[:, 1]


def cross_validate(
    data: CohortIntensities,
    config: ClassifierConfig,
    cv: CVConfig | None = None,
    out_dir: str | Path | None = None,
    logger_factory: LoggerFactory | None = None,
    metrics_sink: MetricsSink | None = None,
    folds: list[tuple[np.ndarray, np.ndarray]] | None = None,
    plots: bool = True,
) -> CVResult:
    """K-fold subject-level CV: a fresh pipeline per fold and training seed; folds are numbered from 1.

    ``logger_factory(fold, seed)`` gives each fold's fit a Lightning logger (e.g. a ``WandbLogger``: the
    residual networks log their training curves to it) and receives the fold's ``test/<metric>``; after
    a fold that had one, an active W&B run is finished so folds do not merge.
    ``metrics_sink`` (see :func:`wandb_metrics_sink`) receives ``fold{k}/<metric>`` after each fold
    (``seed{s}/fold{k}/<metric>`` with several seeds) and :meth:`CVResult.summary` at the end.
    ``folds`` overrides :func:`subject_folds` (the ablation passes one set to every row). With
    ``out_dir``, writes predictions.csv, folds.csv, metrics.json and (``plots``) roc.png and
    confusion_matrix.png.
    """
    cv = cv or CVConfig()
    if folds is None:
        folds = subject_folds(data.labels, data.subject_ids, cv.n_splits, cv.split_seed)
    subject_ids = np.asarray(data.subject_ids)
    fold_rows, prediction_frames = [], []
    for seed in cv.seeds:
        for fold, (train_idx, test_idx) in enumerate(folds, start=1):
            logger = logger_factory(fold, seed) if logger_factory else None
            try:
                p_pd = fit_predict_fold(data, train_idx, test_idx, config, seed, cv, logger)
                labels = data.labels[test_idx]
                metrics = classification_metrics(labels, p_pd, cv.threshold)
                tn, fp, fn, tp = confusion_counts(labels, p_pd, cv.threshold).ravel()
                fold_rows.append({"seed": seed, "fold": fold, "n_test": len(test_idx), **metrics,
                                  "tn": tn, "fp": fp, "fn": fn, "tp": tp})
                prediction_frames.append(pd.DataFrame({
                    "subject_id": subject_ids[test_idx], "fold": fold, "seed": seed, "label": labels,
                    "p_pd": p_pd, "predicted": (p_pd >= cv.threshold).astype(np.int64),
                }))
                prefix = f"fold{fold}/" if len(cv.seeds) == 1 else f"seed{seed}/fold{fold}/"
                if metrics_sink is not None:
                    metrics_sink({prefix + name: value for name, value in metrics.items()})
                if logger is not None:
                    logger.log_metrics({f"test/{name}": value for name, value in metrics.items()})
                    logger.save()
            finally:
                if logger is not None:
                    finish_wandb_run()
    result = CVResult(config=config, cv=cv, folds=pd.DataFrame(fold_rows),
                      predictions=pd.concat(prediction_frames, ignore_index=True))
    if metrics_sink is not None:
        metrics_sink(result.summary())
    if out_dir is not None:
        out_dir = result.save(out_dir)
        if plots:
            from dfer_pd.stage2.plots import plot_confusion_matrix, plot_roc_curves

            plot_roc_curves(result.predictions, out_dir / "roc.png")
            plot_confusion_matrix(result.confusion_matrix, out_dir / "confusion_matrix.png")
    return result


def wandb_metrics_sink() -> MetricsSink:
    """A :data:`MetricsSink` that logs to the active W&B run and copies ``cv/...`` keys to its summary.

    It never starts a run (so it never reaches the network by itself): with no active run the metrics
    are dropped. For a sweep, keep one run open for the whole CV and let ``logger_factory`` return
    None, so the fold keys and the ``cv/<metric>_mean`` summary land in the trial's run.
    """

    def sink(metrics: dict[str, float]) -> None:
        import wandb

        if wandb.run is None:
            return
        wandb.run.log(dict(metrics))
        for key, value in metrics.items():
            if key.startswith("cv/"):
                wandb.run.summary[key] = value

    return sink
