"""The paper's Table 3 ablation: six classifiers, with and without Eq. 4 processing and the residual path.

Every row is cross-validated on the same subject folds; ``table3.csv`` / ``table3.md`` put our mean ± std
beside the figures the paper reports. A row names its classifier by the registry kind
(:data:`dfer_pd.stage2.classifiers.CLASSIFIERS`); a classifier the paper did not test gets a row
without paper figures.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dfer_pd.stage2.classifiers import ClassifierConfig
from dfer_pd.stage2.crossval import cross_validate
from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.stage2.splits import CVConfig, subject_folds

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
    kind = network.lower()
    features = "processed" if processing else "raw"
    name = f"{kind}_{features}" + ("_residual" if residual else "")
    config = ClassifierConfig(name=name, kind=kind, features=features, residual=residual)
    return Table3Row(network, processing, residual, config, dict(zip(PAPER_METRICS, figures or ())))


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

TABLE3_NOTE = (
    "Precision, recall and F1-score are support-weighted over HC and PD (scikit-learn `average='weighted'`); "
    "the paper does not say which it used. Its GRU and LSTM rows have recall equal to accuracy, which only "
    "the weighted average guarantees, while its DT/BC/RF/SVM rows do not, so those may be PD-positive binary "
    "figures: `table3.csv` also holds our binary (PD-positive) precision, recall and F1 and ROC AUC."
)


def row_config(row: Table3Row, base_config: ClassifierConfig | None = None) -> ClassifierConfig:
    """The row's classifier; ``base_config`` supplies the shared training settings (epochs, width, lr ...)."""
    if base_config is None:
        return row.config
    return dataclasses.replace(
        base_config,
        name=row.config.name,
        kind=row.config.kind,
        features=row.config.features,
        residual=row.config.residual,
        sklearn_params=dict(row.config.sklearn_params),
    )


def run_ablation(
    data: CohortIntensities,
    cv: CVConfig | None = None,
    out_dir: str | Path | None = None,
    base_config: ClassifierConfig | None = None,
    rows: tuple[Table3Row, ...] = TABLE3_ROWS,
) -> pd.DataFrame:
    """Cross-validate every row on the same folds; one result row per Table 3 line (with ``seconds`` taken).

    With ``out_dir``: ``table3.csv``, ``table3.md`` and each row's CV outputs under ``rows/<name>/``.
    """
    cv = cv or CVConfig()
    folds = subject_folds(data.labels, data.subject_ids, cv.n_splits, cv.split_seed)
    out_dir = Path(out_dir) if out_dir is not None else None
    records = []
    for row in rows:
        config = row_config(row, base_config)
        started = time.perf_counter()
        result = cross_validate(
            data,
            config,
            cv,
            out_dir=None if out_dir is None else out_dir / "rows" / config.name,
            folds=folds,
            plots=False,
        )
        record = {
            "network": row.network,
            "data_processing": row.processing,
            "residual": row.residual,
            "name": config.name,
            "seconds": time.perf_counter() - started,
        }
        mean, std = result.mean, result.std
        for name in mean:
            record[f"{name}_mean"], record[f"{name}_std"] = mean[name], std[name]
        record.update({f"paper_{metric}": value for metric, value in row.paper.items()})
        records.append(record)
    table = pd.DataFrame(records)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        table.to_csv(out_dir / "table3.csv", index=False)
        (out_dir / "table3.md").write_text(table3_markdown(table, cv))
    return table


def table3_markdown(table: pd.DataFrame, cv: CVConfig | None = None) -> str:
    """Table 3 in the paper's layout, our mean ± std beside the paper's figures."""
    header = ["Classification Network", "Data Processing", "Residual", "Accuracy", "Precision", "Recall",
              "F1-Score", "Paper Accuracy", "Paper Precision", "Paper Recall", "Paper F1-Score"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    previous = None
    for _, record in table.iterrows():
        cells = [
            record["network"] if record["network"] != previous else "",
            "✓" if record["data_processing"] else "-",
            "✓" if record["residual"] else "-",
        ]
        for metric in PAPER_METRICS:
            ours = COMPARED_METRICS[metric]
            cells.append(_mean_std(record[f"{ours}_mean"], record[f"{ours}_std"]))
        cells += [_figure(record.get(f"paper_{metric}")) for metric in PAPER_METRICS]
        previous = record["network"]
        lines.append("| " + " | ".join(cells) + " |")
    title = "# Table 3: ablation (ours vs the paper)\n\n"
    if cv is not None:
        title += (f"{cv.n_splits}-fold subject-level cross-validation, split seed {cv.split_seed}, "
                  f"training seeds {list(cv.seeds)}; mean ± sample std over folds and seeds.\n\n")
    return title + "\n".join(lines) + "\n\n" + TABLE3_NOTE + "\n"


def _figure(value: float | None) -> str:
    return "-" if value is None or np.isnan(value) else f"{value:.3f}"


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.3f}" if np.isnan(std) else f"{mean:.3f} ± {std:.3f}"
