"""Stage-2 figures: ROC curves per fold, confusion matrix, the paper's Fig. 4 box plots and Fig. 2 t-SNE,
landmark kinematics, the permutation test and the reliability curve.

Figures are drawn on the Agg canvas (:func:`dfer_pd.common.plots.new_figure`), so no pyplot state or display
is involved, in the one HC/PD colour scheme of :mod:`dfer_pd.common.plots`. Every function returns the path of
the PNG it wrote.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.cbook import boxplot_stats
from sklearn.manifold import TSNE
from sklearn.metrics import auc, roc_curve

from dfer_pd.common.constants import COHORT_LABELS, EXPRESSIONS, NUM_EXPRESSIONS
from dfer_pd.common.plots import (
    GROUP_COLOURS,
    group_boxes,
    group_legend_handles,
    new_figure,
    save_confusion_matrix,
    save_figure,
)
from dfer_pd.stage2.kinematics import KINEMATIC_FEATURES, KINEMATIC_MEASURES, KINEMATIC_STATS

EXPRESSION_COLOURS: tuple[str, ...] = ("tab:gray", "tab:green", "tab:purple", "tab:red")


def plot_roc_curves(predictions: pd.DataFrame, path: str | PathLike) -> Path:
    """One ROC curve per (seed, fold) of out-of-fold predictions, their mean (± 1 std) and chance.

    ``predictions`` needs the columns ``fold``, ``label`` and ``p_pd`` (``seed`` optional), as in
    ``predictions.csv``.
    """
    figure = new_figure(figsize=(5, 5))
    ax = figure.add_subplot()
    grid = np.linspace(0, 1, 101)
    curves, areas = [], []
    keys = ["seed", "fold"] if "seed" in predictions else ["fold"]
    for key, group in predictions.groupby(keys):
        if group["label"].nunique() < 2:
            continue
        fpr, tpr, _ = roc_curve(group["label"], group["p_pd"])
        areas.append(auc(fpr, tpr))
        curves.append(np.interp(grid, fpr, tpr, left=0.0))
        ax.plot(fpr, tpr, lw=1, alpha=0.4, label=f"fold {key[-1]} (AUC {areas[-1]:.2f})" if len(curves) <= 10 else None)
    if curves:
        mean, spread = np.mean(curves, axis=0), np.std(curves, axis=0)
        mean[0], mean[-1] = 0.0, 1.0
        ax.plot(grid, mean, color="black", lw=2, label=f"mean (AUC {np.mean(areas):.2f} ± {np.std(areas):.2f})")
        ax.fill_between(grid, np.clip(mean - spread, 0, 1), np.clip(mean + spread, 0, 1), color="gray", alpha=0.2)
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="chance")
    ax.set(xlim=(0, 1), ylim=(0, 1.01), xlabel="1 - specificity (HC called PD)", ylabel="sensitivity (PD found)",
           title="ROC, subject-level cross-validation")
    ax.legend(loc="lower right", fontsize=7)
    return save_figure(figure, path)


def plot_confusion_matrix(matrix: np.ndarray, path: str | PathLike, labels: tuple[str, ...] = COHORT_LABELS,
                          title: str = "Confusion matrix, out-of-fold predictions\n(all folds, seeds and repeats)") -> Path:
    """A 2x2 count matrix (rows = true, columns = predicted) with counts and row percentages, readable text."""
    return save_confusion_matrix(matrix, path, labels, title)


def plot_intensity_boxplots(intensities: np.ndarray, labels: np.ndarray, path: str | PathLike) -> Path:
    """The paper's Fig. 4: in each expression video, every class's intensity (log scale), HC beside PD."""
    intensities = np.asarray(intensities, dtype=np.float64)
    labels = np.asarray(labels)
    if intensities.shape[1:] != (NUM_EXPRESSIONS, NUM_EXPRESSIONS) or len(labels) != len(intensities):
        raise ValueError(f"expected (N, 4, 4) intensities and N labels, got {intensities.shape} and {labels.shape}")
    figure = new_figure(figsize=(10, 8))
    axes = figure.subplots(2, 2).ravel()
    centres = np.arange(NUM_EXPRESSIONS)
    for video, ax in enumerate(axes):
        for group, offset in ((0, -0.18), (1, 0.18)):
            values = [intensities[labels == group, video, k] for k in range(NUM_EXPRESSIONS)]
            ax.boxplot(values, positions=centres + offset, widths=0.32, patch_artist=True,
                       boxprops={"facecolor": GROUP_COLOURS[COHORT_LABELS[group]], "alpha": 0.6},
                       medianprops={"color": "black"}, flierprops={"markersize": 3})
        ax.set_yscale("log")
        ax.set_xticks(centres, EXPRESSIONS)
        ax.set_title(f"{EXPRESSIONS[video]} video")
        ax.set_ylabel("intensity exp(cos / tau)")
    figure.legend(handles=group_legend_handles(), loc="upper right")
    figure.suptitle("Intensity of each expression class in each expression video")
    return save_figure(figure, path)


def tsne_plot(video_features: np.ndarray, labels: np.ndarray, path: str | PathLike, seed: int = 0) -> Path:
    """The paper's Fig. 2: one t-SNE map of all videos' stage-1 features, drawn per group (HC, PD).

    Points are coloured by the expression the video asked for; perplexity is capped at a third of
    the number of videos so small cohorts work.
    """
    video_features = np.asarray(video_features, dtype=np.float64)
    labels = np.asarray(labels)
    if video_features.ndim != 3 or video_features.shape[:2] != (len(labels), NUM_EXPRESSIONS):
        raise ValueError(f"expected (N, 4, D) video features for N labels, got {video_features.shape}")
    points = video_features.reshape(-1, video_features.shape[-1])
    if len(points) < 4:
        raise ValueError(f"t-SNE needs at least one subject (4 videos), got {len(points)} videos")
    perplexity = float(min(30.0, max(1.0, (len(points) - 1) / 3)))
    embedding = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(points)
    embedding = embedding.reshape(len(labels), NUM_EXPRESSIONS, 2)
    figure = new_figure(figsize=(10, 4.5))
    axes = figure.subplots(1, 2, sharex=True, sharey=True)
    for group, ax in zip((0, 1), axes):
        for k, name in enumerate(EXPRESSIONS):
            xy = embedding[labels == group, k]
            ax.scatter(xy[:, 0], xy[:, 1], s=10, color=EXPRESSION_COLOURS[k], label=name)
        ax.set_title(f"{COHORT_LABELS[group]} ({int((labels == group).sum())} subjects)")
    axes[0].legend(fontsize=8)
    figure.suptitle(f"t-SNE of stage-1 video features (perplexity {perplexity:.0f})")
    return save_figure(figure, path)


def plot_reliability(report: dict, path: str | PathLike) -> Path:
    """Reliability curve of out-of-fold p(PD), raw and calibrated (cross-fitted), with their Brier scores.

    ``report`` is :func:`dfer_pd.stage2.screening_model.calibration_from_cv`'s report. Points on the
    diagonal are calibrated: of the subjects given p(PD) near x, a share x had PD.
    """
    figure = new_figure(figsize=(5, 5))
    ax = figure.add_subplot()
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1, label="perfectly calibrated")
    curves = [("reliability_raw", "brier_raw", "raw", "tab:red")]
    if report.get("method", "none") != "none":
        curves.append(("reliability_calibrated", "brier_calibrated", f"{report['method']} (cross-fitted)", "tab:blue"))
    for key, brier, name, colour in curves:
        curve = report[key]
        ax.plot(curve["predicted"], curve["observed"], marker="o", color=colour, label=f"{name}: Brier {report[brier]:.3f}")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted p(PD)", ylabel="observed share with PD",
           title=f"Reliability, out-of-fold predictions\n({report['n_predictions']} predictions of "
                 f"{report['n_subjects']} subjects)")
    ax.legend(loc="upper left", fontsize=8)
    return save_figure(figure, path)


def plot_permutation_test(test: dict, path: str | PathLike) -> Path:
    """The permutation null distributions of accuracy and ROC AUC, with the observed values and p-values.

    ``test`` is :meth:`dfer_pd.stage2.crossval.PermutationTest.to_dict`'s output.
    """
    figure = new_figure(figsize=(9, 3.5))
    axes = figure.subplots(1, 2)
    for ax, metric in zip(axes, ("accuracy", "roc_auc")):
        ax.hist(test["null"][metric], bins=20, color="lightgray", edgecolor="gray", label="shuffled labels")
        ax.axvline(test["observed"][metric], color="tab:red", lw=2, label=f"observed {test['observed'][metric]:.3f}")
        ax.set(xlabel=metric.replace("_", " "), ylabel="permutations",
               title=f"p = {test['p_values'][metric]:.3g} ({test['n_permutations']} permutations)")
        ax.legend(fontsize=8)
    return save_figure(figure, path)


def plot_kinematics(kinematics: np.ndarray, labels: np.ndarray, path: str | PathLike, stat: str = "amplitude",
                    expressions=EXPRESSIONS) -> Path:
    """Box plots of one kinematic statistic (``amplitude``, ``peak_speed`` or ``time_to_peak``) per measure,
    HC beside PD, one panel per expression video: hypomimia shows as lower PD boxes."""
    if stat not in KINEMATIC_STATS:
        raise ValueError(f"stat must be one of {KINEMATIC_STATS}, got {stat!r}")
    kinematics, labels = np.asarray(kinematics, dtype=np.float64), np.asarray(labels)
    columns = [KINEMATIC_FEATURES.index(f"{m}_{stat}") for m in KINEMATIC_MEASURES]
    units = {"amplitude": "eye distances", "peak_speed": "eye distances / s", "time_to_peak": "s"}
    figure = new_figure(figsize=(4 * len(expressions), 3.8))
    axes = figure.subplots(1, len(expressions), squeeze=False)
    for j, (ax, expression) in enumerate(zip(axes[0], expressions)):
        for g, group in enumerate(COHORT_LABELS):
            rows = kinematics[labels == g][:, j, columns]
            if len(rows) == 0:
                continue
            group_boxes(ax, boxplot_stats(rows), np.arange(len(columns)) * 3 + g, group)
        ax.set_xticks(np.arange(len(columns)) * 3 + 0.5, ["mouth\ncorners", "brows", "eyelids", "jaw"])
        ax.set_xlim(-1, 3 * len(columns) - 1)
        ax.set_title(f"{expression} video", fontsize=10)
    axes[0, 0].set_ylabel(f"{stat.replace('_', ' ')} ({units[stat]})")
    figure.legend(handles=group_legend_handles(), loc="upper right", ncol=2, frameon=False)
    figure.suptitle(f"Landmark kinematics: {stat.replace('_', ' ')} per video, HC vs PD", x=0.01, ha="left")
    figure.tight_layout(rect=(0, 0, 1, 0.92))
    return save_figure(figure, path, dpi=110)


def plot_table3(table: pd.DataFrame, path: str | PathLike, metric: str = "accuracy") -> Path:
    """Table 3 as a figure: each row's cross-validated ``metric`` (mean, and its interval as a bar) with the
    paper's value beside it (a hollow diamond; none for rows the paper did not test)."""
    rows = table.reset_index(drop=True)
    figure = new_figure(figsize=(7.5, 0.32 * len(rows) + 1.4))
    ax = figure.add_subplot(1, 1, 1)
    y = np.arange(len(rows))[::-1]
    mean = rows[f"{metric}_mean"].to_numpy(float)
    errors = np.vstack([mean - rows[f"{metric}_ci_low"].to_numpy(float), rows[f"{metric}_ci_high"].to_numpy(float) - mean])
    ax.errorbar(mean, y, xerr=np.clip(errors, 0, None), fmt="o", color="#333333", capsize=3, label="ours (interval)")
    paper = rows.get(f"paper_{metric}")
    if paper is not None and paper.notna().any():
        ax.plot(paper.to_numpy(float), y, "D", markerfacecolor="none", markeredgecolor="#333333", label="paper")
    ax.set_yticks(y, rows["name"])
    ax.set_xlabel(f"{metric} (cross-validated)")
    ax.set_xlim(0, 1)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(f"Table 3: {metric} per row, the paper's value beside")
    figure.tight_layout()
    return save_figure(figure, path)
