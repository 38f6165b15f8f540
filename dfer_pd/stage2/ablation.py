"""The paper's Table 3 ablation: six classifiers, with and without Eq. 4 processing and the residual path.

Every row is cross-validated on the same subject folds, repeat by repeat; ``table3.csv`` / ``table3.md`` put
our mean ± std over repeats, a 95% interval, the out-of-fold ROC AUC, sensitivity and specificity and a
paired test against the paper's model beside the figures the paper reports. A row names its classifier by the registry kind
(:data:`dfer_pd.stage2.settings.CLASSIFIERS`); a classifier the paper did not test gets a row
without paper figures.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.stage2.metrics import CVResult
from dfer_pd.stage2.settings import RECURRENT_KINDS, ClassifierConfig, CVConfig

PAPER_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "f1")
# Our metric compared with each paper column: support-weighted (see the note written into table3.md).
COMPARED_METRICS: dict[str, str] = {
    "accuracy": "accuracy",
    "precision": "precision_weighted",
    "recall": "recall_weighted",
    "f1": "f1_weighted",
}


@dataclass(frozen=True)
class Table3Row:
    """One line of Table 3: the network, whether Eq. 4 processing / the residual path are on, the paper's figures
    (empty for a classifier the paper did not test)."""

    network: str
    processing: bool
    residual: bool
    config: ClassifierConfig
    paper: dict[str, float]


def table3_row(
    network: str, processing: bool, residual: bool, figures: tuple[float, float, float, float] | None = None
) -> Table3Row:
    """A row for the classifier registered as ``network.lower()``, on Eq. 4 (``processing``) or raw features."""
    return Table3Row(network, processing, residual, _row_classifier(network, "processed" if processing else "raw", residual),
                     dict(zip(PAPER_METRICS, figures or ())))


def _row_classifier(network: str, features: str, residual: bool) -> ClassifierConfig:
    kind = network.lower()
    name = f"{kind}_{features}" + ("_residual" if residual else "")
    if kind in RECURRENT_KINDS:
        return ClassifierConfig.of_kind(kind, features, name=name, residual=residual)
    return ClassifierConfig.of_kind(kind, features, name=name)


# Accuracy, precision, recall, F1-score as printed in the paper's Table 3.
TABLE3_ROWS: tuple[Table3Row, ...] = (
    table3_row("DT", False, False, (0.633, 0.576, 0.655, 0.611)),
    table3_row("DT", True, False, (0.663, 0.622, 0.591, 0.605)),
    table3_row("BC", False, False, (0.767, 0.721, 0.782, 0.744)),
    table3_row("BC", True, False, (0.727, 0.653, 0.831, 0.727)),
    table3_row("RF", False, False, (0.738, 0.704, 0.678, 0.689)),
    table3_row("RF", True, False, (0.733, 0.684, 0.689, 0.683)),
    table3_row("SVM", False, False, (0.749, 0.709, 0.764, 0.724)),
    table3_row("SVM", True, False, (0.758, 0.720, 0.773, 0.738)),
    table3_row("GRU", False, False, (0.715, 0.717, 0.715, 0.714)),
    table3_row("GRU", True, False, (0.750, 0.764, 0.750, 0.747)),
    table3_row("GRU", False, True, (0.721, 0.731, 0.722, 0.722)),
    table3_row("GRU", True, True, (0.743, 0.755, 0.743, 0.742)),
    table3_row("LSTM", False, False, (0.885, 0.890, 0.885, 0.885)),
    table3_row("LSTM", True, False, (0.908, 0.912, 0.908, 0.906)),
    table3_row("LSTM", False, True, (0.909, 0.912, 0.909, 0.909)),
    table3_row("LSTM", True, True, (0.931, 0.929, 0.931, 0.929)),
)


def kinematic_row(network: str, features: str, residual: bool) -> Table3Row:
    """A row beyond the paper: the classifier on landmark kinematics (``kinematics``), or on the Eq. 4
    features and the kinematics together (``clip+kinematics``, marked as processed)."""
    return Table3Row(f"{network} ({features})", features == "clip+kinematics", residual,
                     _row_classifier(network, features, residual), {})


# Rows added when the cohort has landmark kinematics (dfer_pd.stage2.kinematics); the paper has none.
KINEMATIC_ROWS: tuple[Table3Row, ...] = (
    kinematic_row("SVM", "kinematics", False),
    kinematic_row("LSTM", "kinematics", True),
    kinematic_row("LSTM", "clip+kinematics", True),
)
KINEMATICS_NOTE = (
    "Rows marked (kinematics) are not in the paper: they classify the landmark kinematics of each video "
    "(amplitude, peak speed and time to peak of mouth-corner, brow, eyelid and jaw movement against the "
    "subject's neutral video, in eye distances), alone or beside the Eq. 4 features (clip+kinematics)."
)


def default_rows(data: CohortIntensities) -> tuple[Table3Row, ...]:
    """The paper's 16 rows, and the kinematic rows when ``data`` has landmark kinematics."""
    return TABLE3_ROWS + (KINEMATIC_ROWS if data.kinematics is not None else ())

REFERENCE_ROW = "lstm_processed_residual"
"""The paper's model (residual LSTM on Eq. 4 features): every other row is tested against it."""
COMPARED_WITH_REFERENCE: tuple[str, ...] = ("accuracy", "roc_auc")

TABLE3_NOTE = (
    "Precision, recall and F1-score are support-weighted over HC and PD (scikit-learn `average='weighted'`); "
    "the paper does not say which it used. Its GRU and LSTM rows have recall equal to accuracy, which only "
    "the weighted average guarantees, while its DT/BC/RF/SVM rows do not, so those may be PD-positive binary "
    "figures: `table3.csv` also holds our binary (PD-positive) precision, recall and F1 and ROC AUC."
)
RAW_NOTE = (
    "Data Processing - (\"raw\") is not the paper's raw input: every row's features pass the same signed-log "
    "scaler (sign(x) log(1 + |x|), then standardisation on the training fold), which turns the 16 raw "
    "intensities exp(cos / tau) into about cos / tau, stage 1's logits. The paper does not say how it scaled them; "
    "on exp(cos / tau) itself (values up to e^100) most classifiers would not train."
)


def row_config(row: Table3Row, base_config: ClassifierConfig | None = None) -> ClassifierConfig:
    """The row's classifier; a ``base_config`` of the same estimator class supplies the shared settings (a
    network row takes train-pd's epochs, width, lr ...; the row's cell and residual path stay its own)."""
    if base_config is None or base_config.class_path != row.config.class_path:
        return row.config
    return dataclasses.replace(row.config, init_args={**base_config.init_args, **row.config.init_args})


def run_ablation(
    data: CohortIntensities,
    cv: CVConfig | None = None,
    out_dir: str | Path | None = None,
    base_config: ClassifierConfig | None = None,
    rows: tuple[Table3Row, ...] | None = None,
    confidence: float = 0.95,
    reference: str = REFERENCE_ROW,
    progress: bool = True,
    on_row: Callable[[str, CVResult], None] | None = None,
) -> pd.DataFrame:
    """Cross-validate every row on the same folds (``cv.repeats`` repeats); one result row per Table 3 line.

    All rows' fits run in one pass: the residual networks of every row, repeat and fold train together
    (:mod:`dfer_pd.stage2.ensemble`), with a progress bar over all fits. Each row gets the mean, the std
    over repeats and a ``confidence`` interval of every metric, its out-of-fold ROC AUC, and a corrected
    resampled paired t-test (Nadeau-Bengio) of its fold accuracies and AUCs against the ``reference`` row
    (the paper's model) on the same folds, with Holm-adjusted p-values over all rows
    (``<metric>_p_holm``; the table makes 15-18 such comparisons per metric). ``seconds`` is the row's share of the wall time (a batched
    network's share of its group). With ``out_dir``: ``table3.csv``, ``table3.md`` and each row's CV
    outputs under ``rows/<name>/``. ``on_row(name, result)`` receives each row's :class:`CVResult`.
    """
    from dfer_pd.common.progress import progress_bar
    from dfer_pd.stage2.crossval import collect_result, cv_jobs, fit_predict_jobs, repeated_folds
    from dfer_pd.stage2.statistics import corrected_paired_ttest

    cv = cv or CVConfig()
    rows = default_rows(data) if rows is None else rows  # None: the paper's rows (+ kinematic ones when available)
    splits = repeated_folds(data, cv)
    configs = [row_config(row, base_config) for row in rows]
    jobs = [cv_jobs(config, cv, splits) for config in configs]
    flat = [job for row_jobs in jobs for job in row_jobs]
    started = time.perf_counter()
    description = f"Table 3: {len(rows)} rows x {cv.repeats} repeats x {cv.n_splits} folds"
    with progress_bar(len(flat), description, enabled=progress) as bar:
        outcomes = fit_predict_jobs(data, flat, cv, bar)
    total_seconds = time.perf_counter() - started
    results, offset = [], 0
    for config, row_jobs in zip(configs, jobs):
        row_outcomes = outcomes[offset:offset + len(row_jobs)]
        offset += len(row_jobs)
        results.append((collect_result(data, config, cv, row_jobs, row_outcomes, confidence),
                        sum(o.seconds for o in row_outcomes)))
    by_name = {config.name: result for config, (result, _) in zip(configs, results)}
    reference_result = by_name.get(reference)
    out_dir = Path(out_dir) if out_dir is not None else None
    records = []
    for row, config, (result, seconds) in zip(rows, configs, results):
        record = {"network": row.network, "data_processing": row.processing, "residual": row.residual,
                  "name": config.name, "seconds": seconds, "fits": len(result.folds)}
        record.update(result.figures())
        for metric in COMPARED_WITH_REFERENCE:
            test = None
            if reference_result is not None and config.name != reference:
                test = corrected_paired_ttest(result.fold_scores(metric), reference_result.fold_scores(metric),
                                              *result.fold_sizes)
            record[f"{metric}_diff_vs_reference"] = math.nan if test is None else test.mean_difference
            record[f"{metric}_p_vs_reference"] = math.nan if test is None else test.p_value
        record.update({f"paper_{metric}": value for metric, value in row.paper.items()})
        records.append(record)
        if out_dir is not None:
            result.save(out_dir / "rows" / config.name)
        if on_row is not None:
            on_row(config.name, result)
    table = pd.DataFrame(records)
    from dfer_pd.stage2.statistics import holm_adjust

    for metric in COMPARED_WITH_REFERENCE:  # one family of comparisons per metric: every row against the reference
        table[f"{metric}_p_holm"] = holm_adjust(table[f"{metric}_p_vs_reference"].to_numpy())
    table.attrs.update(kinematics=data.kinematics is not None)
    table.attrs.update(total_seconds=total_seconds, fits=len(flat), reference=reference,
                       repeats=cv.repeats, n_splits=cv.n_splits, confidence=confidence)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        table.to_csv(out_dir / "table3.csv", index=False)
        (out_dir / "table3.md").write_text(table3_markdown(table, cv, confidence=confidence, reference=reference))
        from dfer_pd.stage2.plots import plot_table3

        plot_table3(table, out_dir / "table3.png")
    return table


def table3_markdown(table: pd.DataFrame, cv: CVConfig | None = None, confidence: float = 0.95,
                    reference: str = REFERENCE_ROW) -> str:
    """Table 3 in the paper's layout: our figures (mean ± std over repeats, interval, out-of-fold AUC,
    sensitivity, specificity, the paired test against the paper's model) beside the paper's."""
    level = f"{confidence:.0%}"
    header = ["Classification Network", "Data Processing", "Residual", "Accuracy", f"{level} CI",
              "ROC AUC (out-of-fold)", "Sensitivity", "Specificity", "Precision", "Recall", "F1-Score",
              "Δ Accuracy vs paper's model (p, Holm p)", "Paper Accuracy", "Paper Precision", "Paper Recall",
              "Paper F1-Score"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    previous = None
    for _, record in table.iterrows():
        cells = [
            record["network"] if record["network"] != previous else "",
            "✓" if record["data_processing"] else "-",
            "✓" if record["residual"] else "-",
            _mean_std(record["accuracy_mean"], record["accuracy_std"]),
            _interval(record.get("accuracy_ci_low"), record.get("accuracy_ci_high")),
            _mean_std(record["oof_roc_auc_mean"], record["oof_roc_auc_std"]),
            _mean_std(record["sensitivity_mean"], record["sensitivity_std"]),
            _mean_std(record["specificity_mean"], record["specificity_std"]),
        ]
        for metric in PAPER_METRICS[1:]:
            ours = COMPARED_METRICS[metric]
            cells.append(_mean_std(record[f"{ours}_mean"], record[f"{ours}_std"]))
        if record["name"] == reference:
            cells.append("reference")
        else:
            cells.append(_difference(record.get("accuracy_diff_vs_reference"), record.get("accuracy_p_vs_reference"),
                                     record.get("accuracy_p_holm")))
        cells += [_figure(record.get(f"paper_{metric}")) for metric in PAPER_METRICS]
        previous = record["network"]
        lines.append("| " + " | ".join(cells) + " |")
    title = "# Table 3: ablation (ours vs the paper)\n\n"
    if cv is not None:
        repeats = getattr(cv, "repeats", 1)
        spread = "std over repeats" if repeats > 1 else "std over folds (one repeat)"
        title += (f"{repeats} repeat(s) of {cv.n_splits}-fold subject-level cross-validation (split seeds "
                  f"{cv.split_seed}..{cv.split_seed + repeats - 1}), training seeds {list(cv.seeds)}; every row on "
                  f"the same folds. Cells: mean ± {spread}. {level} CI: corrected resampled t interval "
                  f"(Nadeau-Bengio) from the {repeats} x {cv.n_splits} fold accuracies. ROC AUC (out-of-fold): "
                  f"all subjects' out-of-fold predictions of a repeat scored at once. Δ accuracy vs the paper's "
                  f"model ({reference}): mean fold-by-fold difference and the two-sided p-value of the corrected "
                  f"resampled paired t-test, which allows for the overlap of training sets across folds; beside it the "
                  f"Holm-adjusted p-value over all {int(table['accuracy_p_vs_reference'].notna().sum())} rows compared "
                  f"with the reference (read that one: with this many comparisons, one raw p below 0.05 is expected by "
                  f"chance alone). The interval never narrows below a Wilson interval on the pooled out-of-fold "
                  f"counts, so folds that all score the same do not give a zero-width interval.\n\n")
    notes = TABLE3_NOTE + "\n\n" + RAW_NOTE
    if table["name"].str.contains("kinematics").any():
        notes += "\n\n" + KINEMATICS_NOTE
    elif table.attrs.get("kinematics") is False:
        notes += ("\n\nNo (kinematics) rows: these intensities carry no landmark kinematics "
                  "(extract the cohort with --kinematics.enabled true).")
    return title + "\n".join(lines) + "\n\n" + notes + "\n"


def _figure(value: float | None) -> str:
    return "-" if value is None or np.isnan(value) else f"{value:.3f}"


def _mean_std(mean: float, std: float) -> str:
    if mean is None or np.isnan(mean):
        return "-"
    return f"{mean:.3f}" if std is None or np.isnan(std) else f"{mean:.3f} ± {std:.3f}"


def _interval(low: float | None, high: float | None) -> str:
    if low is None or high is None or np.isnan(low) or np.isnan(high):
        return "-"
    return f"{low:.3f}-{high:.3f}"


def _p(p_value: float | None) -> str:
    return "< 0.001" if p_value is not None and p_value < 0.001 else f"{p_value:.3f}"


def _difference(diff: float | None, p_value: float | None, holm: float | None = None) -> str:
    if diff is None or np.isnan(diff):
        return "-"
    cell = f"{diff:+.3f} (p {'' if p_value is not None and p_value < 0.001 else '= '}{_p(p_value)}"
    if holm is not None and not np.isnan(holm):
        cell += f", Holm {_p(holm)}"
    return cell + ")"


def table3_for_wandb(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Table 3 as a researcher reads it in W&B: one row per line with accuracy and ROC AUC (mean and interval),
    the paper's accuracy beside, the Holm-adjusted p against the paper's model and the number of fits; and the
    run summary's ``table3/<row>/<metric>_mean`` figures."""
    columns = ["name", "accuracy_mean", "accuracy_ci_low", "accuracy_ci_high", "paper_accuracy",
               "roc_auc_mean", "roc_auc_ci_low", "roc_auc_ci_high", "accuracy_p_holm", "roc_auc_p_holm", "fits"]
    compact = table.reindex(columns=columns)
    summary = {f"table3/{row['name']}/{metric}_mean": float(row[f"{metric}_mean"])
               for row in table.to_dict(orient="records") for metric in COMPARED_WITH_REFERENCE}
    return compact, summary
