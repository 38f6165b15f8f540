"""How subjects are split: stratified subject-level folds, and a validation split inside a training fold.

Folds come from ``CVConfig.split_seed`` only, so every training seed and every classifier sees the same
subjects in the same folds; no subject is ever on both sides of a split (checked, not assumed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, train_test_split


class FoldLeakageError(RuntimeError):
    """A subject appears on both sides of a split."""



def subject_folds(
    labels: np.ndarray, subject_ids: Sequence[str], n_splits: int = 5, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds over subjects: all rows of a subject fall in the same fold. Returns (train_idx, test_idx)."""
    labels = np.asarray(labels)
    groups = np.asarray(subject_ids)
    if len(labels) != len(groups):
        raise ValueError(f"{len(labels)} labels but {len(groups)} subject ids")
    subject_labels = pd.Series(labels).groupby(groups).agg(["min", "max"])
    if (subject_labels["min"] != subject_labels["max"]).any():
        raise ValueError("a subject has rows with different labels")
    smallest_class = subject_labels["min"].value_counts().min()
    if subject_labels["min"].nunique() < 2 or smallest_class < n_splits:
        raise ValueError(
            f"{n_splits}-fold CV needs at least {n_splits} subjects of each class, "
            f"got {subject_labels['min'].value_counts().to_dict()}"
        )
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    folds = []
    for train_idx, test_idx in splitter.split(np.zeros(len(labels)), labels, groups):
        shared = set(groups[train_idx]) & set(groups[test_idx])
        if shared:
            raise FoldLeakageError(f"subjects on both sides of a fold: {sorted(shared)[:5]}")
        folds.append((train_idx, test_idx))
    return folds


def validation_split(
    labels: np.ndarray, train_idx: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (fit_idx, val_idx) carved from a training fold's rows (one row per subject)."""
    if val_fraction == 0:
        return train_idx, train_idx[:0]
    n_val = max(2, round(val_fraction * len(train_idx)))
    return train_test_split(train_idx, test_size=n_val, stratify=labels[train_idx], random_state=seed)


def holdout_split(labels: np.ndarray, subject_ids: Sequence[str], fraction: float, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(development rows, held-out rows): a stratified, seeded share ``fraction`` of the subjects set aside.

    The same cohort, fraction and seed always give the same split, so every trial of a sweep leaves out
    the same subjects and the final evaluation scores exactly them.
    """
    labels, groups = np.asarray(labels), np.asarray(subject_ids)
    if len(set(groups)) != len(groups):
        raise ValueError("holdout_split expects one row per subject")
    counts = np.bincount(labels, minlength=2)
    if not 0 < fraction < 1 or min(counts) < 2 or round(fraction * len(labels)) < 2:
        raise ValueError(f"cannot hold out {fraction:.0%} of {len(labels)} subjects ({counts[1]} PD, {counts[0]} HC) "
                         "with both groups on both sides")
    development, held_out = train_test_split(np.arange(len(labels)), test_size=fraction, stratify=labels,
                                             random_state=seed)
    if set(groups[development]) & set(groups[held_out]):
        raise FoldLeakageError("a subject is both held out and in the development set")
    return np.sort(development), np.sort(held_out)
