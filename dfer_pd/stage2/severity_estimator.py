"""The MDS-UPDRS 3.2 estimate a screening model carries when `train-pd --target severity` trained it.

The regression form of the screening classifier (:mod:`dfer_pd.stage2.regressors`: the residual LSTM/GRU with a
one-output MSE head), fitted on every scored subject of the cohort after cross-validation measured it
(:mod:`dfer_pd.stage2.severity`), with its own fold-free scaler and its early stopping on a validation split carved
from those subjects. Saved without pickle: its weights in ``severity.safetensors``; its config, parameters, scaler
statistics, target scaling and cross-validated figures (MAE and Spearman's rho with their intervals) in
``screening.json``. `diagnose` gives the estimate only with a verdict, as a research estimate, not a clinical rating.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from sklearn.pipeline import Pipeline

from dfer_pd.stage2.classifiers import estimator_kind, fit_pipelines, saves_without_pickle, stored_classifier
from dfer_pd.stage2.features import CohortIntensities, SequenceScaler, sequence_inputs
from dfer_pd.stage2.kinematics import NUM_KINEMATIC_FEATURES
from dfer_pd.stage2.regressors import build_regression_pipeline, regressor_kind
from dfer_pd.stage2.settings import ClassifierConfig, CVConfig

SEVERITY_FILE = "severity.safetensors"
NOTE = "a research estimate, not a clinical rating"
CV_FIGURES: tuple[str, ...] = ("mae", "spearman", "kappa")


def cv_figures(summary: dict[str, float], n_splits: int) -> dict[str, Any]:
    """The figures of :func:`dfer_pd.stage2.severity.run_severity`'s summary a screening model keeps."""
    figures: dict[str, Any] = {"subjects": int(summary["severity/subjects"]), "repeats": int(summary["severity/repeats"]),
                               "n_splits": int(n_splits), "confidence": float(summary["severity/confidence"])}
    for metric in CV_FIGURES:
        figures[metric] = float(summary[f"severity/{metric}_mean"])
        figures[f"{metric}_ci"] = [float(summary[f"severity/{metric}_ci_low"]), float(summary[f"severity/{metric}_ci_high"])]
    if "severity/permutation_p_spearman" in summary:
        figures["permutation_p_spearman"] = float(summary["severity/permutation_p_spearman"])
    return figures


@dataclass
class SeverityEstimator:
    """``pipeline`` (scaler + regression form of ``config``'s kind) fitted on the scored subjects; ``cv`` its
    cross-validated figures (:func:`cv_figures`)."""

    config: ClassifierConfig
    pipeline: Pipeline
    cv: dict[str, Any]

    @property
    def features(self) -> str:
        return self.config.features

    def estimate(self, inputs: np.ndarray) -> np.ndarray:
        """The estimated score of each (T, F) sequence of ``inputs``, clipped to the 0-4 scale."""
        return np.clip(np.asarray(self.pipeline.predict(inputs), dtype=np.float64), 0.0, 4.0)

    def performance(self) -> str:
        """``cross-validated MAE 0.61 (95% CI 0.52-0.70), Spearman rho 0.78 (95% CI 0.70-0.86); 10 x 5-fold CV on
        80 scored subjects``."""
        cv, level = self.cv, f"{self.cv['confidence']:.0%}"

        def figure(metric: str, label: str) -> str:
            low, high = cv[f"{metric}_ci"]
            interval = f" ({level} CI {low:.2f}-{high:.2f})" if math.isfinite(low) and math.isfinite(high) else ""
            return f"{label} {cv[metric]:.2f}{interval}"

        return (f"{figure('mae', 'cross-validated MAE')}, {figure('spearman', 'Spearman rho')}; "
                f"{cv['repeats']} x {cv['n_splits']}-fold CV on {cv['subjects']} scored subjects")

    def describe(self, score: float) -> str:
        """The line beside p(PD): the score to one decimal, its cross-validated error, and what it is."""
        low, high = self.cv["mae_ci"]
        interval = f", {self.cv['confidence']:.0%} CI {low:.2f}-{high:.2f}" if math.isfinite(low) and math.isfinite(high) else ""
        return (f"Estimated MDS-UPDRS 3.2 (facial expression, 0-4): {score:.1f}, cross-validated MAE "
                f"{self.cv['mae']:.2f}{interval}; {NOTE}")

    def export(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """(tensors for :data:`SEVERITY_FILE`, the JSON-able rest: config, parameters, scaler, target scaling, figures)."""
        estimator = self.pipeline[-1]
        if not saves_without_pickle(estimator):
            raise ValueError(f"the '{estimator_kind(estimator)}' severity regressor has no pickle-free format")
        tensors, fitted = estimator.export_fitted()
        scaler = self.pipeline[0].scaler_
        return tensors, {"config": asdict(self.config), "input_size": int(fitted["n_features_in"]),
                         "scaler": {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()},
                         "estimator": {"params": estimator.get_params(deep=False), "fitted": fitted},
                         "target_scaling": {"mean": fitted["target_mean"], "scale": fitted["target_scale"]},
                         "cv": self.cv}

    @classmethod
    def from_export(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> SeverityEstimator:
        """Rebuild :meth:`export`'s estimator; a ValueError (KeyError, TypeError) says what does not match."""
        config = stored_classifier(meta["config"])
        kind = regressor_kind(config)
        pipeline = build_regression_pipeline(kind, config)
        estimator = pipeline[-1]
        estimator.set_params(**meta["estimator"]["params"])
        fitted, statistics, input_size = dict(meta["estimator"]["fitted"]), meta["scaler"], meta["input_size"]
        expected = sequence_inputs(np.ones((1, 4, 4)), config.features, np.ones((1, 4, NUM_KINEMATIC_FEATURES))).shape[-1]
        if not expected == input_size == fitted.get("n_features_in") == len(statistics["mean"]) == len(statistics["scale"]):
            raise ValueError(f"trained on {input_size} inputs per video, but '{config.features}' features have {expected}")
        scaling = meta["target_scaling"]
        fitted.update(target_mean=float(scaling["mean"]), target_scale=float(scaling["scale"]))
        if not (math.isfinite(fitted["target_mean"]) and math.isfinite(fitted["target_scale"]) and fitted["target_scale"] > 0):
            raise ValueError(f"target scaling must be finite with a positive scale, got {scaling}")
        cv = meta["cv"]
        if not all(isinstance(cv.get(m), (int, float)) and len(cv.get(f"{m}_ci", ())) == 2 for m in CV_FIGURES):
            raise ValueError("the cross-validated figures (mae, spearman, kappa with intervals) are missing")
        try:
            estimator.import_fitted(tensors, fitted)
        except Exception as err:  # missing or unexpected keys, shape mismatches
            raise ValueError(f"the weights do not match the severity regressor ({kind}, {config.features} "
                             f"features, input size {input_size}): {err}") from err
        pipeline.set_params(scale=SequenceScaler.from_statistics(statistics["mean"], statistics["scale"]))
        return cls(config, pipeline, cv)


def fit_severity_estimator(data: CohortIntensities, classifier: ClassifierConfig, cv: CVConfig,
                           summary: dict[str, float], seed: int | None = None) -> SeverityEstimator:
    """The regression form of ``classifier`` fitted on every subject of ``data`` with a score (the scaler on them
    too; early stopping on a validation split carved from them), carrying ``summary``'s cross-validated figures."""
    from dfer_pd.stage2.severity import scored_subjects

    scored = scored_subjects(data, cv.n_splits)
    kind = regressor_kind(classifier)
    pipeline = build_regression_pipeline(kind, classifier, cv.seeds[0] if seed is None else seed, cv.split_seed)
    if not saves_without_pickle(pipeline[-1]):
        raise ValueError(f"the '{kind}' severity regressor has no pickle-free format")
    fit_pipelines([pipeline], [scored.inputs(classifier.features)], [scored.updrs_3_2])
    return SeverityEstimator(classifier, pipeline, cv_figures(summary, cv.n_splits))
