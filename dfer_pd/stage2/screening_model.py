"""The screening model: the stage-2 pipeline (scaler + classifier) fitted on a whole cohort, saved without pickle.

A folder holds `model.safetensors` (the network's tensors) and `screening.json` (the classifier config,
the estimator's parameters and fitted attributes, the training-cohort scaler statistics, the decision
threshold, the scoring contract the cohort's intensities were made under, per-group reference
quantiles for reports, and the calibration of p(PD) learnt from cross-validation's out-of-fold predictions
with its Brier scores and reliability curves; the verdict is calibrated p(PD) >= the threshold, both
probabilities; the out-of-distribution check of :mod:`dfer_pd.stage2.typicality` with its method, threshold
and target share, and how often the whole gate refused the cohort's own subjects, per group; its reference
features in `typicality.safetensors`; with `train-pd --target severity`, the MDS-UPDRS 3.2 regressor of
:mod:`dfer_pd.stage2.severity_estimator`, its weights in `severity.safetensors`). `diagnose` scores a new person's videos under that same contract.
Loading rebuilds the pipeline through the classifier registry and cannot execute code.
Only estimators with a pickle-free fitted state (the residual LSTM/GRU) can be saved.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from sklearn.pipeline import Pipeline

from dfer_pd.common.constants import COHORT_LABELS, EXPRESSIONS
from dfer_pd.common.files import atomic_write, atomic_write_json
from dfer_pd.stage1.contract import ContractError, ScoringContract
from dfer_pd.stage1.modeling_dfer_clip import intensities_from_cosine, log_intensities_from_cosine
from dfer_pd.stage2.classifiers import (
    build_pipeline,
    estimator_kind,
    fit_pipelines,
    pickle_free_kinds,
    resolve_classifier,
    saves_without_pickle,
    stored_classifier,
)
from dfer_pd.stage2.settings import ClassifierConfig
from dfer_pd.stage2.features import (
    FEATURE_NAMES, KINEMATIC_KINDS, CohortIntensities, SequenceScaler, expression_features, sequence_inputs,
)
from dfer_pd.stage2.kinematics import NUM_KINEMATIC_FEATURES
from dfer_pd.stage2.settings import CVConfig
from dfer_pd.stage2.severity_estimator import SEVERITY_FILE, SeverityEstimator, fit_severity_estimator
from dfer_pd.stage2.statistics import Calibrator
from dfer_pd.stage2.typicality import TypicalityModel, fit_typicality, gate_refusals

FORMAT = "dfer-pd-screening"
TYPICALITY_FILE = "typicality.safetensors"  # the out-of-distribution check's reference features
VERSION = 3  # 3: the classifier by class_path + init_args; 2: by kind and copied fields; 1: a bare LightningModule
QUANTILES = (5, 25, 50, 75, 95)


class ScreeningModelError(ValueError):
    """A screening model folder that is missing, corrupt, or does not match what it is used with."""


def reference_distributions(data: CohortIntensities) -> dict:
    """Per group (HC, PD): quantiles of each log-intensity (cos / tau), each Eq. 4 feature and (when the
    cohort has them) each landmark kinematic feature per video."""
    logits = log_intensities_from_cosine(data.cosine, data.tau)
    features = expression_features(data.intensities)
    reference = {}
    for label, name in enumerate(COHORT_LABELS):
        rows = data.labels == label
        reference[name] = {
            "n": int(rows.sum()),
            "log_intensity": np.percentile(logits[rows], QUANTILES, axis=0).tolist(),  # (5, 4, 4)
            "features": np.percentile(features[rows], QUANTILES, axis=0).tolist(),  # (5, 4, 8)
        }
        if data.kinematics is not None:
            reference[name]["kinematics"] = np.percentile(data.kinematics[rows], QUANTILES, axis=0).tolist()  # (5, 4, 12)
    return reference


def calibration_from_cv(predictions: pd.DataFrame, method: str = "auto", threshold: float = 0.5,
                        seed: int = 0) -> tuple[Calibrator, dict]:
    """A calibrator fitted on cross-validation's out-of-fold predictions (every repeat), and its report.

    As scikit-learn's ``CalibratedClassifierCV(ensemble=False)`` does, the map is learnt from out-of-fold
    predictions and then applied to the model trained on all subjects. ``auto`` picks none, Platt or
    isotonic by cross-fitted Brier score (:func:`~dfer_pd.stage2.statistics.choose_calibration`); a Platt
    slope that is not positive leaves p(PD) uncalibrated (``note`` says so). The report's calibrated Brier
    score and reliability curve are cross-fitted (each subject calibrated by a map fitted without it), so
    they are honest estimates, not the fit to itself.

    One decision scale: the deployed verdict is calibrated p(PD) >= ``threshold``, a probability the report
    states. ``raw_threshold`` is the classifier's raw p(PD) that this corresponds to, and ``decision`` the
    cross-fitted accuracy, sensitivity and specificity of that rule (CV's figures are of raw p >= ``threshold``).
    """
    from dfer_pd.stage2.statistics import brier_score, choose_calibration, reliability_curve

    p_pd, labels = predictions["p_pd"].to_numpy(np.float64), predictions["label"].to_numpy()
    choice = choose_calibration(p_pd, labels, predictions["subject_id"].to_numpy(), method, seed=seed)
    calibrator, honest = choice.calibrator, choice.cross_fitted
    platt = calibrator if calibrator.method == "platt" else Calibrator.fit(p_pd, labels, "platt")
    slope = platt.params["a"] if platt.method == "platt" else platt.params["platt_a"]
    note = calibrator.note or (platt.note if method == "auto" and platt.method == "none" else "")
    decided = (honest >= threshold).astype(int)
    report = {
        "method": calibrator.method,
        "requested": method,
        "note": note,
        "platt_slope": float(slope),
        "brier_candidates": choice.candidates,
        "n_predictions": int(len(p_pd)),
        "n_subjects": int(predictions["subject_id"].nunique()),
        "brier_raw": brier_score(labels, p_pd),
        "brier_calibrated": brier_score(labels, honest),
        "reliability_raw": reliability_curve(labels, p_pd),
        "reliability_calibrated": reliability_curve(labels, honest),
        "threshold": float(threshold),
        "raw_threshold": calibrator.raw_threshold(float(threshold)),
        "decision": {"accuracy": float((decided == labels).mean()),
                     "sensitivity": float(decided[labels == 1].mean()) if (labels == 1).any() else float("nan"),
                     "specificity": float(1 - decided[labels == 0].mean()) if (labels == 0).any() else float("nan")},
    }
    return calibrator, report


def describe_calibration(report: dict) -> str:
    """One line for the outputs: which calibration, why, its cross-fitted Brier score and the decision rule."""
    method = report["method"]
    chosen = (f"chosen by cross-fitted Brier score among {', '.join(f'{m} {b:.3f}' for m, b in report['brier_candidates'].items())}"
              if report.get("requested") == "auto" else f"as requested ({report.get('requested', method)})")
    line = f"p(PD) calibration: {method}, {chosen}"
    if report.get("note"):
        line += f"; {report['note']}"
    return (line + f"; verdict: calibrated p(PD) >= {report['threshold']:.2f} (raw p(PD) >= "
            f"{report['raw_threshold']:.3f}), cross-fitted accuracy {report['decision']['accuracy']:.3f}")


def _not_saveable(kind: str) -> str:
    return (f"a screening model is saved without pickle, and the '{kind}' classifier has no pickle-free "
            f"format (the scikit-learn baselines are CV-only); use one of {list(pickle_free_kinds())}")


@dataclass
class ScreeningModel:
    """``pipeline`` = :func:`~dfer_pd.stage2.classifiers.build_pipeline` of ``classifier``, fitted on a cohort."""

    classifier: ClassifierConfig
    pipeline: Pipeline
    contract: ScoringContract | None = None  # how the training cohort was scored; None only for hand-made intensities
    tau: float | None = None  # only without a contract
    threshold: float = 0.5
    reference: dict | None = None
    cv_summary: dict | None = None
    source: Path | None = None  # the folder it was loaded from, for messages
    typicality: TypicalityModel | None = None  # the out-of-distribution check diagnose runs before a verdict
    gate_report: dict | None = None  # how often that gate refused the cohort's subjects, per group
    kinematics_settings: dict | None = None  # how the cohort's landmark kinematics were read, when it had them
    calibration: Calibrator = field(default_factory=Calibrator)  # raw p(PD) -> calibrated p(PD); "none" by default
    calibration_report: dict | None = None  # out-of-fold Brier scores and reliability curves, raw and calibrated
    severity: SeverityEstimator | None = None  # MDS-UPDRS 3.2 from the same features (train-pd --target severity)

    def __post_init__(self) -> None:
        if self.contract is not None:
            self.tau = self.contract.tau
        if self.tau is None:
            raise ScreeningModelError("a screening model needs the scoring contract of its cohort (or a tau)")

    def scoring_contract(self) -> ScoringContract:
        """How a new person's videos must be scored to be comparable with the training cohort."""
        if self.contract is None:
            raise ScreeningModelError(
                f"{self.source or 'this screening model'} was trained on intensities without a scoring contract "
                "(a hand-made or synthetic intensity file), so nothing says how videos must be scored for it: "
                "train it with `dfer-pd train-pd --cohort.manifest ... --extraction.checkpoint ...`")
        return self.contract

    def performance(self) -> str:
        """How good the model's p(PD) is, from its cross-validation: accuracy and ROC AUC with their intervals.

        ``cross-validated accuracy 0.880 (95% CI 0.812-0.948), ROC AUC 0.930 (95% CI 0.874-0.986); 10 x 5-fold CV;
        p(PD) calibrated (platt, Brier 0.101)``. Older models without intervals give mean ± std.
        """
        summary = self.cv_summary or {}
        if "cv/accuracy_mean" not in summary:
            return "cross-validated accuracy unknown (a screening model saved without its CV summary)"
        level = f"{summary.get('cv/confidence', 0.95):.0%}"
        parts = []
        for name, label in (("accuracy", "cross-validated accuracy"), ("roc_auc", "ROC AUC")):
            mean = summary.get(f"cv/{name}_mean")
            low, high = summary.get(f"cv/{name}_ci_low"), summary.get(f"cv/{name}_ci_high")
            if mean is None:
                continue
            if low is not None and high is not None and low == low and high == high:
                parts.append(f"{label} {mean:.3f} ({level} CI {low:.3f}-{high:.3f})")
            else:
                parts.append(f"{label} {mean:.3f} ± {summary.get(f'cv/{name}_std', float('nan')):.3f}")
        design = (f"{int(summary['cv/repeats'])} x {int(summary['cv/n_splits'])}-fold CV"
                  if "cv/repeats" in summary else "k-fold CV")
        line = ", ".join(parts) + f"; {design}"
        if self.calibration.method != "none" and self.calibration_report:
            line += (f"; p(PD) calibrated ({self.calibration.method}, out-of-fold Brier "
                     f"{self.calibration_report['brier_calibrated']:.3f})")
        elif (self.calibration_report or {}).get("note"):
            line += f"; {self.calibration_report['note']}"
        return line

    def gate(self) -> str:
        """How often diagnose's gate (out of distribution, or a probably swapped file) refused the cohort's own
        subjects, per group, each scored against the others: indeterminate results belong beside the accuracy."""
        if not self.gate_report:
            return "no out-of-distribution check (a screening model saved without one)"
        parts = [f"{name} {g['refused']}/{g['n']} ({g['interval'][0]:.1%}-{g['interval'][1]:.1%})"
                 for name, g in self.gate_report.items()]
        return (f"gate: no verdict for {', '.join(parts)} of the cohort's subjects (each against the others; "
                f"out-of-distribution threshold {self.typicality.threshold:.2f}, target "
                f"{self.typicality.target_share:.0%} per group)")

    @property
    def uses_kinematics(self) -> bool:
        return self.classifier.features in KINEMATIC_KINDS

    def predict_proba(self, cosine: np.ndarray, kinematics: np.ndarray | None = None,
                      calibrated: bool = True) -> np.ndarray:
        """P(PD) for (N, 4, 4) cosines (or one subject's (4, 4)), with (N, 4, 12) kinematics for the kinematic kinds.

        Calibrated (see :attr:`calibration`) unless ``calibrated=False``; :attr:`threshold` is on the same scale.
        """
        cosine = np.asarray(cosine, dtype=np.float64)
        single = cosine.ndim == 2
        cosine = cosine[None] if single else cosine
        if kinematics is not None and single:
            kinematics = np.asarray(kinematics)[None]
        inputs = sequence_inputs(intensities_from_cosine(cosine, self.tau), self.classifier.features, kinematics)
        p_pd = self.pipeline.predict_proba(inputs)[:, 1]
        if calibrated:
            p_pd = np.asarray(self.calibration(p_pd), dtype=np.float64)
        return p_pd[0] if single else p_pd

    def estimate_severity(self, cosine: np.ndarray, kinematics: np.ndarray | None = None) -> float | None:
        """The estimated MDS-UPDRS 3.2 score (0-4) of one subject's (4, 4) cosines (and (4, 12) kinematics for the
        kinematic kinds); None when the model was trained without severity."""
        if self.severity is None:
            return None
        intensities = intensities_from_cosine(np.asarray(cosine, dtype=np.float64)[None], self.tau)
        uses_kinematics = self.severity.features in KINEMATIC_KINDS
        inputs = sequence_inputs(intensities, self.severity.features,
                                 np.asarray(kinematics)[None] if uses_kinematics else None)
        return float(self.severity.estimate(inputs)[0])

    def save(self, folder: str | Path) -> Path:
        estimator = self.pipeline[-1]
        if not saves_without_pickle(estimator):
            raise ScreeningModelError(_not_saveable(estimator_kind(estimator)))
        tensors, fitted = estimator.export_fitted()
        scaler = self.pipeline[0].scaler_
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "classifier": asdict(self.classifier),
            "input_size": int(fitted["n_features_in"]),
            "scaler": {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()},
            "estimator": {"params": estimator.get_params(deep=False), "fitted": fitted},
            "contract": None if self.contract is None else self.contract.to_dict(),
            "tau": float(self.tau),
            "threshold": float(self.threshold),
            "expressions": list(EXPRESSIONS),
            "feature_names": list(FEATURE_NAMES),
            "reference": self.reference,
            "typicality": None if self.typicality is None else self.typicality.to_dict(),
            "gate_report": self.gate_report,
            "kinematics_settings": self.kinematics_settings,
            "cv_summary": self.cv_summary,
            "calibration": self.calibration.to_dict(),
            "calibration_report": self.calibration_report,
        }
        severity_tensors = None
        if self.severity is not None:  # only then: a model without severity is saved as before
            try:
                severity_tensors, meta["severity"] = self.severity.export()
            except ValueError as err:
                raise ScreeningModelError(str(err)) from err
        folder = Path(folder)
        # Each file is renamed into place only when complete; the JSON, which loading reads first, goes last.
        with atomic_write(folder / "model.safetensors") as handle:
            handle.write(safetensors_bytes(tensors))
        if self.typicality is not None:
            with atomic_write(folder / TYPICALITY_FILE) as handle:
                handle.write(safetensors_bytes({"reference": torch.from_numpy(self.typicality.reference.astype(np.float32))}))
        if severity_tensors is not None:
            with atomic_write(folder / SEVERITY_FILE) as handle:
                handle.write(safetensors_bytes(severity_tensors))
        else:  # an earlier run's severity weights in this folder belong to no model now
            (folder / SEVERITY_FILE).unlink(missing_ok=True)
        atomic_write_json(folder / "screening.json", meta)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> ScreeningModel:
        folder = Path(folder)
        meta_path, weights_path = folder / "screening.json", folder / "model.safetensors"
        if not meta_path.is_file() or not weights_path.is_file():
            raise ScreeningModelError(f"{folder} is not a screening model folder (needs screening.json and model.safetensors)")
        try:
            meta = json.loads(meta_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ScreeningModelError(f"{meta_path} is corrupt: {err}") from err
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
            found = meta.get("version") if isinstance(meta, dict) and meta.get("format") == FORMAT else None
            raise ScreeningModelError(f"{meta_path}: not a {FORMAT} v{VERSION} file"
                                      + (f" (v{found}: re-run `dfer-pd train-pd` to save it again)" if found else ""))
        try:
            classifier = stored_classifier(meta["classifier"])
            pipeline = build_pipeline(classifier)
            estimator = pipeline[-1]
            estimator.set_params(**meta["estimator"]["params"])
            fitted, input_size, statistics = meta["estimator"]["fitted"], meta["input_size"], meta["scaler"]
            contract = ScoringContract.from_dict(meta["contract"]) if meta.get("contract") else None
            calibration = Calibrator.from_dict(meta.get("calibration"))  # absent in older files: none
        except (KeyError, TypeError, ValueError, ContractError) as err:
            raise ScreeningModelError(f"{meta_path} does not describe a screening pipeline: {err}") from err
        expected_inputs = sequence_inputs(np.ones((1, 4, 4)), classifier.features,
                                          np.ones((1, 4, NUM_KINEMATIC_FEATURES))).shape[-1]
        if not expected_inputs == input_size == fitted.get("n_features_in") == len(statistics["mean"]):
            raise ScreeningModelError(f"{meta_path}: trained on {input_size} inputs per video, "
                                      f"but '{classifier.features}' features have {expected_inputs}")
        if fitted.get("classes") != [0, 1]:
            raise ScreeningModelError(f"{meta_path}: classes must be [0, 1] (HC, PD), got {fitted.get('classes')}")
        try:
            estimator.import_fitted(load_file(str(weights_path)), fitted)
        except Exception as err:  # safetensors header errors, shape or key mismatches
            raise ScreeningModelError(
                f"{weights_path} does not match its screening.json ({classifier.name}, {classifier.features} "
                f"features, input size {input_size}): {err}"
            ) from err
        pipeline.set_params(scale=SequenceScaler.from_statistics(statistics["mean"], statistics["scale"]))
        typicality = None
        if meta.get("typicality"):
            try:
                reference = load_file(str(folder / TYPICALITY_FILE))["reference"].numpy()
                typicality = TypicalityModel.from_dict(meta["typicality"], reference)
            except Exception as err:  # a missing or corrupt file, a missing key
                raise ScreeningModelError(f"{folder / TYPICALITY_FILE}: the out-of-distribution check's reference "
                                          f"features cannot be read ({err}); re-run `dfer-pd train-pd`") from err
        severity = None
        if meta.get("severity"):
            severity_path = folder / SEVERITY_FILE
            try:
                tensors = load_file(str(severity_path))
            except Exception as err:  # a missing or corrupt file
                raise ScreeningModelError(f"{severity_path}: the severity regressor's weights cannot be read ({err}); "
                                          "re-run `dfer-pd train-pd --target severity`") from err
            try:
                severity = SeverityEstimator.from_export(meta["severity"], tensors)
            except (KeyError, TypeError, ValueError) as err:
                raise ScreeningModelError(f"{severity_path} and the severity part of {meta_path} do not describe "
                                          f"a severity regressor: {err}") from err
        return cls(
            classifier=classifier,
            pipeline=pipeline,
            contract=contract,
            tau=meta["tau"],
            threshold=meta["threshold"],
            reference=meta.get("reference"),
            typicality=typicality,
            gate_report=meta.get("gate_report"),
            kinematics_settings=meta.get("kinematics_settings"),
            cv_summary=meta.get("cv_summary"),
            source=folder,
            calibration=calibration,
            calibration_report=meta.get("calibration_report"),
            severity=severity,
        )


def fit_screening_model(
    data: CohortIntensities,
    classifier: ClassifierConfig,
    cv: CVConfig,
    cv_summary: dict | None = None,
    seed: int | None = None,
    kinematics_settings: dict | None = None,
    calibration: Calibrator | None = None,
    calibration_report: dict | None = None,
    severity: dict[str, float] | None = None,
) -> ScreeningModel:
    """Fit the classifier's pipeline on the whole cohort (after CV measured it); the residual networks
    early-stop on a validation split they carve from it. Refuses, before training, a classifier that
    cannot be saved without pickle. With ``severity`` (the summary of
    :func:`~dfer_pd.stage2.severity.run_severity`), the classifier's regression form is fitted on the subjects
    with an MDS-UPDRS 3.2 score too, and keeps those cross-validated figures."""
    classifier = resolve_classifier(classifier)
    pipeline = build_pipeline(classifier, cv.seeds[0] if seed is None else seed, cv.split_seed)
    if not saves_without_pickle(pipeline[-1]):
        raise ScreeningModelError(_not_saveable(estimator_kind(pipeline[-1])))
    fit_pipelines([pipeline], [data.inputs(classifier.features)], [data.labels])
    severity_estimator = None
    if severity is not None:
        severity_estimator = fit_severity_estimator(data, classifier, cv, severity, seed)
    calibration = calibration or Calibrator()
    typicality = gate_report = None
    if np.bincount(data.labels, minlength=2).min() >= 2:  # the out-of-distribution check needs both groups
        if data.video_features is not None:
            typicality = fit_typicality(data.video_features, data.labels, "video_features")
        else:  # hand-made intensity files carry no stage-1 video features
            typicality = fit_typicality(data.cosine, data.labels, "cosine")
        gate_report = gate_refusals(typicality, data.cosine, data.labels, data.tau)
    # One decision scale: the verdict is calibrated p(PD) (what predict_proba returns and reports print)
    # >= cv.threshold, a probability; calibration_report says which raw p(PD) that is and how it scored.
    return ScreeningModel(classifier=classifier, pipeline=pipeline, contract=data.contract,
                          tau=None if data.contract is not None else data.tau,
                          threshold=float(cv.threshold),
                          calibration=calibration, calibration_report=calibration_report,
                          reference=reference_distributions(data), cv_summary=cv_summary,
                          typicality=typicality, gate_report=gate_report, severity=severity_estimator,
                          kinematics_settings=kinematics_settings or data.kinematics_settings)
