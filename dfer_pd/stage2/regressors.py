"""The stage-2 registry's regression forms, for MDS-UPDRS item 3.2 (``train-pd --target severity``).

Each kind of :data:`REGRESSORS` is the regression form of the classifier kind of the same name, fitted through
the same pipeline (fold-local :class:`~dfer_pd.stage2.features.SequenceScaler`, then the estimator) and the same
:func:`~dfer_pd.stage2.classifiers.fit_pipelines`: the residual LSTM/GRU with a one-output regression head and an
MSE loss (:class:`ResidualRNNRegressor`, trained in the batched engine beside the classifiers), and the
scikit-learn regressors on flattened sequences (decision tree, random forest, SVR, and ridge regression with its
penalty chosen by leave-one-out inside the training rows). Naive Bayes has no regression form.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import Pipeline
from sklearn.svm import SVR
from sklearn.tree import DecisionTreeRegressor

from dfer_pd.stage2.classifiers import (
    FlatEstimator,
    ResidualRNNEstimator,
    _sequences,
    build_estimator,
    estimator_kind,
    seeded,
)
from dfer_pd.stage2.features import SequenceScaler
from dfer_pd.stage2.sequence_classifier import ResidualRNNClassifier
from dfer_pd.stage2.settings import REGRESSION_LOSS, REGRESSOR_KINDS, ClassifierConfig

RIDGE_ALPHAS = np.logspace(-3, 3, 13)
"""Ridge penalties tried by leave-one-out on the training rows (never the test fold)."""


class ResidualRNNRegressor(RegressorMixin, ResidualRNNEstimator):
    """The residual LSTM/GRU with a regression head: one output, MSE loss, on standardised targets.

    The targets are standardised with the training rows' mean and std (``target_mean_``, ``target_scale_``) and
    predictions mapped back; the validation split that drives early stopping is stratified on the targets'
    values (or quartiles), when every stratum has two rows. It trains in the batched engine whatever the runtime's
    engine (the Lightning module is the classifier's); everything else is :class:`ResidualRNNEstimator`'s recipe,
    its parameters included (``loss`` is always mse).
    """

    def __init__(self, **params: Any) -> None:
        super().__init__(**{**params, "loss": REGRESSION_LOSS})

    @classmethod
    def _get_param_names(cls) -> list[str]:  # the classifier's parameters (its signature) are this one's
        return ResidualRNNEstimator._get_param_names()

    def build_network(self, input_size: int) -> ResidualRNNClassifier:
        return ResidualRNNClassifier(input_size=input_size, hidden_size=self.hidden_size, num_layers=self.num_layers,
                                     cell=self.cell, residual=self.residual, dropout=self.dropout, num_outputs=1)

    def check_training_rows(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, standardised targets, [mean, scale]); the third value comes back to :meth:`set_fitted`."""
        X, y = _sequences(X, type(self).__name__), np.asarray(y, dtype=np.float64)
        if y.shape != (len(X),) or not np.isfinite(y).all():
            raise ValueError(f"{len(X)} sequences need as many finite targets, got shape {y.shape}")
        if len(np.unique(y)) < 2:
            raise ValueError("training rows must hold at least two different scores")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        mean, scale = float(y.mean()), float(y.std()) or 1.0
        return X, (y - mean) / scale, np.array([mean, scale])

    def validation_strata(self, targets: np.ndarray) -> np.ndarray:
        """Strata of the early-stopping split: the distinct scores (quartiles when there are more than five);
        one stratum when a stratified split is impossible."""
        values = np.unique(targets, return_inverse=True)[1]
        if values.max() >= 5:
            values = np.searchsorted(np.quantile(targets, [0.25, 0.5, 0.75]), targets)
        n_val = max(2, round(self.val_fraction * len(targets)))
        counts = np.bincount(values)
        counts = counts[counts > 0]
        if counts.min() < 2 or len(counts) > n_val or len(counts) > len(targets) - n_val:
            return np.zeros(len(targets), dtype=np.int64)
        return values

    def set_fitted(self, state: dict[str, torch.Tensor], classes: np.ndarray, best_epoch: int | None,
                   n_epochs: int, history: list[dict[str, float]] | None = None) -> ResidualRNNRegressor:
        super().set_fitted(state, np.array([0, 1]), best_epoch, n_epochs, history)
        del self.classes_
        self.target_mean_, self.target_scale_ = float(classes[0]), float(classes[1])
        return self

    def fit(self, X: np.ndarray, y: np.ndarray) -> ResidualRNNRegressor:
        return self.fit_batched(X, y)  # the Lightning module is the classifier's

    def predict(self, X: np.ndarray) -> np.ndarray:
        output = self.network_output(X).numpy().astype(np.float64)
        return output * self.target_scale_ + self.target_mean_

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        raise AttributeError("a severity regressor estimates a score, not class probabilities")

    def output_attributes(self) -> dict[str, Any]:
        """What maps the network's output to a score: the training targets' mean and scale."""
        return {"target_mean": self.target_mean_, "target_scale": self.target_scale_}

    def set_output_attributes(self, attributes: dict[str, Any]) -> None:
        self.target_mean_, self.target_scale_ = float(attributes["target_mean"]), float(attributes["target_scale"])


class FlatRegressor(RegressorMixin, FlatEstimator):
    """A scikit-learn regressor on flattened sequences (the severity baselines: DT, RF, SVR, ridge)."""


REGRESSORS: dict[str, Callable[[], FlatRegressor]] = {
    "dt": lambda: FlatRegressor(DecisionTreeRegressor(min_samples_leaf=3)),
    "rf": lambda: FlatRegressor(RandomForestRegressor(n_jobs=1)),
    "svm": lambda: FlatRegressor(SVR()),
    "ridge": lambda: FlatRegressor(RidgeCV(alphas=RIDGE_ALPHAS)),
}
"""The scikit-learn regressors by kind; the network kinds (lstm, gru) are the classifier's own regression form."""
if set(REGRESSORS) | {"lstm", "gru"} != set(REGRESSOR_KINDS):
    raise ImportError(f"the regressors' kinds {tuple(REGRESSORS)} + lstm, gru differ from REGRESSOR_KINDS {REGRESSOR_KINDS}")


def regression_form(kind: str, classifier: ClassifierConfig) -> BaseEstimator:
    """The ``kind`` regressor; for the classifier's own network kind, its network with the classifier's
    parameters and a regression head."""
    if kind not in REGRESSOR_KINDS:
        raise ValueError(f"no regression form of {kind!r}; one of {REGRESSOR_KINDS}")
    if kind in REGRESSORS:
        return REGRESSORS[kind]()
    estimator = build_estimator(classifier)
    if not isinstance(estimator, ResidualRNNEstimator):
        raise ValueError(f"the {kind} regressor takes the classifier's network parameters, but {classifier.class_path} "
                         "is not a residual network")
    params = {**estimator.get_params(), "cell": kind}
    params.pop("loss")
    return ResidualRNNRegressor(**params)


def build_regression_pipeline(kind: str, classifier: ClassifierConfig, seed: int = 0, split_seed: int = 0) -> Pipeline:
    """Fold-local scaling, then the ``kind`` regressor (:func:`regression_form`), seeded as the classifiers are."""
    return seeded(Pipeline([("scale", SequenceScaler()), ("regress", regression_form(kind, classifier))]), seed, split_seed)


def regressor_kind(classifier: ClassifierConfig) -> str:
    """The kind of ``classifier``'s estimator, whose regression form the severity rows start from."""
    return estimator_kind(build_estimator(classifier))
