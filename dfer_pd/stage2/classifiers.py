"""Subject-level cross-validation of the stage-2 classifiers (residual LSTM/GRU and the Table 3 baselines).

Every fold builds a fresh scaler and a fresh model; folds come from ``CVConfig.split_seed`` only, so every
training seed and every classifier sees the same subjects in the same folds. Neural models select their
weights on a stratified validation split carved from the training fold, never on the test fold.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.loggers import Logger
from sklearn.base import ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedGroupKFold, train_test_split
from sklearn.naive_bayes import GaussianNB
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from torch.utils.data import DataLoader, TensorDataset

from dfer_pd.stage2.features import CohortIntensities, SequenceScaler, sequence_inputs
from dfer_pd.common.loggers import finish_wandb_run
from dfer_pd.stage2.module import PDClassifierModule

NEURAL_KINDS: tuple[str, ...] = ("lstm", "gru")
SKLEARN_KINDS: tuple[str, ...] = ("dt", "bc", "rf", "svm")
METRIC_NAMES: tuple[str, ...] = (
    "accuracy",
    "precision_binary",
    "recall_binary",
    "f1_binary",
    "precision_weighted",
    "recall_weighted",
    "f1_weighted",
    "roc_auc",
    "sensitivity",
    "specificity",
)
"""Per-fold metrics. ``*_binary`` treat PD as the positive class; ``*_weighted`` average both classes by support."""

LoggerFactory = Callable[[int, int], Logger | None]
"""``logger_factory(fold, seed)`` -> a Lightning logger for that fold's training run, or None."""
MetricsSink = Callable[[dict[str, float]], None]
"""Receives ``{"fold{k}/<metric>": value}`` after each fold and ``{"cv/<metric>_mean" / "_std": value}`` at the end."""


class FoldLeakageError(RuntimeError):
    """A subject appears on both sides of a split."""


@dataclass
class ClassifierConfig:
    """One stage-2 classifier: a residual LSTM/GRU or a flat scikit-learn baseline, and its inputs.

    ``features``: "raw" = the 4 intensities per video, "processed" = the paper's Eq. 4 features,
    "both" = the two concatenated. ``sklearn_params`` are passed to the baseline's constructor.
    """

    name: str = "lstm"
    kind: Literal["lstm", "gru", "dt", "bc", "rf", "svm"] = "lstm"
    features: Literal["raw", "processed", "both"] = "processed"
    residual: bool = True
    hidden_size: int = 64
    num_layers: int = 2
    dropout: float = 0.2
    lr: float = 1e-3
    weight_decay: float = 1e-4
    max_epochs: int = 150
    batch_size: int = 16
    patience: int = 20
    loss: Literal["bce", "ce"] = "bce"
    sklearn_params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in NEURAL_KINDS + SKLEARN_KINDS:
            raise ValueError(f"kind must be one of {NEURAL_KINDS + SKLEARN_KINDS}, got {self.kind!r}")
        if self.features not in ("raw", "processed", "both"):
            raise ValueError(f"features must be 'raw', 'processed' or 'both', got {self.features!r}")
        if self.loss not in ("bce", "ce"):
            raise ValueError(f"loss must be 'bce' or 'ce', got {self.loss!r}")

    @property
    def is_neural(self) -> bool:
        return self.kind in NEURAL_KINDS


@dataclass
class CVConfig:
    """How folds are drawn and how models are selected inside a fold.

    ``split_seed`` fixes the folds and the validation splits; ``seeds`` are training seeds (weights,
    batch order, forests), each a complete pass over the same folds. ``val_fraction`` of each training
    fold (stratified) drives early stopping and best-weight selection of the neural models; 0 trains
    for ``max_epochs`` and keeps the last weights. The scikit-learn baselines fit the whole training fold.
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


def build_baseline(kind: str, seed: int, params: dict[str, Any] | None = None) -> ClassifierMixin:
    """The Table 3 baselines: DT, naive Bayes ("BC", Gaussian), RF and an RBF SVM with Platt-scaled probabilities.

    ``params`` go to the underlying scikit-learn estimator (the SVC for "svm").
    """
    params = dict(params or {})
    if kind == "dt":
        return DecisionTreeClassifier(**{"random_state": seed, **params})
    if kind == "bc":
        return GaussianNB(**params)
    if kind == "rf":
        return RandomForestClassifier(**{"random_state": seed, "n_jobs": 1, **params})
    if kind == "svm":  # Platt scaling fitted out-of-sample; SVC(probability=True) is deprecated in sklearn 1.9
        return CalibratedClassifierCV(SVC(**{"random_state": seed, **params}), method="sigmoid", ensemble=False)
    raise ValueError(f"not a baseline kind: {kind!r}; expected one of {SKLEARN_KINDS}")


class BestWeights(Callback):
    """Keeps, in memory, the weights of the epoch with the lowest monitored validation value."""

    def __init__(self, monitor: str = "val/loss") -> None:
        self.monitor = monitor
        self.best_value = math.inf
        self.best_epoch: int | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if value < self.best_value:
            self.best_value, self.best_epoch = value, trainer.current_epoch
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def restore(self, module: torch.nn.Module) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)


@contextlib.contextmanager
def _quiet_and_restored_torch_flags() -> Iterator[None]:
    """Silence Lightning's per-Trainer banners and undo the global determinism flags a Trainer sets."""
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    lightning_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's pytree shim on new torch
            yield
    finally:
        lightning_log.setLevel(level)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn


def _as_tensors(inputs: np.ndarray, labels: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.as_tensor(inputs, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long))


def fit_neural(
    x: np.ndarray,
    labels: np.ndarray,
    fit_idx: np.ndarray,
    val_idx: np.ndarray,
    config: ClassifierConfig,
    seed: int,
    cv: CVConfig,
    logger: Logger | None = None,
) -> PDClassifierModule:
    """A fresh residual LSTM/GRU trained on ``fit_idx``; early stopping and best weights from ``val_idx``."""
    L.seed_everything(seed, verbose=False)
    module = PDClassifierModule(
        input_size=x.shape[-1],
        hidden_size=config.hidden_size,
        num_layers=config.num_layers,
        cell=config.kind,
        residual=config.residual,
        dropout=config.dropout,
        loss=config.loss,
        lr=config.lr,
        weight_decay=config.weight_decay,
    )
    train_loader = DataLoader(
        _as_tensors(x[fit_idx], labels[fit_idx]),
        batch_size=config.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(seed),
    )
    callbacks: list[Callback] = []
    val_loader = None
    best = BestWeights("val/loss")
    if len(val_idx):
        val_loader = DataLoader(_as_tensors(x[val_idx], labels[val_idx]), batch_size=len(val_idx))
        callbacks = [best, EarlyStopping(monitor="val/loss", mode="min", patience=config.patience)]
    with _quiet_and_restored_torch_flags():
        trainer = L.Trainer(
            max_epochs=config.max_epochs,
            accelerator=cv.accelerator,
            devices=1,
            logger=logger if logger is not None else False,
            callbacks=callbacks,
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            deterministic=cv.deterministic,
        )
        trainer.fit(module, train_loader, val_loader)
    best.restore(module)
    return module.to("cpu").eval()


def fit_scaled_neural(
    inputs: np.ndarray,
    labels: np.ndarray,
    train_idx: np.ndarray,
    config: ClassifierConfig,
    seed: int,
    cv: CVConfig,
    logger: Logger | None = None,
) -> tuple[SequenceScaler, PDClassifierModule]:
    """Carve the validation split from ``train_idx``, fit the scaler on the rest, train the network."""
    fit_idx, val_idx = validation_split(labels, train_idx, cv.val_fraction, cv.split_seed)
    scaler = SequenceScaler().fit(inputs[fit_idx])
    module = fit_neural(scaler.transform(inputs), labels, fit_idx, val_idx, config, seed, cv, logger)
    return scaler, module


def fit_predict_fold(
    data: CohortIntensities,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    config: ClassifierConfig,
    seed: int,
    cv: CVConfig | None = None,
    logger: Logger | None = None,
) -> np.ndarray:
    """Train a fresh scaler and model on ``train_idx`` and return P(PD) for ``test_idx``.

    The scaler is fitted on the rows the model is fitted on (for neural models, the training fold
    minus its validation split), so the test fold never informs normalisation or model selection.
    """
    cv = cv or CVConfig()
    train_idx, test_idx = np.asarray(train_idx), np.asarray(test_idx)
    if np.intersect1d(train_idx, test_idx).size:
        raise FoldLeakageError("train_idx and test_idx share rows")
    labels = data.labels
    inputs = sequence_inputs(data.intensities, config.features)
    if config.is_neural:
        scaler, module = fit_scaled_neural(inputs, labels, train_idx, config, seed, cv, logger)
        test_inputs = torch.as_tensor(scaler.transform(inputs[test_idx]), dtype=torch.float32)
        return module.predict_proba(test_inputs).numpy().astype(np.float64)
    flat = SequenceScaler().fit(inputs[train_idx]).transform(inputs).reshape(len(inputs), -1)
    model = build_baseline(config.kind, seed, config.sklearn_params).fit(flat[train_idx], labels[train_idx])
    if list(model.classes_) != [0, 1]:
        raise ValueError(f"training fold must hold both classes, got {model.classes_}")
    return model.predict_proba(flat[test_idx])[:, 1]


def classification_metrics(labels: np.ndarray, p_pd: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """:data:`METRIC_NAMES` for one set of predictions; ROC AUC is NaN when only one class is present."""
    labels = np.asarray(labels)
    predicted = (np.asarray(p_pd) >= threshold).astype(np.int64)
    metrics = {"accuracy": accuracy_score(labels, predicted)}
    for average in ("binary", "weighted"):
        metrics[f"precision_{average}"] = precision_score(labels, predicted, average=average, zero_division=0)
        metrics[f"recall_{average}"] = recall_score(labels, predicted, average=average, zero_division=0)
        metrics[f"f1_{average}"] = f1_score(labels, predicted, average=average, zero_division=0)
    metrics["roc_auc"] = roc_auc_score(labels, p_pd) if len(np.unique(labels)) == 2 else math.nan
    metrics["sensitivity"] = recall_score(labels, predicted, pos_label=1, zero_division=0)
    metrics["specificity"] = recall_score(labels, predicted, pos_label=0, zero_division=0)
    return {name: float(metrics[name]) for name in METRIC_NAMES}


def _confusion(labels: np.ndarray, p_pd: np.ndarray, threshold: float) -> np.ndarray:
    """2x2 counts, rows = true (HC, PD), columns = predicted (HC, PD)."""
    return confusion_matrix(labels, (np.asarray(p_pd) >= threshold).astype(np.int64), labels=[0, 1])


@dataclass
class CVResult:
    """Per-fold metrics (``folds``: one row per seed and fold), out-of-fold predictions and their summary."""

    config: ClassifierConfig
    cv: CVConfig
    folds: pd.DataFrame
    predictions: pd.DataFrame

    @property
    def mean(self) -> dict[str, float]:
        """Mean over all (seed, fold) pairs."""
        return {name: float(self.folds[name].mean()) for name in METRIC_NAMES}

    @property
    def std(self) -> dict[str, float]:
        """Sample standard deviation over all (seed, fold) pairs."""
        return {name: float(self.folds[name].std()) for name in METRIC_NAMES}

    @property
    def pooled(self) -> dict[str, float]:
        """Metrics of all out-of-fold predictions at once, averaged over seeds."""
        per_seed = [
            classification_metrics(group["label"], group["p_pd"], self.cv.threshold)
            for _, group in self.predictions.groupby("seed")
        ]
        return {name: float(np.mean([m[name] for m in per_seed])) for name in METRIC_NAMES}

    @property
    def confusion_matrix(self) -> np.ndarray:
        """Counts summed over folds and seeds; rows = true (HC, PD), columns = predicted (HC, PD)."""
        return self.folds[["tn", "fp", "fn", "tp"]].sum().to_numpy().reshape(2, 2)

    def summary(self) -> dict[str, float]:
        """``cv/<metric>_mean`` and ``cv/<metric>_std``: the keys a W&B sweep optimises."""
        out = {f"cv/{name}_mean": value for name, value in self.mean.items()}
        out.update({f"cv/{name}_std": value for name, value in self.std.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": asdict(self.config),
            "cv": asdict(self.cv),
            "mean": self.mean,
            "std": self.std,
            "pooled": self.pooled,
            "confusion_matrix": {"rows_true": ["HC", "PD"], "cols_pred": ["HC", "PD"],
                                 "counts": self.confusion_matrix.tolist()},
            "folds": self.folds.to_dict(orient="records"),
        }

    def save(self, out_dir: str | Path) -> Path:
        """Write ``predictions.csv``, ``folds.csv`` and ``metrics.json`` into ``out_dir``."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        self.predictions.to_csv(out_dir / "predictions.csv", index=False)
        self.folds.to_csv(out_dir / "folds.csv", index=False)
        (out_dir / "metrics.json").write_text(json.dumps(_json_safe(self.to_dict()), indent=2))
        return out_dir


def _json_safe(value: Any) -> Any:
    """NaN becomes null so metrics.json stays strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


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
    """K-fold subject-level CV: a fresh model per fold and training seed; folds are numbered from 1.

    ``logger_factory(fold, seed)`` gives each neural training run a Lightning logger (e.g. a
    ``WandbLogger``); after a fold that had one, an active W&B run is finished so folds do not merge.
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
            logger = logger_factory(fold, seed) if (logger_factory and config.is_neural) else None
            try:
                p_pd = fit_predict_fold(data, train_idx, test_idx, config, seed, cv, logger)
                labels = data.labels[test_idx]
                metrics = classification_metrics(labels, p_pd, cv.threshold)
                tn, fp, fn, tp = _confusion(labels, p_pd, cv.threshold).ravel()
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
