"""The screening model: the stage-2 pipeline (scaler + classifier) fitted on a whole cohort, saved without pickle.

A folder holds `model.safetensors` (the network's tensors) and `screening.json` (the classifier config,
the estimator's parameters and fitted attributes, the training-cohort scaler statistics, the decision
threshold, the scoring contract the cohort's intensities were made under, and per-group reference
quantiles for reports). `diagnose` scores a new person's videos under that same contract. Loading rebuilds the pipeline through the classifier registry and cannot execute code.
Only estimators with a pickle-free fitted state (the residual LSTM/GRU) can be saved.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from safetensors.torch import load_file
from safetensors.torch import save as safetensors_bytes
from sklearn.pipeline import Pipeline

from dfer_pd.common.constants import COHORT_LABELS, EXPRESSIONS
from dfer_pd.common.files import atomic_write, atomic_write_json
from dfer_pd.stage1.contract import ContractError, ScoringContract
from dfer_pd.stage1.modeling_dfer_clip import intensities_from_cosine, log_intensities_from_cosine
from dfer_pd.stage2.classifiers import ClassifierConfig, build_pipeline, pickle_free_kinds, saves_without_pickle
from dfer_pd.stage2.features import FEATURE_NAMES, CohortIntensities, SequenceScaler, expression_features, sequence_inputs
from dfer_pd.stage2.splits import CVConfig

FORMAT = "dfer-pd-screening"
VERSION = 2  # 2: the fitted pipeline (estimator params + fitted attributes); 1 held a bare LightningModule
QUANTILES = (5, 25, 50, 75, 95)


class ScreeningModelError(ValueError):
    """A screening model folder that is missing, corrupt, or does not match what it is used with."""


def reference_distributions(data: CohortIntensities) -> dict:
    """Per group (HC, PD): quantiles of each log-intensity (cos / tau) and of each Eq. 4 feature per video."""
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
    return reference


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

    def predict_proba(self, cosine: np.ndarray) -> np.ndarray:
        """P(PD) for (N, 4, 4) cosines (or one subject's (4, 4))."""
        cosine = np.asarray(cosine, dtype=np.float64)
        single = cosine.ndim == 2
        cosine = cosine[None] if single else cosine
        inputs = sequence_inputs(intensities_from_cosine(cosine, self.tau), self.classifier.features)
        p_pd = self.pipeline.predict_proba(inputs)[:, 1]
        return p_pd[0] if single else p_pd

    def save(self, folder: str | Path) -> Path:
        estimator = self.pipeline.named_steps["classify"]
        if not saves_without_pickle(estimator):
            raise ScreeningModelError(_not_saveable(self.classifier.kind))
        tensors, fitted = estimator.export_fitted()
        scaler = self.pipeline.named_steps["scale"].scaler_
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
            "cv_summary": self.cv_summary,
        }
        folder = Path(folder)
        # Each file is renamed into place only when complete; the JSON, which loading reads first, goes last.
        with atomic_write(folder / "model.safetensors") as handle:
            handle.write(safetensors_bytes(tensors))
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
            classifier = ClassifierConfig(**meta["classifier"])
            pipeline = build_pipeline(classifier, seed=0)
            estimator = pipeline.named_steps["classify"]
            if not saves_without_pickle(estimator):
                raise ValueError(_not_saveable(classifier.kind))
            estimator.set_params(**meta["estimator"]["params"])
            fitted, input_size, statistics = meta["estimator"]["fitted"], meta["input_size"], meta["scaler"]
            contract = ScoringContract.from_dict(meta["contract"]) if meta.get("contract") else None
        except (KeyError, TypeError, ValueError, ContractError) as err:
            raise ScreeningModelError(f"{meta_path} does not describe a screening pipeline: {err}") from err
        expected_inputs = sequence_inputs(np.ones((1, 4, 4)), classifier.features).shape[-1]
        if not expected_inputs == input_size == fitted.get("n_features_in") == len(statistics["mean"]):
            raise ScreeningModelError(f"{meta_path}: trained on {input_size} inputs per video, "
                                      f"but '{classifier.features}' features have {expected_inputs}")
        if fitted.get("classes") != [0, 1]:
            raise ScreeningModelError(f"{meta_path}: classes must be [0, 1] (HC, PD), got {fitted.get('classes')}")
        try:
            estimator.import_fitted(load_file(str(weights_path)), fitted)
        except Exception as err:  # safetensors header errors, shape or key mismatches
            raise ScreeningModelError(
                f"{weights_path} does not match its screening.json ({classifier.kind}, {classifier.features} "
                f"features, input size {input_size}): {err}"
            ) from err
        pipeline.set_params(scale=SequenceScaler.from_statistics(statistics["mean"], statistics["scale"]))
        return cls(
            classifier=classifier,
            pipeline=pipeline,
            contract=contract,
            tau=meta["tau"],
            threshold=meta["threshold"],
            reference=meta.get("reference"),
            cv_summary=meta.get("cv_summary"),
            source=folder,
        )


def fit_screening_model(
    data: CohortIntensities,
    classifier: ClassifierConfig,
    cv: CVConfig,
    cv_summary: dict | None = None,
    seed: int | None = None,
) -> ScreeningModel:
    """Fit the classifier's pipeline on the whole cohort (after CV measured it); the residual networks
    early-stop on a validation split they carve from it. Refuses, before training, a classifier that
    cannot be saved without pickle."""
    pipeline = build_pipeline(classifier, cv.seeds[0] if seed is None else seed, cv)
    if not saves_without_pickle(pipeline.named_steps["classify"]):
        raise ScreeningModelError(_not_saveable(classifier.kind))
    pipeline.fit(sequence_inputs(data.intensities, classifier.features), data.labels)
    return ScreeningModel(classifier=classifier, pipeline=pipeline, contract=data.contract,
                          tau=None if data.contract is not None else data.tau, threshold=cv.threshold,
                          reference=reference_distributions(data), cv_summary=cv_summary)
