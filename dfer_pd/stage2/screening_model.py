"""The screening model: the stage-2 network trained on a whole cohort, saved without pickle.

A folder holds `model.safetensors` (the weights) and `screening.json` (the classifier config, the
training-cohort scaler statistics, the decision threshold, which stage-1 checkpoint produced the
intensities, and per-group reference quantiles for reports). Loading it cannot execute code.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from dfer_pd.common.constants import COHORT_LABELS, EXPRESSIONS
from dfer_pd.stage2.crossval import ClassifierConfig, CVConfig, fit_scaled_neural
from dfer_pd.stage2.features import FEATURE_NAMES, CohortIntensities, SequenceScaler, expression_features, sequence_inputs
from dfer_pd.stage2.module import PDClassifierModule

FORMAT = "dfer-pd-screening"
VERSION = 1
QUANTILES = (5, 25, 50, 75, 95)


class ScreeningModelError(ValueError):
    """A screening model folder that is missing, corrupt, or does not match what it is used with."""


def reference_distributions(data: CohortIntensities) -> dict:
    """Per group (HC, PD): quantiles of each log-intensity (cos / tau) and of each Eq. 4 feature per video."""
    logits = data.cosine / data.tau
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


@dataclass
class ScreeningModel:
    classifier: ClassifierConfig
    module: PDClassifierModule
    scaler: SequenceScaler
    tau: float
    threshold: float = 0.5
    stage1: dict | None = None
    reference: dict | None = None
    cv_summary: dict | None = None
    source: Path | None = None  # the folder it was loaded from, for messages

    def predict_proba(self, cosine: np.ndarray) -> np.ndarray:
        """P(PD) for (N, 4, 4) cosines (or one subject's (4, 4))."""
        cosine = np.asarray(cosine, dtype=np.float64)
        single = cosine.ndim == 2
        cosine = cosine[None] if single else cosine
        inputs = self.scaler.transform(sequence_inputs(np.exp(cosine / self.tau), self.classifier.features))
        with torch.no_grad():
            p_pd = self.module.predict_proba(torch.as_tensor(inputs, dtype=torch.float32)).numpy().astype(np.float64)
        return p_pd[0] if single else p_pd

    def save(self, folder: str | Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        scaler = self.scaler.scaler_
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "classifier": asdict(self.classifier),
            "input_size": int(self.module.hparams.input_size),
            "scaler": {"mean": scaler.mean_.tolist(), "scale": scaler.scale_.tolist()},
            "tau": float(self.tau),
            "threshold": float(self.threshold),
            "expressions": list(EXPRESSIONS),
            "feature_names": list(FEATURE_NAMES),
            "stage1": self.stage1,
            "reference": self.reference,
            "cv_summary": self.cv_summary,
        }
        # Temporary names, then renames: an interrupted save never leaves a half-written model.
        weights_tmp, meta_tmp = folder / ".model.safetensors.tmp", folder / ".screening.json.tmp"
        save_file({k: v.contiguous() for k, v in self.module.state_dict().items()}, str(weights_tmp))
        meta_tmp.write_text(json.dumps(meta, indent=2))
        os.replace(weights_tmp, folder / "model.safetensors")
        os.replace(meta_tmp, folder / "screening.json")
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
        if meta.get("format") != FORMAT or meta.get("version") != VERSION:
            raise ScreeningModelError(f"{meta_path}: not a {FORMAT} v{VERSION} file")
        classifier = ClassifierConfig(**meta["classifier"])
        module = PDClassifierModule(
            input_size=meta["input_size"], hidden_size=classifier.hidden_size, num_layers=classifier.num_layers,
            cell=classifier.kind, residual=classifier.residual, dropout=classifier.dropout, loss=classifier.loss,
        )
        try:
            module.load_state_dict(load_file(str(weights_path)))
        except Exception as err:  # safetensors header errors, shape or key mismatches
            raise ScreeningModelError(
                f"{weights_path} does not match its screening.json ({classifier.kind}, {classifier.features} "
                f"features, input size {meta['input_size']}): {err}"
            ) from err
        expected_inputs = sequence_inputs(np.ones((1, 4, 4)), classifier.features).shape[-1]
        if expected_inputs != meta["input_size"] or len(meta["scaler"]["mean"]) != expected_inputs:
            raise ScreeningModelError(f"{meta_path}: trained on {meta['input_size']} inputs per video, "
                                      f"but '{classifier.features}' features have {expected_inputs}")
        return cls(
            classifier=classifier,
            module=module.eval(),
            scaler=SequenceScaler.from_statistics(meta["scaler"]["mean"], meta["scaler"]["scale"]),
            tau=meta["tau"],
            threshold=meta["threshold"],
            stage1=meta.get("stage1"),
            reference=meta.get("reference"),
            cv_summary=meta.get("cv_summary"),
            source=folder,
        )


def fit_screening_model(
    data: CohortIntensities,
    classifier: ClassifierConfig,
    cv: CVConfig,
    stage1: dict | None = None,
    cv_summary: dict | None = None,
    seed: int | None = None,
) -> ScreeningModel:
    """Train the classifier on the whole cohort (after CV measured it), early-stopped on a validation split."""
    if not classifier.is_neural:
        raise ValueError(f"a screening model is a residual LSTM/GRU; '{classifier.kind}' baselines are CV-only")
    inputs = sequence_inputs(data.intensities, classifier.features)
    scaler, module = fit_scaled_neural(inputs, data.labels, np.arange(len(data)), classifier,
                                       cv.seeds[0] if seed is None else seed, cv)
    return ScreeningModel(classifier=classifier, module=module, scaler=scaler, tau=data.tau, threshold=cv.threshold,
                          stage1=stage1, reference=reference_distributions(data), cv_summary=cv_summary)
