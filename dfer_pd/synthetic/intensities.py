"""Synthetic stage-1 outputs: cohort intensities with a known group difference, for tests and benchmarks."""

from __future__ import annotations

import numpy as np

from dfer_pd.common.constants import NUM_EXPRESSIONS
from dfer_pd.stage2.features import CohortIntensities


def synthetic_cohort(
    n_pd: int = 97,
    n_hc: int = 76,
    *,
    hc_diagonal: float = 0.30,
    pd_diagonal: float = 0.24,
    off_diagonal: float = 0.20,
    noise: float = 0.02,
    tau: float = 0.01,
    feature_dim: int | None = None,
    seed: int = 0,
    severity: bool = False,
) -> CohortIntensities:
    """A cohort whose PD subjects show the asked expression less (lower diagonal cosine), for tests and benchmarks.

    Set ``pd_diagonal = hc_diagonal`` for a cohort with no group difference at all. With ``severity`` every
    subject also gets an MDS-UPDRS 3.2 score (PD 1-4 equally likely, HC 0, or 1 with probability 0.2; drawn from
    their own stream) and a PD subject's diagonal drops in proportion to its score: ``hc_diagonal - (hc_diagonal -
    pd_diagonal) * score / 2.5`` (``pd_diagonal`` at the mean PD score).
    """
    rng = np.random.default_rng(seed)
    n = n_pd + n_hc
    labels = np.r_[np.ones(n_pd, dtype=np.int64), np.zeros(n_hc, dtype=np.int64)]
    labels = labels[rng.permutation(n)]
    diagonal = np.where(labels == 1, pd_diagonal, hc_diagonal)
    scores = None
    if severity:
        draws = np.random.default_rng([seed, 32])
        scores = np.where(labels == 1, draws.integers(1, 5, n), draws.random(n) < 0.2).astype(np.float64)
        diagonal = np.where(labels == 1, hc_diagonal - (hc_diagonal - pd_diagonal) * scores / 2.5, hc_diagonal)
    means = np.full((n, NUM_EXPRESSIONS, NUM_EXPRESSIONS), off_diagonal)
    means[:, np.arange(NUM_EXPRESSIONS), np.arange(NUM_EXPRESSIONS)] = diagonal[:, None]
    cosine = means + noise * rng.standard_normal(means.shape)
    video_features = None
    if feature_dim is not None:
        centres = rng.standard_normal((NUM_EXPRESSIONS, feature_dim))
        strength = np.where(labels == 1, 0.5, 1.5)[:, None, None]
        video_features = strength * centres[None] + rng.standard_normal((n, NUM_EXPRESSIONS, feature_dim))
    return CohortIntensities(
        subject_ids=[f"S{i:04d}" for i in range(n)],
        labels=labels,
        cosine=cosine,
        tau=tau,
        video_features=video_features,
        updrs_3_2=scores,
    )
