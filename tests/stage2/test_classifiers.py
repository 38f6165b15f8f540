"""Stage-2 classifiers: the residual network, its training module, the scikit-learn estimators and their registry."""

from __future__ import annotations

import dataclasses

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.tree import DecisionTreeClassifier
from torch.utils.data import DataLoader, TensorDataset

from dfer_pd.stage2.classifiers import (
    CLASSIFIERS,
    BestWeights,
    FlatClassifier,
    ResidualRNNEstimator,
    build_pipeline,
    flat,
    pickle_free_kinds,
)
from dfer_pd.stage2.settings import CLASSIFIER_KINDS, RECURRENT_KINDS, ClassifierConfig
from dfer_pd.stage2.features import SequenceScaler, sequence_inputs
from dfer_pd.synthetic.intensities import synthetic_cohort
from dfer_pd.stage2.module import PDClassifierModule
from dfer_pd.stage2.sequence_classifier import ResidualRNNClassifier
from dfer_pd.stage2.splits import subject_folds, validation_split
from dfer_pd.stage2.settings import CPU, CVConfig, RuntimeSettings

TINY = ClassifierConfig(hidden_size=4, num_layers=1, max_epochs=2, batch_size=32, patience=1)
CV = CVConfig(runtime=CPU)
LIGHTNING = CVConfig(runtime=RuntimeSettings(accelerator="cpu", engine="lightning"))


@pytest.fixture(scope="module")
def fold():
    """One training / test fold of a cohort with a group difference, as (N, 4, 12) sequences."""
    cohort = synthetic_cohort(20, 20, seed=6)
    inputs = sequence_inputs(cohort.intensities, "both")
    train, test = subject_folds(cohort.labels, cohort.subject_ids, 4, 0)[0]
    return inputs[train], cohort.labels[train], inputs[test], cohort.labels[test]


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_residual_rnn_shapes_and_gradients(cell, residual):
    torch.manual_seed(0)
    net = ResidualRNNClassifier(input_size=8, hidden_size=6, num_layers=3, cell=cell, residual=residual)
    inputs = torch.randn(5, 4, 8)
    logits = net(inputs)
    assert logits.shape == (5,)
    logits.sum().backward()
    assert all(p.grad is not None for p in net.parameters())
    assert ResidualRNNClassifier(8, 6, cell=cell, num_outputs=2)(inputs).shape == (5, 2)


def test_residual_path_adds_the_projected_input():
    net = ResidualRNNClassifier(input_size=3, hidden_size=4, num_layers=1, residual=True, dropout=0.0).eval()
    plain = ResidualRNNClassifier(input_size=3, hidden_size=4, num_layers=1, residual=False, dropout=0.0).eval()
    plain.load_state_dict(net.state_dict())
    inputs = torch.randn(2, 4, 3)
    projected = net.input_projection(inputs)[:, -1]
    expected = net.head(projected + net.layers[0](net.input_projection(inputs))[0][:, -1]).squeeze(-1)
    torch.testing.assert_close(net(inputs), expected)
    assert not torch.allclose(net(inputs), plain(inputs))


def test_module_trains_the_injected_network_and_checks_its_outputs():
    network = ResidualRNNClassifier(input_size=3, hidden_size=4, num_outputs=2)
    module = PDClassifierModule(network, loss="ce")
    assert module.net is network and "network" not in module.hparams
    with pytest.raises(ValueError, match="1 output"):
        PDClassifierModule(network, loss="bce")
    with pytest.raises(ValueError, match="loss must be one of"):
        PDClassifierModule(network, loss="hinge")


@pytest.mark.parametrize("kind", sorted(CLASSIFIERS))
def test_every_registry_entry_clones_and_fits_in_a_pipeline(kind, fold):
    x_train, y_train, x_test, _ = fold
    pipeline = build_pipeline(dataclasses.replace(TINY, kind=kind), seed=3, cv=CV)
    assert [name for name, _ in pipeline.steps] == ["scale", "classify"]
    assert isinstance(pipeline.named_steps["scale"], SequenceScaler)
    twin = clone(pipeline)
    assert twin is not pipeline and repr(twin.get_params()) == repr(pipeline.get_params())
    pipeline.fit(x_train, y_train)
    assert list(pipeline.classes_) == [0, 1]
    proba = pipeline.predict_proba(x_test)
    assert proba.shape == (len(x_test), 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(pipeline.predict(x_test)) <= {0, 1}
    with pytest.raises(NotFittedError):  # clone() gives an unfitted copy with the same parameters
        clone(pipeline).predict_proba(x_test)
    # The estimator alone is a scikit-learn estimator too: clone, then Pipeline with any scaler.
    estimator = clone(pipeline.named_steps["classify"])
    np.testing.assert_array_equal(Pipeline([("s", SequenceScaler()), ("c", estimator)]).fit(x_train, y_train)
                                  .predict_proba(x_test), proba)


def test_every_kind_the_settings_accept_has_a_registry_entry(monkeypatch, fold):
    with pytest.raises(ValueError, match=r"kind must be one of \('lstm', 'gru', 'dt', 'bc', 'rf', 'svm'\)"):
        ClassifierConfig(kind="logreg")
    assert tuple(CLASSIFIERS) == CLASSIFIER_KINDS
    # A registry entry is a factory: a scikit-learn classifier on flattened sequences is one line.
    monkeypatch.setitem(CLASSIFIERS, "bc", flat(lambda params, seed: LogisticRegression(**params)))
    pipeline = build_pipeline(ClassifierConfig(kind="bc", sklearn_params={"C": 0.5}), seed=0)
    assert pipeline.named_steps["classify"].estimator.C == 0.5
    assert pipeline.fit(*fold[:2]).predict_proba(fold[2]).shape == (len(fold[2]), 2)
    assert pickle_free_kinds() == RECURRENT_KINDS


def test_registry_builds_estimators_from_config_seed_and_cv():
    config = ClassifierConfig(kind="gru", residual=False, hidden_size=7, num_layers=3, dropout=0.1, loss="ce", lr=0.01,
                              weight_decay=0.0, max_epochs=9, batch_size=5, patience=2)
    cv = CVConfig(split_seed=11, val_fraction=0.3, runtime=RuntimeSettings(accelerator="cpu", deterministic=False, engine="lightning", threads=2))
    params = build_pipeline(config, seed=4, cv=cv).named_steps["classify"].get_params()
    assert params == {"cell": "gru", "residual": False, "hidden_size": 7, "num_layers": 3, "dropout": 0.1, "loss": "ce",
                      "lr": 0.01, "weight_decay": 0.0, "max_epochs": 9, "batch_size": 5, "patience": 2,
                      "val_fraction": 0.3, "split_seed": 11, "random_state": 4, "accelerator": "cpu",
                      "deterministic": False, "engine": "lightning", "num_threads": 2}
    tree = build_pipeline(ClassifierConfig(kind="dt", sklearn_params={"max_depth": 2}), seed=4).named_steps["classify"]
    assert tree.get_params()["estimator__max_depth"] == 2 and tree.get_params()["estimator__random_state"] == 4
    assert clone(tree).set_params(estimator__max_depth=3).estimator.max_depth == 3


def test_flat_classifier_is_the_baseline_on_flattened_sequences(fold):
    x_train, y_train, x_test, _ = fold
    adapted = FlatClassifier(DecisionTreeClassifier(random_state=0)).fit(x_train, y_train)
    direct = DecisionTreeClassifier(random_state=0).fit(x_train.reshape(len(x_train), -1), y_train)
    np.testing.assert_array_equal(adapted.predict_proba(x_test), direct.predict_proba(x_test.reshape(len(x_test), -1)))
    with pytest.raises(ValueError, match=r"\(N, steps, features\)"):
        adapted.predict_proba(x_test.reshape(len(x_test), -1))


def test_neural_estimator_rejects_bad_input_and_keeps_label_names(fold):
    x_train, y_train, x_test, _ = fold
    estimator = ResidualRNNEstimator(hidden_size=4, num_layers=1, max_epochs=1)
    with pytest.raises(ValueError, match="both classes"):
        estimator.fit(x_train, np.zeros(len(x_train)))
    with pytest.raises(ValueError, match="labels of shape"):
        estimator.fit(x_train, y_train[:-1])
    with pytest.raises(NotFittedError):
        estimator.predict_proba(x_test)
    named = np.where(y_train == 1, "PD", "HC")
    estimator.fit(x_train, named)
    assert list(estimator.classes_) == ["HC", "PD"] and set(estimator.predict(x_test)) <= {"HC", "PD"}
    with pytest.raises(ValueError, match="12 features per step"):
        estimator.predict_proba(x_test[..., :4])


def test_neural_estimator_state_exports_without_pickle(fold):
    x_train, y_train, x_test, _ = fold
    fitted = ResidualRNNEstimator(hidden_size=4, num_layers=2, loss="ce", max_epochs=2, random_state=1).fit(x_train, y_train)
    tensors, attributes = fitted.export_fitted()
    assert all(isinstance(t, torch.Tensor) for t in tensors.values())
    assert attributes["classes"] == [0, 1] and attributes["n_features_in"] == 12
    restored = clone(fitted).import_fitted(tensors, attributes)
    np.testing.assert_array_equal(restored.predict_proba(x_test), fitted.predict_proba(x_test))
    with pytest.raises(RuntimeError, match="size mismatch"):
        clone(fitted).set_params(hidden_size=5).import_fitted(tensors, attributes)


def _direct_training(x, labels, config: ClassifierConfig, seed: int, cv: CVConfig) -> ResidualRNNClassifier:
    """The pre-registry recipe (``fit_neural``), step by step: validation split of the (already scaled) training
    rows seeded by ``cv.split_seed``, seeded weights and batch order, early stopping and best weights on val/loss."""
    fit_idx, val_idx = validation_split(labels, np.arange(len(x)), cv.val_fraction, cv.split_seed)
    L.seed_everything(seed, verbose=False)
    network = ResidualRNNClassifier(x.shape[-1], config.hidden_size, config.num_layers, config.kind, config.residual,
                                    config.dropout, num_outputs=1 if config.loss == "bce" else 2)
    module = PDClassifierModule(network, config.loss, config.lr, config.weight_decay)

    def tensors(rows):
        return TensorDataset(torch.as_tensor(x[rows], dtype=torch.float32), torch.as_tensor(labels[rows]))

    best = BestWeights("val/loss")
    flags = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    trainer = L.Trainer(max_epochs=config.max_epochs, accelerator="cpu", devices=1, logger=False,
                        callbacks=[best, EarlyStopping(monitor="val/loss", mode="min", patience=config.patience)],
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, deterministic=cv.runtime.deterministic)
    trainer.fit(module, DataLoader(tensors(fit_idx), batch_size=config.batch_size, shuffle=True,
                                   generator=torch.Generator().manual_seed(seed)),
                DataLoader(tensors(val_idx), batch_size=len(val_idx)))
    torch.use_deterministic_algorithms(flags[0], warn_only=flags[1])  # what Trainer(deterministic=True) switched on
    best.restore(module)
    return module.net.eval()


@pytest.mark.filterwarnings("ignore:.*LeafSpec")  # Lightning's pytree shim on new torch
@pytest.mark.parametrize("kind, loss", [("lstm", "bce"), ("gru", "ce")])
def test_neural_pipeline_matches_the_direct_training_path(fold, kind, loss):
    """The Lightning engine is bit-identical to scaling the training fold and training the network by hand with the
    same seeds (the batched engine matches it to rounding: test_ensemble.py)."""
    x_train, y_train, x_test, _ = fold
    config = dataclasses.replace(TINY, kind=kind, loss=loss, hidden_size=6, max_epochs=6, batch_size=8, patience=2)
    pipeline = build_pipeline(config, seed=5, cv=LIGHTNING).fit(x_train, y_train)
    scaler = SequenceScaler().fit(x_train)
    network = _direct_training(scaler.transform(x_train), y_train, config, seed=5, cv=CV)
    with torch.no_grad():
        logits = network(torch.as_tensor(scaler.transform(x_test), dtype=torch.float32))
    direct = (torch.sigmoid(logits) if loss == "bce" else torch.softmax(logits, -1)[:, 1]).numpy().astype(np.float64)
    np.testing.assert_array_equal(pipeline.predict_proba(x_test)[:, 1], direct)
    # Another training seed gives other weights.
    other = build_pipeline(config, seed=6, cv=LIGHTNING).fit(x_train, y_train)
    assert not np.array_equal(other.predict_proba(x_test), pipeline.predict_proba(x_test))


def test_a_name_spelled_from_the_values_follows_them():
    """The config file's `lstm_processed_residual` with residual false (a sweep trial) is printed as `lstm_processed`;
    a name of the user's own is kept whatever the values."""
    assert ClassifierConfig(name="lstm_processed_residual", residual=False).name == "lstm_processed"
    assert ClassifierConfig(name="lstm_processed_residual", kind="gru", features="raw").name == "gru_raw_residual"
    assert dataclasses.replace(ClassifierConfig(name="lstm_processed_residual"), residual=False).name == "lstm_processed"
    assert ClassifierConfig(name="paper model", residual=False).name == "paper model"
    assert ClassifierConfig(name="lstm_processed_residual").name == "lstm_processed_residual"
