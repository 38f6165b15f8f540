"""Subject-level, repeated cross-validation of the stage-2 classifiers (residual LSTM/GRU and the Table 3 baselines).

A *repeat* is one complete k-fold CV on its own folds (split seed ``split_seed + repeat``); every
classifier and training seed of a repeat sees the same subjects in the same folds. Every fit is a fresh
:func:`~dfer_pd.stage2.classifiers.build_pipeline` (scaler + estimator) on its training rows only; an
estimator that selects weights does so on a validation split carved from the training fold, never on the
test fold. The residual networks of all fits (all folds, repeats, seeds, and in the ablation all rows)
train together as one batched ensemble (:mod:`dfer_pd.stage2.ensemble`); the baselines fit one by one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from lightning.pytorch.loggers import Logger

from dfer_pd.common.loggers import finish_wandb_run
from dfer_pd.common.parallel import process_context, resolve_workers, torch_threads
from dfer_pd.common.progress import progress_bar
from dfer_pd.stage2.classifiers import build_pipeline, fit_pipelines, log_history, resolve_classifier, trains_in_epochs
from dfer_pd.stage2.runtime import current_runtime, running_on
from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.stage2.metrics import CVResult, classification_metrics, confusion_counts, roc_auc
from dfer_pd.stage2.splits import FoldLeakageError, subject_folds
from dfer_pd.stage2.settings import ClassifierConfig, CVConfig, RuntimeSettings
from dfer_pd.stage2.statistics import Calibrator

Folds = list[tuple[np.ndarray, np.ndarray]]
LoggerFactory = Callable[[int, int, int], Logger | None]
"""``logger_factory(repeat, fold, seed)`` -> a Lightning logger for that fit's curves and test metrics, or None."""
MetricsSink = Callable[[dict[str, float]], None]
"""Receives ``{"fold{k}/<metric>": value}`` after the folds (``repeat{r}/``, ``seed{s}/`` prefixes when there are
several) and :meth:`CVResult.summary` at the end."""

REPEAT_SEED_STRIDE = 1000
"""Repeat r trains with seed ``seed + 1000 * r``: each repeat re-draws the initial weights, not only the folds."""


def training_seed(seed: int, repeat: int) -> int:
    """The training seed of ``seed`` in repeat ``repeat`` (repeat 0 keeps ``seed``)."""
    return int(seed) + REPEAT_SEED_STRIDE * int(repeat)


def repeated_folds(data: CohortIntensities, cv: CVConfig) -> list[Folds]:
    """The folds of every repeat: repeat r uses split seed ``cv.split_seed + r``."""
    return [subject_folds(data.labels, data.subject_ids, cv.n_splits, cv.split_seed + r) for r in range(cv.repeats)]


@dataclass
class JobOutcome:
    """What a fit leaves: P(PD) of its test rows and, for a residual network, its per-epoch curves."""

    p_pd: np.ndarray
    history: list[dict[str, float]] | None = None
    seconds: float = 0.0  # wall time of the fit (a batched network's share of its group's time)


@dataclass(frozen=True)
class FitJob:
    """One fit of a CV: the classifier, the repeat, the configured training seed, the fold (from 1) and its rows."""

    config: ClassifierConfig
    repeat: int
    seed: int
    fold: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    labels: np.ndarray | None = None  # the labels this fit sees (default: the cohort's); a permutation test's shuffled ones


def cv_jobs(config: ClassifierConfig, cv: CVConfig, splits: Sequence[Folds]) -> list[FitJob]:
    """Every (repeat, seed, fold) fit of ``config`` over ``splits`` (one fold list per repeat)."""
    return [FitJob(config, repeat, seed, fold, np.asarray(train), np.asarray(test))
            for repeat, folds in enumerate(splits)
            for seed in cv.seeds
            for fold, (train, test) in enumerate(folds, start=1)]


# A worker process costs seconds to start (it imports torch and scikit-learn) and a network fit about a
# second, so with ``workers`` 0 (one per CPU) a process is started only for this many network fits;
# baselines take milliseconds. Fewer stay in this process. A worker count given explicitly is used as given.
NETWORK_FITS_PER_WORKER = 20


def worker_count(jobs: Sequence[FitJob], workers: int) -> int:
    """Processes that share ``jobs``: ``workers`` as given, or for 0 one per CPU where the network fits pay for it."""
    count = min(resolve_workers(workers), len(jobs))
    if workers == 0:
        networks = sum(trains_in_epochs(job.config) for job in jobs)
        count = min(count, networks // NETWORK_FITS_PER_WORKER)
    return max(count, 1)


def fit_predict_jobs(
    data: CohortIntensities,
    jobs: Sequence[FitJob],
    cv: CVConfig,
    progress: Callable[[float], None] | None = None,
    logger_factory: LoggerFactory | None = None,
) -> list[JobOutcome]:
    """P(PD) of each job's test rows from a fresh pipeline fitted on its training rows; networks train batched.

    Only training rows reach a fit: the test rows never inform scaling, early stopping or best-weight
    selection. ``logger_factory`` loggers get each network's curves (``train/loss``, ``val/loss`` ...)
    and each fit's ``test/<metric>``; an active W&B run is finished after each, so fits do not merge.
    """
    runtime = current_runtime()
    if logger_factory is None and worker_count(jobs, runtime.workers) > 1:
        return _fit_predict_in_processes(data, jobs, cv, progress)
    subject_ids = np.asarray(data.subject_ids)
    inputs_by_kind: dict[str, np.ndarray] = {}
    pipelines, train_inputs, train_labels = [], [], []
    for job in jobs:
        if np.intersect1d(job.train_idx, job.test_idx).size:
            raise FoldLeakageError("train_idx and test_idx share rows")
        shared = set(subject_ids[job.train_idx]) & set(subject_ids[job.test_idx])
        if shared:
            raise FoldLeakageError(f"subjects on both sides of a fold: {sorted(shared)[:5]}")
        kind = job.config.features
        if kind not in inputs_by_kind:
            inputs_by_kind[kind] = data.inputs(kind)
        # Each repeat draws new validation splits inside its training folds too.
        pipelines.append(build_pipeline(job.config, training_seed(job.seed, job.repeat), cv.split_seed + job.repeat))
        train_inputs.append(inputs_by_kind[kind][job.train_idx])
        train_labels.append((data.labels if job.labels is None else job.labels)[job.train_idx])
    seconds = fit_pipelines(pipelines, train_inputs, train_labels, progress)
    outcomes = []
    with torch_threads(runtime.threads):
        for job, pipeline, taken in zip(jobs, pipelines, seconds):
            if list(pipeline.classes_) != [0, 1]:
                raise ValueError(f"training fold must hold both classes, got {pipeline.classes_}")
            p_pd = pipeline.predict_proba(inputs_by_kind[job.config.features][job.test_idx])[:, 1]
            outcomes.append(JobOutcome(p_pd, getattr(pipeline[-1], "history_", None) or None, taken))
    if logger_factory is not None:  # each fit's curves replayed, then its test metrics, one logger at a time
        for job, outcome in zip(jobs, outcomes):
            logger = logger_factory(job.repeat, job.fold, job.seed)
            if logger is None:
                continue
            try:
                log_history(logger, outcome.history or [])
                metrics = classification_metrics(data.labels[job.test_idx], outcome.p_pd, cv.threshold)
                logger.log_metrics({f"test/{name}": value for name, value in metrics.items()})
                logger.save()
            finally:
                finish_wandb_run()
    return outcomes


_progress_queue = None  # in a worker process: where its fits report progress to the parent


def _start_worker(progress_queue) -> None:
    global _progress_queue
    _progress_queue = progress_queue


def _fit_predict_share(data: CohortIntensities, jobs: Sequence[FitJob], cv: CVConfig,
                       runtime: RuntimeSettings) -> list[JobOutcome]:
    report = None if _progress_queue is None else _progress_queue.put
    with running_on(dataclasses.replace(runtime, workers=1)):  # a process starts outside its parent's block
        return fit_predict_jobs(data, jobs, cv, report)


def _fit_predict_in_processes(data: CohortIntensities, jobs: Sequence[FitJob], cv: CVConfig,
                              progress: Callable[[float], None] | None) -> list[JobOutcome]:
    """:func:`fit_predict_jobs` with the jobs dealt round-robin to the runtime's ``workers`` processes.

    Each share holds every kind of fit, so each process trains its networks as batched ensembles of
    its own. A network's batch-mates change only float32 rounding: p(PD) agrees with one process to
    about 1e-7, and a given number of workers repeats itself exactly (``tests/stage2/test_crossval.py``)."""
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
    from queue import Empty

    runtime = current_runtime()
    workers = worker_count(jobs, runtime.workers)
    context = process_context()
    updates = context.Queue() if progress is not None else None
    shares = [list(range(k, len(jobs), workers)) for k in range(workers)]

    def forward_progress() -> None:
        while updates is not None:
            try:
                progress(updates.get_nowait())
            except Empty:
                return

    with ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(updates,)) as pool:
        futures = [pool.submit(_fit_predict_share, data, [jobs[i] for i in share], cv, runtime) for share in shares]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=0.25, return_when=FIRST_EXCEPTION)
            forward_progress()
            for future in done:
                future.result()  # a worker's error, raised here
        forward_progress()
    outcomes: list[JobOutcome | None] = [None] * len(jobs)
    for share, future in zip(shares, futures):
        for i, outcome in zip(share, future.result()):
            outcomes[i] = outcome
    return outcomes


def fit_predict_fold(
    data: CohortIntensities,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    config: ClassifierConfig,
    seed: int,
    cv: CVConfig | None = None,
    logger: Logger | None = None,
) -> np.ndarray:
    """Fit a fresh pipeline (scaler + classifier) on ``train_idx`` and return P(PD) for ``test_idx``."""
    job = FitJob(config, 0, seed, 1, np.asarray(train_idx), np.asarray(test_idx))
    factory = None if logger is None else (lambda repeat, fold, s: logger)
    return fit_predict_jobs(data, [job], cv or CVConfig(), logger_factory=factory)[0].p_pd


def collect_result(
    data: CohortIntensities,
    config: ClassifierConfig,
    cv: CVConfig,
    jobs: Sequence[FitJob],
    outcomes: Sequence[JobOutcome],
    confidence: float = 0.95,
) -> CVResult:
    """The :class:`CVResult` of ``config``'s jobs: per-fold metrics, out-of-fold predictions, learning curves."""
    subject_ids = np.asarray(data.subject_ids)
    fold_rows, prediction_frames, curve_frames = [], [], []
    for job, outcome in zip(jobs, outcomes):
        p_pd, labels = outcome.p_pd, (data.labels if job.labels is None else job.labels)[job.test_idx]
        metrics = classification_metrics(labels, p_pd, cv.threshold)
        tn, fp, fn, tp = confusion_counts(labels, p_pd, cv.threshold).ravel()
        fold_rows.append({"repeat": job.repeat, "seed": job.seed, "fold": job.fold, "n_train": len(job.train_idx),
                          "n_test": len(job.test_idx), **metrics, "tn": tn, "fp": fp, "fn": fn, "tp": tp})
        prediction_frames.append(pd.DataFrame({
            "subject_id": subject_ids[job.test_idx], "repeat": job.repeat, "fold": job.fold, "seed": job.seed,
            "label": labels, "p_pd": p_pd, "predicted": (p_pd >= cv.threshold).astype(np.int64),
        }))
        if outcome.history:
            curve_frames.append(pd.DataFrame(outcome.history).assign(repeat=job.repeat, seed=job.seed, fold=job.fold))
    predictions_table = pd.concat(prediction_frames, ignore_index=True)
    # Column order kept from earlier versions: subject_id, fold, seed, label, p_pd, predicted, then repeat.
    predictions_table = predictions_table[["subject_id", "fold", "seed", "label", "p_pd", "predicted", "repeat"]]
    curves = None
    if curve_frames:
        curves = pd.concat(curve_frames, ignore_index=True)
        curves = curves[["repeat", "seed", "fold", *[c for c in curves.columns if c not in ("repeat", "seed", "fold")]]]
    return CVResult(config=config, cv=cv, folds=pd.DataFrame(fold_rows), predictions=predictions_table,
                    histories=curves, confidence=confidence)


def fold_metrics(result: CVResult) -> dict[str, float]:
    """``[repeat{r}/][seed{s}/]fold{k}/<metric>`` for every fit (prefixes only where there are several)."""
    out = {}
    several_seeds = result.folds["seed"].nunique() > 1
    for row in result.folds.to_dict(orient="records"):
        prefix = (f"repeat{row['repeat']}/" if result.repeats > 1 else "") + (f"seed{row['seed']}/" if several_seeds else "")
        prefix += f"fold{row['fold']}/"
        out.update({prefix + name: float(row[name]) for name in result.mean})
    return out


def cross_validate(
    data: CohortIntensities,
    config: ClassifierConfig,
    cv: CVConfig | None = None,
    out_dir: str | Path | None = None,
    logger_factory: LoggerFactory | None = None,
    metrics_sink: MetricsSink | None = None,
    splits: Sequence[Folds] | None = None,
    plots: bool = True,
    confidence: float = 0.95,
    progress: bool = True,
) -> CVResult:
    """Repeated k-fold subject-level CV of ``config``: a fresh pipeline per (repeat, training seed, fold).

    ``splits`` (one fold list per repeat) overrides :func:`repeated_folds`. ``metrics_sink`` (see
    :func:`wandb_metrics_sink`) receives every fold's metrics, then :meth:`CVResult.summary`. With
    ``out_dir``: predictions.csv, folds.csv, repeats.csv, metrics.json, curves.csv (networks) and
    (``plots``) roc.png, confusion_matrix.png. A progress bar counts the fits (repeats x seeds x folds).
    """
    cv, config = cv or CVConfig(), resolve_classifier(config)
    splits = repeated_folds(data, cv) if splits is None else splits
    jobs = cv_jobs(config, cv, splits)
    with progress_bar(len(jobs), f"{config.name}: {len(splits)} x {cv.n_splits}-fold CV", enabled=progress) as bar:
        outcomes = fit_predict_jobs(data, jobs, cv, bar, logger_factory)
    result = collect_result(data, config, cv, jobs, outcomes, confidence)
    if metrics_sink is not None:
        metrics_sink(fold_metrics(result))
        metrics_sink(result.summary())
    if out_dir is not None:
        out_dir = result.save(out_dir)
        if plots:
            from dfer_pd.stage2.plots import plot_confusion_matrix, plot_roc_curves

            plot_roc_curves(result.predictions, out_dir / "roc.png")
            plot_confusion_matrix(result.confusion_matrix, out_dir / "confusion_matrix.png")
    return result


@dataclass
class PermutationTest:
    """Accuracy and out-of-fold ROC AUC of one k-fold CV on the true labels, against the same CV on shuffled labels."""

    observed: dict[str, float]
    null: dict[str, np.ndarray]
    p_values: dict[str, float]
    n_permutations: int

    def to_dict(self) -> dict:
        return {"observed": self.observed, "p_values": self.p_values, "n_permutations": self.n_permutations,
                "null": {k: v.tolist() for k, v in self.null.items()}}


def _single_cv_scores(labels: np.ndarray, jobs: Sequence[FitJob], outcomes: Sequence[JobOutcome],
                      threshold: float) -> dict[str, float]:
    """Mean fold accuracy and the ROC AUC of all out-of-fold predictions of one k-fold CV."""
    from sklearn.metrics import roc_auc_score

    accuracy = np.mean([np.mean((o.p_pd >= threshold) == labels[j.test_idx]) for j, o in zip(jobs, outcomes)])
    index = np.concatenate([j.test_idx for j in jobs])
    p_pd = np.concatenate([o.p_pd for o in outcomes])
    return {"accuracy": float(accuracy), "roc_auc": float(roc_auc_score(labels[index], p_pd))}


def permutation_test(
    data: CohortIntensities,
    config: ClassifierConfig,
    cv: CVConfig | None = None,
    n_permutations: int = 100,
    seed: int = 0,
    progress: bool = True,
) -> PermutationTest:
    """Is the classifier better than chance? A label-permutation test of its k-fold CV accuracy and AUC.

    The statistic is one k-fold CV (split seed ``cv.split_seed``, the first training seed) scored by mean
    fold accuracy and out-of-fold ROC AUC. Each permutation shuffles the subjects' labels (seeded), draws
    folds stratified on the shuffled labels with the same split seed and runs the same CV; the p-value is
    (1 + #{permuted >= observed}) / (1 + n_permutations). All fits (the true CV and every permutation's)
    train together. The smallest possible p-value is 1 / (n_permutations + 1).
    """
    from dfer_pd.stage2.statistics import permutation_p_value

    cv, config = cv or CVConfig(), resolve_classifier(config)
    if n_permutations < 1:
        raise ValueError(f"n_permutations must be at least 1, got {n_permutations}")
    label_sets = [data.labels]
    for j in range(n_permutations):
        rng = np.random.default_rng([seed, j])
        label_sets.append(data.labels[rng.permutation(len(data))])
    jobs_per_set = []
    for labels in label_sets:
        folds = subject_folds(labels, data.subject_ids, cv.n_splits, cv.split_seed)
        jobs_per_set.append([FitJob(config, 0, cv.seeds[0], fold, np.asarray(train), np.asarray(test), labels)
                             for fold, (train, test) in enumerate(folds, start=1)])
    flat = [job for jobs in jobs_per_set for job in jobs]
    with progress_bar(len(flat), f"{config.name}: permutation test ({n_permutations} permutations)",
                      enabled=progress) as bar:
        outcomes = fit_predict_jobs(data, flat, cv, bar)
    scores, offset = [], 0
    for labels, jobs in zip(label_sets, jobs_per_set):
        scores.append(_single_cv_scores(labels, jobs, outcomes[offset:offset + len(jobs)], cv.threshold))
        offset += len(jobs)
    observed = scores[0]
    null = {name: np.array([s[name] for s in scores[1:]]) for name in observed}
    p_values = {name: permutation_p_value(observed[name], null[name]) for name in observed}
    return PermutationTest(observed, null, p_values, n_permutations)


def evaluate_holdout(
    development: CohortIntensities,
    held_out: CohortIntensities,
    config: ClassifierConfig,
    cv: CVConfig | None = None,
    confidence: float = 0.95,
    bootstrap: int = 2000,
    seed: int = 0,
    calibration: Calibrator | None = None,
    threshold: float | None = None,
) -> dict:
    """Train ``config`` once on every development subject and score the held-out subjects, once.

    What is scored is what the screening model would return: the network trained on all development
    subjects (the screening model's seed), its p(PD) mapped by ``calibration`` (learnt from the
    development CV's out-of-fold predictions; none: raw), and the verdict calibrated p(PD) >= ``threshold``
    (default ``cv.threshold``). The report holds the metrics of that rule, the Brier score and reliability
    curve of the calibrated p(PD) (and of the raw one), and the predictions.

    Intervals: Wilson for accuracy, sensitivity and specificity (proportions of held-out subjects); for the
    ROC AUC a stratified bootstrap over held-out subjects (``bootstrap`` resamples) joined with Newcombe's
    Hanley-McNeil score interval, which stays open at AUC 1 where every resample gives 1.
    """
    from dfer_pd.stage2.statistics import auc_interval, brier_score, reliability_curve, widest, wilson_interval

    cv = cv or CVConfig()
    calibration = calibration or Calibrator()
    threshold = cv.threshold if threshold is None else float(threshold)
    shared = set(development.subject_ids) & set(held_out.subject_ids)
    if shared:
        raise FoldLeakageError(f"subjects both held out and in the development set: {sorted(shared)[:5]}")
    pipeline = build_pipeline(config, cv.seeds[0], cv.split_seed)
    fit_pipelines([pipeline], [development.inputs(config.features)], [development.labels])
    with torch_threads(current_runtime().threads):
        raw = pipeline.predict_proba(held_out.inputs(config.features))[:, 1]
    p_pd = np.asarray(calibration(raw), dtype=np.float64)
    labels = held_out.labels
    metrics = classification_metrics(labels, p_pd, threshold)
    predicted = (p_pd >= threshold).astype(int)
    intervals = {}
    for name, hits, count in (("accuracy", int((predicted == labels).sum()), len(labels)),
                              ("sensitivity", int(((predicted == 1) & (labels == 1)).sum()), int((labels == 1).sum())),
                              ("specificity", int(((predicted == 0) & (labels == 0)).sum()), int((labels == 0).sum()))):
        intervals[name] = wilson_interval(hits, count, confidence)
    rng = np.random.default_rng(seed)
    positives, negatives = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    aucs = []
    for _ in range(bootstrap):
        sample = np.r_[rng.choice(positives, len(positives)), rng.choice(negatives, len(negatives))]
        aucs.append(roc_auc(labels[sample], p_pd[sample]))
    tail = (1 - confidence) / 2 * 100
    percentile = tuple(float(x) for x in np.percentile(aucs, [tail, 100 - tail])) if aucs else (np.nan, np.nan)
    intervals["roc_auc"] = widest(percentile, auc_interval(metrics["roc_auc"], len(positives), len(negatives), confidence))
    return {"n_development": len(development), "n_held_out": len(held_out),
            "held_out_subjects": list(held_out.subject_ids), "metrics": metrics,
            "intervals": {k: list(v) for k, v in intervals.items()}, "confidence": confidence,
            "calibration": calibration.to_dict(), "threshold": threshold,
            "brier": brier_score(labels, p_pd), "brier_raw": brier_score(labels, raw),
            "reliability": reliability_curve(labels, p_pd), "reliability_raw": reliability_curve(labels, raw),
            "predictions": [{"subject_id": s, "label": int(y), "p_pd_raw": float(r), "p_pd": float(p)}
                            for s, y, r, p in zip(held_out.subject_ids, labels, raw, p_pd)]}


HOLDOUT_LOG = "holdout_log.jsonl"


def log_holdout_evaluation(out_dir: str | Path, report: dict, configuration: dict) -> int:
    """Append one line to ``out_dir/holdout_log.jsonl`` (never rewritten): when the held-out subjects were
    scored, under which configuration, with what result. Returns how many evaluations the log now holds,
    so a reader sees how often the hold-out was used (each look at it spends some of its honesty)."""
    import datetime
    import json

    from dfer_pd.stage2.metrics import json_safe

    path = Path(out_dir) / HOLDOUT_LOG
    previous = sum(1 for line in path.read_text().splitlines() if line.strip()) if path.exists() else 0
    entry = {"evaluation": previous + 1, "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "configuration": configuration, "n_development": report["n_development"], "n_held_out": report["n_held_out"],
             "calibration": report.get("calibration", {}).get("method"), "threshold": report.get("threshold"),
             "metrics": report["metrics"], "intervals": report["intervals"], "brier": report.get("brier")}
    with open(path, "a") as handle:
        handle.write(json.dumps(json_safe(entry), sort_keys=True) + "\n")
    return previous + 1


def wandb_learning_curves(name: str, histories: pd.DataFrame | None) -> dict:
    """W&B line charts of every network's per-epoch ``train/loss`` and ``val/loss`` (one line per repeat and fold)."""
    import wandb

    if histories is None or not len(histories):
        return {}
    charts = {}
    for metric in ("train/loss", "val/loss"):
        xs, ys, keys = [], [], []
        for (repeat, seed, fold), curve in histories.groupby(["repeat", "seed", "fold"]):
            curve = curve.dropna(subset=[metric])
            if len(curve):
                xs.append(curve["epoch"].tolist())
                ys.append(curve[metric].tolist())
                keys.append(f"repeat {repeat} fold {fold}" + (f" seed {seed}" if histories["seed"].nunique() > 1 else ""))
        if ys:
            charts[f"curves/{name}/{metric}"] = wandb.plot.line_series(xs=xs, ys=ys, keys=keys, xname="epoch",
                                                                       title=f"{name}: {metric}")
    return charts


FOLDS_TABLE = "cv/folds"
"""The W&B table of every fit: one row per (repeat, seed, fold), a column per metric."""


def fold_table_rows(metrics: dict[str, float]) -> tuple[list[str], list[list]]:
    """``[repeat{r}/][seed{s}/]fold{k}/<metric>`` keys (:func:`fold_metrics`) as table columns and rows:
    repeat, seed, fold, then every metric (repeat and seed 0 where the keys carry none)."""
    rows: dict[tuple[int, int, int], dict[str, float]] = {}
    for key, value in metrics.items():
        *prefixes, metric = key.split("/")
        place = {"repeat": 0, "seed": 0, "fold": None}
        for prefix in prefixes:
            name = prefix.rstrip("0123456789")
            place[name] = int(prefix[len(name):])
        rows.setdefault((place["repeat"], place["seed"], place["fold"]), {})[metric] = value
    names = sorted({metric for row in rows.values() for metric in row})
    return (["repeat", "seed", "fold", *names],
            [[*where, *(row.get(name) for name in names)] for where, row in sorted(rows.items())])


def wandb_metrics_sink() -> MetricsSink:
    """A :data:`MetricsSink` for the active W&B run: the folds' metrics as one table (:data:`FOLDS_TABLE`),
    the ``cv/...`` figures (means, std, intervals, design) in the run summary only.

    No scalar per fold and no one-point chart per figure: a researcher reads the table and the summary. It
    never starts a run (so it never reaches the network by itself): with no active run the metrics are
    dropped. For a sweep, keep one run open for the whole CV, so the table and the ``cv/<metric>_mean``
    summary the sweep optimises land in the trial's run.
    """

    def sink(metrics: dict[str, float]) -> None:
        import wandb

        if wandb.run is None:
            return
        figures = {key: value for key, value in metrics.items() if key.startswith("cv/")}
        folds = {key: value for key, value in metrics.items() if not key.startswith("cv/")}
        if folds:
            columns, rows = fold_table_rows(folds)
            wandb.run.log({FOLDS_TABLE: wandb.Table(columns=columns, data=rows)})
        wandb.run.summary.update(figures)

    return sink
