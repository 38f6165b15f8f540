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


@dataclass
class CVConfig:
    """How folds are drawn and how models are selected inside a fold.

    ``split_seed`` fixes the folds and the validation splits; ``seeds`` are training seeds (weights,
    batch order, forests), each a complete pass over the same folds. ``val_fraction`` of each training
    fold (stratified) drives early stopping and best-weight selection of the estimators that train in
    epochs (the residual LSTM/GRU carve it from the rows they are fitted on); 0 trains for
    ``max_epochs`` and keeps the last weights. The scikit-learn baselines fit the whole training fold.
    """

    n_splits: int = 5
    seeds: list[int] = field(default_factory=lambda: [0])
    split_seed: int = 0
    val_fraction: float = 0.2
    accelerator: str = "auto"
    threshold: float = 0.5
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.n_splits < 2:
            raise ValueError(f"n_splits must be at least 2, got {self.n_splits}")
        if not self.seeds:
            raise ValueError("seeds must hold at least one training seed")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")


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
