"""The runtime (device, engine, threads, processes) reaches the networks through `running_on`, never their parameters."""

import threading

import numpy as np
import pytest

from dfer_pd.stage2.runtime import current_runtime, running_on
from dfer_pd.stage2.settings import CPU, RuntimeSettings


def test_running_on_nests_and_restores():
    assert current_runtime() == RuntimeSettings()
    with running_on(CPU):
        assert current_runtime() is CPU
        inner = RuntimeSettings(accelerator="cpu", engine="lightning", threads=2)
        with running_on(inner):
            assert current_runtime() is inner
        assert current_runtime() is CPU
    assert current_runtime() == RuntimeSettings()


def test_a_failing_block_restores_the_runtime():
    with pytest.raises(RuntimeError):
        with running_on(RuntimeSettings(engine="lightning")):
            raise RuntimeError("boom")
    assert current_runtime() == RuntimeSettings()


def test_another_thread_does_not_see_this_threads_runtime():
    seen = []
    with running_on(RuntimeSettings(accelerator="cpu", threads=2)):
        worker = threading.Thread(target=lambda: seen.append(current_runtime()))
        worker.start()
        worker.join()
    assert seen == [RuntimeSettings()]


def _sequences(n=24, seed=0):
    rng = np.random.default_rng(seed)
    y = np.tile([0, 1], n // 2)
    X = rng.normal(size=(n, 4, 3)) + y[:, None, None]
    return X, y


def test_the_engine_comes_from_the_runtime_and_both_engines_agree():
    """The same estimator object, the same parameters: the block's engine decides how it trains."""
    from dfer_pd.stage2.classifiers import ResidualRNNEstimator

    X, y = _sequences()
    params = dict(hidden_size=4, num_layers=1, max_epochs=6, patience=3, batch_size=8)
    with running_on(RuntimeSettings(accelerator="cpu", engine="batched")):
        batched = ResidualRNNEstimator(**params).fit(X, y)
    with running_on(RuntimeSettings(accelerator="cpu", engine="lightning")):
        lightning = ResidualRNNEstimator(**params).fit(X, y)
    assert batched.get_params() == lightning.get_params()
    # The Lightning engine records every validation metric per epoch; the batched one its lean curves.
    assert "val/roc_auc" in lightning.history_[0] and "val/roc_auc" not in batched.history_[0]
    assert batched.n_epochs_ == lightning.n_epochs_
    np.testing.assert_allclose(batched.predict_proba(X), lightning.predict_proba(X), atol=1e-5)


def test_a_gpu_runtime_on_a_machine_without_one_is_refused_by_name():
    import torch

    from dfer_pd.stage2.classifiers import ResidualRNNEstimator

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    X, y = _sequences()
    with running_on(RuntimeSettings(accelerator="gpu")), pytest.raises(ValueError, match="asked for a GPU"):
        ResidualRNNEstimator(hidden_size=4, max_epochs=2).fit(X, y)
