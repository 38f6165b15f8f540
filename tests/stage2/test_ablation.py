"""Table 3: every row of the paper, run on the same folds, written in the paper's layout."""

from __future__ import annotations

import pandas as pd

from dfer_pd.stage2.ablation import REFERENCE_ROW, TABLE3_ROWS, row_config, run_ablation, table3_row
from dfer_pd.stage2.classifiers import build_estimator, estimator_kind, resolve_classifier
from dfer_pd.stage2.settings import CLASSIFIERS, ClassifierConfig, CVConfig
from dfer_pd.synthetic.intensities import synthetic_cohort

TINY = ClassifierConfig(init_args=dict(hidden_size=4, num_layers=2, max_epochs=2, batch_size=32, patience=1))


def test_table3_rows_follow_the_paper():
    assert len(TABLE3_ROWS) == 16
    assert len({row.config.name for row in TABLE3_ROWS}) == 16
    networks = [row.network for row in TABLE3_ROWS]
    assert networks == ["DT"] * 2 + ["BC"] * 2 + ["RF"] * 2 + ["SVM"] * 2 + ["GRU"] * 4 + ["LSTM"] * 4
    for row in TABLE3_ROWS:
        assert row.config.features == ("processed" if row.processing else "raw")
        estimator = build_estimator(row.config)
        assert estimator_kind(estimator) == row.network.lower()
        assert row.residual == getattr(estimator, "residual", False)
        assert not row.residual or row.network in ("GRU", "LSTM")
        assert resolve_classifier(row.config).name == row.config.name  # the name is the one its values spell
    best = TABLE3_ROWS[-1]
    assert (best.network, best.processing, best.residual) == ("LSTM", True, True)
    assert best.paper == {"accuracy": 0.931, "precision": 0.929, "recall": 0.931, "f1": 0.929}
    assert TABLE3_ROWS[0].paper == {"accuracy": 0.633, "precision": 0.576, "recall": 0.655, "f1": 0.611}


def test_row_config_takes_training_settings_from_the_base():
    row = TABLE3_ROWS[10]  # GRU, raw, residual
    config = row_config(row, TINY)
    estimator = build_estimator(config)
    assert (estimator.cell, config.features, estimator.residual, config.name) == ("gru", "raw", True, row.config.name)
    assert (estimator.max_epochs, estimator.hidden_size) == (2, 4)
    assert row_config(row) is row.config
    # The row's own cell and residual path win over the base's (a sweep trial's residual false) ...
    plain = TABLE3_ROWS[13]  # LSTM, processed, no residual
    swept = ClassifierConfig(init_args={**TINY.init_args, "cell": "gru", "residual": True})
    estimator = build_estimator(row_config(plain, swept))
    assert (estimator.cell, estimator.residual, estimator.hidden_size) == ("lstm", False, 4)
    # ... and a baseline row takes nothing from a network's settings.
    forest = TABLE3_ROWS[4]
    assert forest.config.name == "rf_raw" and row_config(forest, TINY) is forest.config


def test_run_ablation_writes_both_tables(tmp_path):
    cohort = synthetic_cohort(12, 12, seed=5)
    table = run_ablation(cohort, CVConfig(n_splits=3, repeats=2), tmp_path, base_config=TINY)
    assert len(table) == 16
    saved = pd.read_csv(tmp_path / "table3.csv")
    assert len(saved) == 16 and (saved["fits"] == 6).all()
    assert saved["paper_accuracy"].tolist() == [row.paper["accuracy"] for row in TABLE3_ROWS]
    assert saved["accuracy_mean"].between(0, 1).all() and (saved["seconds"] > 0).all()
    for column in ("precision_weighted_mean", "f1_binary_mean", "roc_auc_mean", "accuracy_std", "accuracy_ci_low",
                   "oof_roc_auc_mean", "sensitivity_mean", "specificity_std", "accuracy_p_vs_reference"):
        assert column in saved.columns
    assert (saved["accuracy_ci_low"] <= saved["accuracy_mean"]).all() and (saved["accuracy_mean"] <= saved["accuracy_ci_high"]).all()
    reference = saved["name"] == REFERENCE_ROW
    assert saved.loc[reference, "accuracy_p_vs_reference"].isna().all()
    assert saved.loc[~reference, "accuracy_p_vs_reference"].between(0, 1).all()
    # Holm over the 15 comparisons with the reference, metric by metric, beside the raw p-values.
    for metric in ("accuracy", "roc_auc"):
        raw, holm = saved.loc[~reference, f"{metric}_p_vs_reference"], saved.loc[~reference, f"{metric}_p_holm"]
        assert (holm >= raw).all() and holm.between(0, 1).all() and saved.loc[reference, f"{metric}_p_holm"].isna().all()
        smallest = raw.idxmin()
        assert holm[smallest] == min(1.0, 15 * raw[smallest])
    markdown = (tmp_path / "table3.md").read_text()
    rows = [line for line in markdown.splitlines() if line.startswith("| ") and "---" not in line]
    assert rows[0].startswith("| Classification Network | Data Processing | Residual | Accuracy | 95% CI | "
                              "ROC AUC (out-of-fold) | Sensitivity | Specificity | Precision")
    assert len(rows) == 17  # header + 16
    assert "| LSTM | - | - |" in markdown and "0.931" in markdown and "weighted" in markdown
    assert rows[-1].count("reference") == 1 and "2 repeat(s) of 3-fold" in markdown and "Nadeau-Bengio" in markdown
    assert "Holm-adjusted p-value over all 15 rows" in markdown and ", Holm " in rows[1]
    assert "is not the paper's raw input" in markdown and "about cos / tau" in markdown
    # Every row ran on the same folds, repeat by repeat.
    folds = [pd.read_csv(tmp_path / "rows" / row.config.name / "predictions.csv").set_index(["subject_id", "repeat"])["fold"]
             for row in TABLE3_ROWS]
    assert all(f.sort_index().equals(folds[0].sort_index()) for f in folds)


def test_a_new_classifier_is_its_registry_entry_and_its_row(tmp_path, monkeypatch):
    logreg = {"class_path": "sklearn.linear_model.LogisticRegression"}
    monkeypatch.setitem(CLASSIFIERS, "logreg", {"class_path": "dfer_pd.stage2.classifiers.FlatClassifier",
                                                "init_args": {"estimator": logreg}})
    row = table3_row("LOGREG", True, False)  # not in the paper: no paper figures
    cohort = synthetic_cohort(12, 12, seed=5)
    table = run_ablation(cohort, CVConfig(n_splits=3, repeats=1), tmp_path, rows=(TABLE3_ROWS[0], row))
    assert table["name"].tolist() == ["dt_raw", "logreg_processed"] and table["accuracy_mean"].between(0, 1).all()
    line = next(x for x in (tmp_path / "table3.md").read_text().splitlines() if x.startswith("| LOGREG | ✓ | - |"))
    assert line.endswith("| - | - | - | - |")  # the paper columns
