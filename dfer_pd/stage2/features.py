"""Stage-2 inputs: the cohort's 4x4 expression intensities, the paper's Eq. 4 features and their scaling.

Each subject performs four expressions (``EXPRESSIONS`` order); the stage-1 network scores every video
against the four classes, giving ``intensities[n, j, k]`` = intensity of class ``k`` in the video where
the subject was asked to show class ``j``. Eq. 4 of the paper turns each video's four intensities into
eight features that emphasise the asked-for ("highlight") class.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from dfer_pd.common.constants import NUM_EXPRESSIONS
from dfer_pd.common.files import atomic_save_npz
from dfer_pd.stage1.contract import ContractError, ScoringContract
from dfer_pd.stage1.modeling_dfer_clip import intensities_from_cosine
from dfer_pd.stage2.settings import SEQUENCE_KINDS

FEATURE_NAMES: tuple[str, ...] = ("hv", "mean", "std", "z", "pd", "range", "d_min", "d_max")
"""Eq. 4 features of one video, in the order :func:`expression_features` returns them."""

SequenceKind = Literal["raw", "processed", "both", "kinematics", "clip+kinematics"]
KINEMATIC_KINDS: tuple[str, ...] = ("kinematics", "clip+kinematics")


class CohortFileError(ValueError):
    """A cohort intensity file (or in-memory cohort) is missing fields or has inconsistent shapes."""


@dataclass
class CohortIntensities:
    """Per-subject stage-1 outputs: one row per subject, four videos x four classes.

    ``cosine`` is kept rather than the intensities because ``exp(cos / tau)`` reaches e^100 for
    tau = 0.01; the intensities are recomputed in float64 on access (Eq. 3). ``contract`` is the
    scoring contract the cosines were made under (None only for intensities that no checkpoint made,
    such as :func:`dfer_pd.synthetic.intensities.synthetic_cohort`'s); its tau is the tau.
    """

    subject_ids: list[str]
    labels: np.ndarray  # (N,) int, 1 = PD, 0 = HC
    cosine: np.ndarray  # (N, 4, 4) float64, [n, j, k] = cos sim of class k in the video asking class j
    contract: ScoringContract | None = None
    video_features: np.ndarray | None = None  # (N, 4, D) stage-1 video features, for t-SNE
    tau: float | None = None  # only without a contract
    kinematics: np.ndarray | None = None  # (N, 4, 12) landmark kinematics (dfer_pd.stage2.kinematics), if extracted
    kinematics_settings: dict | None = None  # how their landmarks were read (KinematicsSettings), travels with them
    excluded: dict | None = None  # subjects left out for unusable videos: {"count", "videos": [{..., "reason"}]}
    updrs_3_2: np.ndarray | None = None  # (N,) MDS-UPDRS item 3.2 (0-4) from the manifest, NaN where unknown
    hoehn_yahr: np.ndarray | None = None  # (N,) Hoehn and Yahr stage, NaN where unknown

    def __post_init__(self) -> None:
        self.subject_ids = [str(s) for s in self.subject_ids]
        self.labels = np.asarray(self.labels).astype(np.int64, copy=False)
        self.cosine = np.asarray(self.cosine, dtype=np.float64)
        if self.contract is not None:
            if self.tau is not None and float(self.tau) != self.contract.tau:
                raise CohortFileError(f"tau {self.tau} disagrees with the scoring contract's tau {self.contract.tau}")
            self.tau = self.contract.tau
        if self.tau is None:
            raise CohortFileError("cohort intensities need a scoring contract (or, for synthetic ones, a tau)")
        self.tau = float(self.tau)
        n = len(self.subject_ids)
        shape = (NUM_EXPRESSIONS, NUM_EXPRESSIONS)
        if self.cosine.shape != (n, *shape):
            raise CohortFileError(f"cosine must have shape ({n}, 4, 4), got {self.cosine.shape}")
        if self.labels.shape != (n,):
            raise CohortFileError(f"labels must have shape ({n},), got {self.labels.shape}")
        if not np.isin(self.labels, (0, 1)).all():
            raise CohortFileError(f"labels must be 0 (HC) or 1 (PD), got values {np.unique(self.labels)}")
        if len(set(self.subject_ids)) != n:
            raise CohortFileError("subject_ids must be unique: one row per subject")
        if not np.isfinite(self.cosine).all():
            raise CohortFileError("cosine contains NaN or inf")
        if not (self.tau > 0 and np.isfinite(self.tau)):
            raise CohortFileError(f"tau must be a positive finite number, got {self.tau}")
        if self.video_features is not None:
            self.video_features = np.asarray(self.video_features, dtype=np.float32)
            if self.video_features.ndim != 3 or self.video_features.shape[:2] != (n, NUM_EXPRESSIONS):
                raise CohortFileError(
                    f"video_features must have shape ({n}, 4, D), got {self.video_features.shape}"
                )
        if self.kinematics is not None:
            from dfer_pd.stage2.kinematics import NUM_KINEMATIC_FEATURES

            self.kinematics = np.asarray(self.kinematics, dtype=np.float64)
            if self.kinematics.shape != (n, NUM_EXPRESSIONS, NUM_KINEMATIC_FEATURES):
                raise CohortFileError(
                    f"kinematics must have shape ({n}, 4, {NUM_KINEMATIC_FEATURES}), got {self.kinematics.shape}")
            if not np.isfinite(self.kinematics).all():
                raise CohortFileError("kinematics contain NaN or inf")
        for name, allowed in (("updrs_3_2", np.arange(5.0)), ("hoehn_yahr", np.arange(11.0) / 2)):
            values = getattr(self, name)
            if values is None:
                continue
            values = np.asarray(values, dtype=np.float64)
            if values.shape != (n,):
                raise CohortFileError(f"{name} must have shape ({n},), got {values.shape}")
            known = values[~np.isnan(values)]
            if not np.isin(known, allowed).all():
                raise CohortFileError(f"{name} holds values outside {allowed.tolist()}: {np.setdiff1d(known, allowed)}")
            setattr(self, name, values if len(known) else None)

    def __len__(self) -> int:
        return len(self.subject_ids)

    @property
    def intensities(self) -> np.ndarray:
        """Eq. 3 intensities ``exp(cos / tau)`` in float64, shape (N, 4, 4)."""
        values = intensities_from_cosine(self.cosine, self.tau)
        if not np.isfinite(values).all():
            raise CohortFileError(
                f"exp(cosine / tau) overflows float64 with tau={self.tau}; cosine values must stay below "
                f"{np.log(np.finfo(np.float64).max) * self.tau:.4g}"
            )
        return values

    def subset(self, index: np.ndarray) -> CohortIntensities:
        """The rows ``index`` as a new cohort (copies)."""
        index = np.asarray(index)
        return CohortIntensities(
            subject_ids=[self.subject_ids[i] for i in index],
            labels=self.labels[index].copy(),
            cosine=self.cosine[index].copy(),
            contract=self.contract,
            video_features=None if self.video_features is None else self.video_features[index].copy(),
            tau=None if self.contract is not None else self.tau,
            kinematics=None if self.kinematics is None else self.kinematics[index].copy(),
            kinematics_settings=self.kinematics_settings,
            excluded=self.excluded,
            updrs_3_2=None if self.updrs_3_2 is None else self.updrs_3_2[index].copy(),
            hoehn_yahr=None if self.hoehn_yahr is None else self.hoehn_yahr[index].copy(),
        )

    def inputs(self, kind: SequenceKind = "processed") -> np.ndarray:
        """The classifiers' per-step inputs of ``kind`` (:func:`sequence_inputs`), kinematics included."""
        return sequence_inputs(self.intensities, kind, self.kinematics)

    def save(self, path: str | PathLike) -> Path:
        """Write a ``.npz`` readable without pickle; the scoring contract goes in as JSON text."""
        path = Path(path)
        arrays = {
            "subject_ids": np.asarray(self.subject_ids, dtype=np.str_),
            "labels": self.labels,
            "cosine": self.cosine,
        }
        if self.contract is not None:
            arrays["contract"] = np.asarray(self.contract.to_json())
        else:
            arrays["tau"] = np.asarray(self.tau, dtype=np.float64)
        if self.video_features is not None:
            arrays["video_features"] = self.video_features
        if self.kinematics is not None:
            arrays["kinematics"] = self.kinematics
            arrays["kinematics_settings"] = np.asarray(json.dumps(self.kinematics_settings or {}, sort_keys=True))
        for name in ("updrs_3_2", "hoehn_yahr"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name)
        if self.excluded:
            arrays["excluded"] = np.asarray(json.dumps(self.excluded, sort_keys=True))
        atomic_save_npz(path, **arrays)
        return path

    @classmethod
    def load(cls, path: str | PathLike) -> CohortIntensities:
        """Read a file written by :meth:`save`; errors name the file and what is wrong."""
        path = Path(path)
        if not path.is_file():
            raise CohortFileError(f"{path}: no such cohort intensity file")
        try:
            with np.load(path, allow_pickle=False) as archive:
                missing = {"subject_ids", "labels", "cosine"} - set(archive.files)
                if not {"contract", "tau"} & set(archive.files):
                    missing.add("contract")
                if missing:
                    raise CohortFileError(f"{path}: missing arrays {sorted(missing)}")
                fields = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile) as error:  # a damaged .npz is a damaged zip
            if isinstance(error, CohortFileError):
                raise
            raise CohortFileError(f"{path}: not a readable cohort .npz ({error})") from error
        try:
            contract = ScoringContract.from_json(str(fields["contract"])) if "contract" in fields else None
            return cls(
                subject_ids=fields["subject_ids"].tolist(),
                labels=fields["labels"],
                cosine=fields["cosine"],
                contract=contract,
                tau=None if contract is not None else float(fields["tau"]),
                video_features=fields.get("video_features"),
                kinematics=fields.get("kinematics"),
                kinematics_settings=json.loads(str(fields["kinematics_settings"])) or None
                if "kinematics_settings" in fields else None,
                excluded=json.loads(str(fields["excluded"])) if "excluded" in fields else None,
                updrs_3_2=fields.get("updrs_3_2"),
                hoehn_yahr=fields.get("hoehn_yahr"),
            )
        except (CohortFileError, ContractError) as error:
            raise CohortFileError(f"{path}: {error}") from error


def _expression_features_numpy(values: np.ndarray) -> np.ndarray:
    if values.shape[-2:] != (NUM_EXPRESSIONS, NUM_EXPRESSIONS):
        raise ValueError(f"intensities must have shape (..., 4, 4), got {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError("intensities contain NaN or inf")
    if (values < 0).any():
        raise ValueError("intensities must be non-negative (they are exp(cos / tau))")
    diagonal = np.arange(NUM_EXPRESSIONS)
    # Work on each video's values divided by its largest one: sums and squares then cannot overflow,
    # and every ratio-type feature (z, pd) is scale-free anyway.
    scale = values.max(axis=-1, keepdims=True)
    scale = np.where(scale > 0, scale, 1.0)
    unit = values / scale
    scale = scale[..., 0]
    hv = unit[..., diagonal, diagonal]
    mean = unit.mean(axis=-1)
    std = unit.std(axis=-1)
    low, high = unit.min(axis=-1), unit.max(axis=-1)
    z = np.divide(hv - mean, std, out=np.zeros_like(hv), where=std > 0)
    pd = np.divide(hv - mean, mean, out=np.zeros_like(hv), where=mean > 0)
    return np.stack(
        [hv * scale, mean * scale, std * scale, z, pd, (high - low) * scale, (hv - low) * scale, (hv - high) * scale],
        axis=-1,
    )


def expression_features(intensities: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Eq. 4 of the paper: eight features per video from its four class intensities.

    ``intensities[..., j, k]`` is the intensity of class ``k`` in the video asking for class ``j``;
    the result ``[..., j, :]`` holds :data:`FEATURE_NAMES` = hv (the asked class's intensity), mean,
    population std (1/4), z = (hv - mean) / std, pd = (hv - mean) / mean, range = max - min,
    d_min = hv - min and d_max = hv - max. z is 0 where std is 0 and pd is 0 where mean is 0, so every
    finite non-negative input gives a finite output. float64; a torch input gives a torch tensor on
    the same device.
    """
    if isinstance(intensities, torch.Tensor):
        values = intensities.detach().to("cpu", torch.float64).numpy()
        return torch.from_numpy(_expression_features_numpy(values)).to(intensities.device)
    return _expression_features_numpy(np.asarray(intensities, dtype=np.float64))


def sequence_inputs(intensities: np.ndarray, kind: SequenceKind = "processed",
                    kinematics: np.ndarray | None = None) -> np.ndarray:
    """Per-step inputs of the sequence models: the four expression videos are the four time steps.

    ``kind`` selects what each step carries: ``"raw"`` the video's 4 intensities, ``"processed"``
    (the paper's "data processing") its 8 Eq. 4 features, ``"both"`` the 12 concatenated,
    ``"kinematics"`` the 12 landmark kinematics (:mod:`dfer_pd.stage2.kinematics`, given as
    ``kinematics`` (N, 4, 12)), ``"clip+kinematics"`` the 8 Eq. 4 features and the 12 kinematics.
    Shape (N, 4, F). The flat baselines use the same array reshaped to (N, 4 * F).
    """
    values = np.asarray(intensities, dtype=np.float64)
    if values.ndim != 3 or values.shape[1:] != (NUM_EXPRESSIONS, NUM_EXPRESSIONS):
        raise ValueError(f"intensities must have shape (N, 4, 4), got {values.shape}")
    if kind in KINEMATIC_KINDS:
        if kinematics is None:
            raise ValueError(f"'{kind}' features need landmark kinematics, and these intensities have none: "
                             "extract the cohort with --kinematics.enabled true")
        kinematics = np.asarray(kinematics, dtype=np.float64)
        if kinematics.ndim != 3 or kinematics.shape[:2] != values.shape[:2]:
            raise ValueError(f"kinematics must have shape ({len(values)}, 4, K), got {kinematics.shape}")
        if kind == "kinematics":
            return kinematics.copy()
        return np.concatenate([expression_features(values), kinematics], axis=-1)
    if kind == "raw":
        return values.copy()
    if kind == "processed":
        return expression_features(values)
    if kind == "both":
        return np.concatenate([values, expression_features(values)], axis=-1)
    raise ValueError(f"unknown input kind {kind!r}; expected one of {SEQUENCE_KINDS}")


def signed_log(values: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: compresses e^100-sized intensities and keeps the sign of z, pd, d_min, d_max."""
    return np.sign(values) * np.log1p(np.abs(values))


class SequenceScaler(TransformerMixin, BaseEstimator):
    """Signed log, then standardisation of each feature column pooled over the time steps.

    Accepts (N, T, F) arrays (the scaler sees N * T rows of F columns) and 2-D (N, F) arrays. Fit it
    on the training rows of a fold only.
    """

    def fit(self, X: np.ndarray, y: object = None) -> SequenceScaler:
        rows = self._rows(X)
        self.pipeline_ = Pipeline(
            [
                ("signed_log", FunctionTransformer(signed_log, feature_names_out="one-to-one")),
                ("standardize", StandardScaler()),
            ]
        ).fit(rows)
        self.n_features_in_ = rows.shape[1]
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        rows = self._rows(X)
        if rows.shape[1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features per step, got {rows.shape[1]}")
        return self.pipeline_.transform(rows).reshape(X.shape)

    @classmethod
    def from_statistics(cls, mean: np.ndarray, scale: np.ndarray) -> SequenceScaler:
        """A fitted scaler rebuilt from saved statistics (a screening model stores them as JSON, not a pickle)."""
        mean, scale = np.asarray(mean, dtype=np.float64), np.asarray(scale, dtype=np.float64)
        scaler = cls().fit(np.zeros((2, len(mean))))
        standardize = scaler.scaler_
        standardize.mean_, standardize.scale_, standardize.var_ = mean, scale, scale**2
        return scaler

    @property
    def scaler_(self) -> StandardScaler:
        """The fitted StandardScaler (statistics of the signed-log features)."""
        return self.pipeline_.named_steps["standardize"]

    @staticmethod
    def _rows(X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim not in (2, 3):
            raise ValueError(f"expected a (N, F) or (N, T, F) array, got shape {X.shape}")
        return X.reshape(-1, X.shape[-1])
