"""MDS-UPDRS item 3.2 (facial expression, 0-4) from the same features: ``dfer-pd train-pd --target severity``.

On the subjects whose manifest row gives a score, the regression form of the classifier
(:mod:`dfer_pd.stage2.regressors`) runs through the same repeated subject-level folds as PD vs HC (the folds of
:func:`~dfer_pd.stage2.crossval.repeated_folds` on those subjects, stratified by PD/HC; plain shuffled folds when
one group is too small), with the same fold-local scaling, validation splits and training seeds. Each test fold
is scored by the mean absolute error, Spearman's rho and the quadratic-weighted kappa of the predictions rounded
to the 0-4 scale (predictions are clipped to 0-4 first); figures are the mean over repeats with the corrected
resampled t interval of the fold scores (:func:`~dfer_pd.stage2.statistics.corrected_t_interval`). A permutation
test shuffles the scores among the subjects, keeps the folds, and compares the out-of-fold rho of one k-fold CV
with its null. Table 3-style rows compare feature kinds (Eq. 4, kinematics, both) and two baselines.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import cohen_kappa_score
from sklearn.model_selection import KFold

from dfer_pd.common.files import atomic_write_json
from dfer_pd.common.progress import progress_bar
from dfer_pd.stage2.classifiers import fit_pipelines
from dfer_pd.stage2.crossval import training_seed
from dfer_pd.stage2.features import KINEMATIC_KINDS, CohortIntensities
from dfer_pd.stage2.regressors import build_regression_pipeline, regressor_kind
from dfer_pd.stage2.settings import REGRESSOR_KINDS, ClassifierConfig, CVConfig
from dfer_pd.stage2.splits import subject_folds
from dfer_pd.stage2.statistics import corrected_t_interval, permutation_p_value

SCORES = np.arange(5)
"""The MDS-UPDRS 3.2 scale: 0 normal, 1 slight, 2 mild, 3 moderate, 4 severe."""
SEVERITY_METRICS: tuple[str, ...] = ("mae", "spearman", "kappa")
BOUNDS = {"mae": (0.0, 4.0), "spearman": (-1.0, 1.0), "kappa": (-1.0, 1.0)}
BASELINES: tuple[str, ...] = ("ridge", "rf")
"""The scikit-learn regressors of the severity table, on the model's features."""


class SeverityError(ValueError):
    """The cohort cannot support the severity analysis (too few scored subjects, a kind without a regression form)."""


def severity_metrics(true: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, Spearman's rho (NaN when either side is constant) and quadratic-weighted kappa of the rounded predictions."""
    true, predicted = np.asarray(true, dtype=np.float64), np.clip(np.asarray(predicted, dtype=np.float64), 0, 4)
    constant = np.ptp(true) == 0 or np.ptp(predicted) == 0
    rho = math.nan if constant else float(spearmanr(true, predicted)[0])
    rounded = np.rint(predicted).astype(np.int64)
    kappa = float(cohen_kappa_score(true.astype(np.int64), rounded, weights="quadratic", labels=SCORES))
    return {"mae": float(np.mean(np.abs(predicted - true))), "spearman": rho,
            "kappa": kappa if math.isfinite(kappa) else math.nan}


def scored_subjects(data: CohortIntensities, n_splits: int) -> CohortIntensities:
    """The subjects with an MDS-UPDRS 3.2 score; refused when there are too few for ``n_splits`` folds."""
    if data.updrs_3_2 is None:
        raise SeverityError("--target severity needs MDS-UPDRS 3.2 scores: add an updrs_3_2 column (0-4) to the "
                            "manifest and extract again")
    known = np.flatnonzero(~np.isnan(data.updrs_3_2))
    scored = data.subset(known)
    if len(scored) < 2 * n_splits or len(np.unique(scored.updrs_3_2)) < 2:
        raise SeverityError(f"{len(scored)} subjects have an updrs_3_2 score ({len(np.unique(scored.updrs_3_2))} "
                            f"distinct); {n_splits}-fold CV of severity needs at least {2 * n_splits} and two scores")
    return scored


def severity_folds(data: CohortIntensities, cv: CVConfig) -> list[list[tuple[np.ndarray, np.ndarray]]]:
    """The folds of every repeat: PD vs HC's folds on these subjects, or shuffled k-fold when a group is too small."""
    splits = []
    for repeat in range(cv.repeats):
        try:
            splits.append(subject_folds(data.labels, data.subject_ids, cv.n_splits, cv.split_seed + repeat))
        except ValueError:  # e.g. only PD subjects are scored
            splitter = KFold(cv.n_splits, shuffle=True, random_state=cv.split_seed + repeat)
            splits.append(list(splitter.split(np.zeros(len(data)))))
    return splits


@dataclass(frozen=True)
class SeverityRow:
    """One model of the severity table: a regressor kind on a feature kind."""

    name: str
    kind: str
    features: str


def table_rows(config: ClassifierConfig, data: CohortIntensities) -> list[SeverityRow]:
    """The model on its own features first, then on every other feature kind (Eq. 4, kinematics, both, when the
    cohort has kinematics), then the baselines on the model's features."""
    model = regressor_kind(config)
    if model not in REGRESSOR_KINDS:
        raise SeverityError(f"the '{model}' classifier has no regression form; use one of {REGRESSOR_KINDS}")
    kinds = [config.features] + [k for k in ("processed", *KINEMATIC_KINDS) if k != config.features]
    if data.kinematics is None:
        kinds = [k for k in kinds if k not in KINEMATIC_KINDS]
    rows = [SeverityRow(f"{model}_{kind}", model, kind) for kind in kinds]
    return rows + [SeverityRow(f"{kind}_{config.features}", kind, config.features) for kind in BASELINES
                   if kind != model]


@dataclass
class SeverityResult:
    """Fold scores and out-of-fold predictions of one severity model over the repeats."""

    row: SeverityRow
    folds: pd.DataFrame  # repeat, seed, fold, n_train, n_test, mae, spearman, kappa
    predictions: pd.DataFrame  # subject_id, repeat, seed, fold, label, updrs_3_2, predicted
    confidence: float = 0.95

    @property
    def repeats(self) -> int:
        return int(self.folds["repeat"].nunique())

    def interval(self, metric: str) -> tuple[float, float]:
        scores = self.folds.groupby(["repeat", "fold"])[metric].mean().to_numpy()
        low, high = corrected_t_interval(scores, self.folds["n_train"].mean(), self.folds["n_test"].mean(),
                                         self.confidence)
        lowest, highest = BOUNDS[metric]
        return (max(low, lowest), min(high, highest)) if math.isfinite(low) else (low, high)

    def pooled(self) -> pd.DataFrame:
        """Per repeat (and seed): the metrics of all its out-of-fold predictions at once."""
        return pd.DataFrame([{"repeat": r, "seed": s, **severity_metrics(g["updrs_3_2"], g["predicted"])}
                             for (r, s), g in self.predictions.groupby(["repeat", "seed"])])

    def summary(self) -> dict[str, float]:
        """``severity/<metric>_{mean,std,ci_low,ci_high}`` over repeats and ``severity/oof_<metric>``."""
        per_repeat = self.folds.groupby("repeat")[list(SEVERITY_METRICS)].mean()
        pooled = self.pooled()
        out: dict[str, float] = {"severity/subjects": float(self.predictions["subject_id"].nunique()),
                                 "severity/repeats": float(self.repeats), "severity/confidence": self.confidence}
        for metric in SEVERITY_METRICS:
            low, high = self.interval(metric)
            out.update({f"severity/{metric}_mean": float(per_repeat[metric].mean()),
                        f"severity/{metric}_std": float(per_repeat[metric].std()) if self.repeats > 1 else math.nan,
                        f"severity/{metric}_ci_low": low, f"severity/{metric}_ci_high": high,
                        f"severity/oof_{metric}": float(pooled[metric].mean())})
        return out

    def describe(self, metric: str) -> str:
        s = self.summary()
        return (f"{s[f'severity/{metric}_mean']:.3f} ± {s[f'severity/{metric}_std']:.3f} "
                f"({self.confidence:.0%} CI {s[f'severity/{metric}_ci_low']:.3f}-{s[f'severity/{metric}_ci_high']:.3f})")


@dataclass(frozen=True)
class _Fit:
    row: SeverityRow
    repeat: int
    seed: int
    fold: int
    train_idx: np.ndarray
    test_idx: np.ndarray
    targets: np.ndarray


def _fit_predict(data: CohortIntensities, fits: list[_Fit], config: ClassifierConfig, cv: CVConfig,
                 label: str) -> list[np.ndarray]:
    """Each fit's predictions for its test rows, from a fresh pipeline fitted on its training rows only."""
    inputs: dict[str, np.ndarray] = {}
    pipelines, train_inputs, train_targets = [], [], []
    for fit in fits:
        if np.intersect1d(fit.train_idx, fit.test_idx).size:
            raise ValueError("train_idx and test_idx share subjects")
        if fit.row.features not in inputs:
            inputs[fit.row.features] = data.inputs(fit.row.features)
        pipelines.append(build_regression_pipeline(fit.row.kind, config, training_seed(fit.seed, fit.repeat),
                                                   cv.split_seed + fit.repeat))
        train_inputs.append(inputs[fit.row.features][fit.train_idx])
        train_targets.append(fit.targets[fit.train_idx])
    with progress_bar(len(fits), label) as bar:
        fit_pipelines(pipelines, train_inputs, train_targets, bar)
    return [np.clip(p.predict(inputs[f.row.features][f.test_idx]), 0, 4) for p, f in zip(pipelines, fits)]


def cross_validate_severity(data: CohortIntensities, config: ClassifierConfig, cv: CVConfig,
                            rows: list[SeverityRow] | None = None, confidence: float = 0.95) -> list[SeverityResult]:
    """Repeated k-fold CV of every row on the scored subjects (``data`` already :func:`scored_subjects`); every
    row's networks train together."""
    rows = rows or table_rows(config, data)
    splits = severity_folds(data, cv)
    fits = [_Fit(row, r, seed, k, np.asarray(train), np.asarray(test), data.updrs_3_2)
            for row in rows for r, folds in enumerate(splits) for seed in cv.seeds
            for k, (train, test) in enumerate(folds, start=1)]
    predictions = _fit_predict(data, fits, config, cv, f"severity: {len(rows)} models x {cv.repeats} x {cv.n_splits}-fold CV")
    ids = np.asarray(data.subject_ids)
    results = []
    for row in rows:
        fold_rows, frames = [], []
        for fit, predicted in zip(fits, predictions):
            if fit.row != row:
                continue
            true = data.updrs_3_2[fit.test_idx]
            fold_rows.append({"repeat": fit.repeat, "seed": fit.seed, "fold": fit.fold, "n_train": len(fit.train_idx),
                              "n_test": len(fit.test_idx), **severity_metrics(true, predicted)})
            frames.append(pd.DataFrame({"subject_id": ids[fit.test_idx], "repeat": fit.repeat, "seed": fit.seed,
                                        "fold": fit.fold, "label": data.labels[fit.test_idx], "updrs_3_2": true,
                                        "predicted": predicted}))
        results.append(SeverityResult(row, pd.DataFrame(fold_rows), pd.concat(frames, ignore_index=True), confidence))
    return results


def severity_permutation_test(data: CohortIntensities, config: ClassifierConfig, cv: CVConfig, n_permutations: int,
                              seed: int = 0, row: SeverityRow | None = None) -> dict:
    """One k-fold CV (the first repeat's folds, the first training seed) on the true scores against the same CV on
    scores shuffled among the subjects; p = (1 + #{null >= observed}) / (1 + n) for the out-of-fold rho and for
    the negated MAE (smaller is better)."""
    row = row or table_rows(config, data)[0]
    folds = severity_folds(data, dataclasses.replace(cv, repeats=1))[0]
    target_sets = [data.updrs_3_2] + [data.updrs_3_2[np.random.default_rng([seed, j]).permutation(len(data))]
                                      for j in range(n_permutations)]
    fits = [_Fit(row, 0, cv.seeds[0], k, np.asarray(train), np.asarray(test), targets)
            for targets in target_sets for k, (train, test) in enumerate(folds, start=1)]
    predictions = _fit_predict(data, fits, config, cv, f"severity: permutation test ({n_permutations} permutations)")
    scores = []
    for i, targets in enumerate(target_sets):
        mine = range(i * len(folds), (i + 1) * len(folds))
        index = np.concatenate([fits[j].test_idx for j in mine])
        metrics = severity_metrics(targets[index], np.concatenate([predictions[j] for j in mine]))
        scores.append({"spearman": metrics["spearman"], "neg_mae": -metrics["mae"]})
    observed = scores[0]
    null = {name: np.array([s[name] for s in scores[1:]], dtype=np.float64) for name in observed}
    return {"model": row.name, "observed": observed, "n_permutations": n_permutations,
            "p_values": {name: permutation_p_value(observed[name], null[name]) for name in observed},
            "null": {name: values.tolist() for name, values in null.items()}}


def severity_table(results: list[SeverityResult]) -> pd.DataFrame:
    """One row per model: mean ± std and interval of each metric, and the pooled out-of-fold rho."""
    rows = []
    for result in results:
        s = result.summary()
        rows.append({"model": result.row.name, "regressor": result.row.kind, "features": result.row.features,
                     **{f"{m}_{k}": s[f"severity/{m}_{k}"] for m in SEVERITY_METRICS
                        for k in ("mean", "std", "ci_low", "ci_high")}, "oof_spearman": s["severity/oof_spearman"],
                     "fits": len(result.folds)})
    return pd.DataFrame(rows)


def table_markdown(table: pd.DataFrame, confidence: float) -> str:
    lines = ["| model | features | MAE | Spearman rho | weighted kappa | fits |", "|---|---|---|---|---|---|"]
    for row in table.to_dict(orient="records"):
        cells = [f"{row[f'{m}_mean']:.3f} ± {row[f'{m}_std']:.3f} ({row[f'{m}_ci_low']:.3f}-{row[f'{m}_ci_high']:.3f})"
                 for m in SEVERITY_METRICS]
        lines.append(f"| {row['regressor']} | {row['features']} | " + " | ".join(cells) + f" | {row['fits']} |")
    return "\n".join(lines) + (f"\n\nMean ± std over repeats ({confidence:.0%} CI: corrected resampled t over folds); "
                               "kappa: quadratic-weighted, predictions rounded to 0-4.\n")


def plot_severity(result: SeverityResult, path: str | Path) -> Path:
    """Predicted vs true MDS-UPDRS 3.2, one panel per repeat (at most five), HC and PD in their colours."""
    from dfer_pd.common.constants import COHORT_LABELS
    from dfer_pd.common.plots import GROUP_COLOURS, group_legend_handles, new_figure, save_figure

    repeats = sorted(result.predictions["repeat"].unique())[:5]
    figure = new_figure(figsize=(3.0 * len(repeats), 3.2))
    axes = figure.subplots(1, len(repeats), squeeze=False, sharey=True)[0]
    jitter = np.random.default_rng(0)
    for ax, repeat in zip(axes, repeats):
        frame = result.predictions[result.predictions["repeat"] == repeat]
        for label, group in frame.groupby("label"):
            x = group["updrs_3_2"] + jitter.uniform(-0.15, 0.15, len(group))
            ax.scatter(x, group["predicted"], s=14, alpha=0.7, color=GROUP_COLOURS[COHORT_LABELS[int(label)]])
        ax.plot([0, 4], [0, 4], color="0.5", linewidth=0.8, linestyle="--")
        m = severity_metrics(frame["updrs_3_2"], frame["predicted"])
        ax.set_title(f"repeat {repeat + 1}: rho {m['spearman']:.2f}, MAE {m['mae']:.2f}", fontsize=9)
        ax.set_xlabel("MDS-UPDRS 3.2 (true)")
        ax.set_xlim(-0.5, 4.5)
        ax.set_ylim(-0.2, 4.2)
    axes[0].set_ylabel("estimated (out of fold)")
    axes[-1].legend(handles=group_legend_handles(), fontsize=8, loc="upper left")
    figure.suptitle(f"{result.row.name}: estimated vs true facial-expression score", fontsize=10)
    return save_figure(figure, path)


def run_severity(data: CohortIntensities, config: ClassifierConfig, cv: CVConfig, out_dir: str | Path,
                 permutations: int = 0, permutation_seed: int = 0, confidence: float = 0.95,
                 plots: bool = True) -> dict:
    """The severity analysis into ``out_dir/severity``: table (md, csv), predictions, permutation test, scatter plot.
    Returns the model's summary (``severity/...`` figures, ``severity/permutation_p_*``) and the table."""
    scored = scored_subjects(data, cv.n_splits)
    results = cross_validate_severity(scored, config, cv, confidence=confidence)
    folder = Path(out_dir) / "severity"
    folder.mkdir(parents=True, exist_ok=True)
    table = severity_table(results)
    table.to_csv(folder / "severity_table.csv", index=False)
    (folder / "severity_table.md").write_text(table_markdown(table, confidence))
    model = results[0]
    model.predictions.to_csv(folder / "predictions.csv", index=False)
    model.folds.to_csv(folder / "folds.csv", index=False)
    summary = {**model.summary(), "severity/n_pd": float(scored.labels.sum())}
    if permutations:
        test = severity_permutation_test(scored, config, cv, permutations, permutation_seed, model.row)
        atomic_write_json(folder / "permutation_test.json", test)
        summary.update({f"severity/permutation_p_{k}": v for k, v in test["p_values"].items()})
    atomic_write_json(folder / "metrics.json", {"model": model.row.name, **summary})
    if plots:
        plot_severity(model, folder / "severity_scatter.png")
    return {"summary": summary, "table": table, "model": model.row, "folder": folder}


def describe_severity(severity: dict, n_splits: int) -> list[str]:
    """train-pd's lines about the severity analysis (``run_severity``'s return value)."""
    s = severity["summary"]
    level = f"{s['severity/confidence']:.0%}"
    lines = [f"MDS-UPDRS 3.2 severity ({severity['model'].name}): {int(s['severity/repeats'])} x {n_splits}-fold CV on "
             f"{int(s['severity/subjects'])} scored subjects ({int(s['severity/n_pd'])} PD); mean ± std over repeats "
             f"({level} CI)"]
    for metric, label in (("mae", "mean absolute error"), ("spearman", "Spearman rho"), ("kappa", "weighted kappa")):
        lines.append(f"  {label:22s} {s[f'severity/{metric}_mean']:.3f} ± {s[f'severity/{metric}_std']:.3f} "
                     f"({s[f'severity/{metric}_ci_low']:.3f}-{s[f'severity/{metric}_ci_high']:.3f})")
    if "severity/permutation_p_spearman" in s:
        lines.append(f"  permutation test (scores shuffled): rho p = {s['severity/permutation_p_spearman']:.3g}, "
                     f"MAE p = {s['severity/permutation_p_neg_mae']:.3g}")
    lines.append(f"  table of feature kinds and baselines: {severity['folder'] / 'severity_table.md'}; "
                 f"scatter: {severity['folder'] / 'severity_scatter.png'}")
    return lines
