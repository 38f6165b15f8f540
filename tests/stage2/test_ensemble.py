"""The batched engine: many residual networks trained at once give what one Lightning fit each gives.

Stated tolerance: every member ends at the same epoch with the same best epoch as its own Lightning fit,
and its P(PD) differs by at most 1e-5 (in practice about 1e-7: float32 rounding of batched matmuls against
oneDNN's fused LSTM kernel). Dropout masks, batch order and initial weights are the same random draws.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from dfer_pd.stage2.classifiers import ResidualRNNEstimator
from dfer_pd.stage2.ensemble import NetworkBatch, fit_members
from dfer_pd.stage2.features import SequenceScaler, sequence_inputs
from dfer_pd.stage2.runtime import running_on
from dfer_pd.stage2.settings import CPU, RuntimeSettings
from dfer_pd.synthetic.intensities import synthetic_cohort

TOLERANCE = 1e-5
LIGHTNING = RuntimeSettings(accelerator="cpu", engine="lightning")


@pytest.fixture(scope="module")
def cohort():
    """Rows a fold would hand a network: 76 subjects (61 fit, 15 validation: a partial last batch)."""
    data = synthetic_cohort(40, 36, pd_diagonal=0.28, seed=6)
    processed = SequenceScaler().fit_transform(sequence_inputs(data.intensities, "processed"))
    raw = SequenceScaler().fit_transform(sequence_inputs(data.intensities, "raw"))
    return processed, raw, data.labels


def _members(cohort):
    processed, raw, labels = cohort
    common = dict(hidden_size=8, num_layers=2, max_epochs=25, batch_size=16)
    specs = [
        (processed, dict(cell="lstm", residual=True, dropout=0.2, patience=4, random_state=0)),
        (raw, dict(cell="lstm", residual=False, dropout=0.3, patience=25, random_state=1, split_seed=3)),
        (processed, dict(cell="lstm", residual=True, dropout=0.0, patience=6, random_state=2, val_fraction=0.0)),
        (raw, dict(cell="gru", residual=True, dropout=0.2, patience=5, random_state=3, loss="ce")),
    ]
    return [(X, labels, {**common, **kw}) for X, kw in specs]


@pytest.mark.filterwarnings("ignore:.*LeafSpec")
def test_batched_members_match_one_lightning_fit_each(cohort):
    members = _members(cohort)
    batched = fit_members([ResidualRNNEstimator(**kw) for _, _, kw in members],
                          [X for X, _, _ in members], [y for _, y, _ in members], CPU)
    epochs = []
    for (X, y, kw), fast in zip(members, batched):
        with running_on(LIGHTNING):
            plain = ResidualRNNEstimator(**kw).fit(X, y)
        assert (fast.n_epochs_, fast.best_epoch_) == (plain.n_epochs_, plain.best_epoch_), kw
        np.testing.assert_allclose(fast.predict_proba(X), plain.predict_proba(X), atol=TOLERANCE, rtol=0)
        epochs.append(fast.n_epochs_)
        # Both engines keep the per-epoch curves, the same epochs and (to rounding) the same losses.
        assert len(fast.history_) == len(plain.history_) == fast.n_epochs_
        for key in ("train/loss", "val/loss", "val/accuracy"):
            np.testing.assert_allclose([row.get(key, np.nan) for row in fast.history_],
                                       [row.get(key, np.nan) for row in plain.history_], atol=1e-4, rtol=0)
    assert len(set(epochs)) > 1, "members must stop at different epochs for this test to cover it"
    assert epochs[2] == 25 and batched[2].best_epoch_ is None  # no validation split: all epochs, last weights


def test_batched_fits_repeat_exactly_and_do_not_depend_on_their_batch_mates(cohort):
    members = _members(cohort)
    first = fit_members([ResidualRNNEstimator(**kw) for _, _, kw in members], [m[0] for m in members],
                        [m[1] for m in members], CPU)
    # The same fits through Pipeline-style fit calls in a NetworkBatch: queued, then trained together.
    again = [ResidualRNNEstimator(**kw) for _, _, kw in members]
    with running_on(CPU), NetworkBatch():
        for estimator, (X, y, _) in zip(again, members):
            estimator.fit(X, y)
    X, y, kw = members[0]
    with running_on(CPU):
        alone = ResidualRNNEstimator(**kw).fit(X, y)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.predict_proba(X if a.n_features_in_ == X.shape[-1] else cohort[1]),
                                      b.predict_proba(X if b.n_features_in_ == X.shape[-1] else cohort[1]))
    np.testing.assert_allclose(alone.predict_proba(X), first[0].predict_proba(X), atol=TOLERANCE, rtol=0)
    with running_on(CPU):
        other_seed = ResidualRNNEstimator(**{**kw, "random_state": 9}).fit(X, y)
    assert not np.allclose(other_seed.predict_proba(X), alone.predict_proba(X))


def test_batched_estimator_is_a_plain_estimator(cohort):
    X, _, y = cohort
    estimator = ResidualRNNEstimator(hidden_size=4, num_layers=1, max_epochs=3)
    # How it runs is not a parameter: the engine, device and threads come from running_on.
    assert not {"engine", "accelerator", "num_threads", "deterministic"} & set(clone(estimator).get_params())
    fitted = estimator.fit(X, y)  # outside any block: trained at once, on the default runtime
    assert fitted.predict_proba(X).shape == (len(X), 2) and list(fitted.classes_) == [0, 1]
    tensors, attributes = fitted.export_fitted()
    restored = clone(fitted).import_fitted(tensors, attributes)
    np.testing.assert_array_equal(restored.predict_proba(X), fitted.predict_proba(X))
    with pytest.raises(ValueError, match="engine must be batched or lightning"):
        RuntimeSettings(engine="jax")
    with pytest.raises(ValueError, match="3 estimators, 2 inputs"):
        fit_members([clone(estimator)] * 3, [X, X], [y, y])
