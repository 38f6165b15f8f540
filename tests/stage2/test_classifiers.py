"""Stage-2 classifiers: the residual network, its training module, the scikit-learn estimators and their registry."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import EarlyStopping
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from torch.utils.data import DataLoader, TensorDataset

from dfer_pd.stage2.classifiers import (
    BestWeights,
    FlatClassifier,
    ResidualRNNEstimator,
    build_estimator,
    build_pipeline,
    estimator_kind,
    fit_pipelines,
    pickle_free_kinds,
    resolve_classifier,
)
from dfer_pd.stage2.ensemble import NetworkBatch
from dfer_pd.stage2.runtime import running_on
from dfer_pd.stage2.settings import CLASSIFIER_KINDS, CLASSIFIERS, RECURRENT_KINDS, RNN_CLASS_PATH, ClassifierConfig
from dfer_pd.stage2.features import SequenceScaler, sequence_inputs
from dfer_pd.synthetic.intensities import synthetic_cohort
from dfer_pd.stage2.module import PDClassifierModule
from dfer_pd.stage2.sequence_classifier import ResidualRNNClassifier
from dfer_pd.stage2.splits import subject_folds, validation_split
from dfer_pd.stage2.settings import CPU, RuntimeSettings

TINY_ARGS = dict(hidden_size=4, num_layers=1, max_epochs=2, batch_size=32, patience=1)
TINY = ClassifierConfig(init_args=TINY_ARGS)
LIGHTNING = RuntimeSettings(accelerator="cpu", engine="lightning")
RUNTIME_KEYS = {"accelerator", "engine", "num_threads", "threads", "deterministic"}
FLAT_CLASS_PATH = "dfer_pd.stage2.classifiers.FlatClassifier"


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
    config = ClassifierConfig.of_kind(kind, **(TINY_ARGS if kind in RECURRENT_KINDS else {}))
    pipeline = build_pipeline(config, seed=3)
    assert [name for name, _ in pipeline.steps] == ["scale", "classify"]
    assert isinstance(pipeline.named_steps["scale"], SequenceScaler)
    twin = clone(pipeline)
    assert twin is not pipeline and repr(twin.get_params()) == repr(pipeline.get_params())
    with running_on(CPU):
        fit_pipelines([pipeline], [x_train], [y_train])
    assert list(pipeline.classes_) == [0, 1]
    proba = pipeline.predict_proba(x_test)
    assert proba.shape == (len(x_test), 2) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert set(pipeline.predict(x_test)) <= {0, 1}
    with pytest.raises(NotFittedError):  # clone() gives an unfitted copy with the same parameters
        clone(pipeline).predict_proba(x_test)
    # The estimator alone is a scikit-learn estimator too: clone, then Pipeline with any scaler, fitted as
    # scikit-learn fits (outside a NetworkBatch a network trains at once, on the default runtime).
    estimator = clone(pipeline.named_steps["classify"])
    np.testing.assert_array_equal(Pipeline([("s", SequenceScaler()), ("c", estimator)]).fit(x_train, y_train)
                                  .predict_proba(x_test), proba)


def test_every_kind_the_settings_accept_has_a_registry_entry(monkeypatch, fold):
    with pytest.raises(ValueError, match=r"kind must be one of \('lstm', 'gru', 'dt', 'bc', 'rf', 'svm'\)"):
        ClassifierConfig.of_kind("logreg")
    assert tuple(CLASSIFIERS) == CLASSIFIER_KINDS
    for kind in CLASSIFIER_KINDS:
        assert estimator_kind(build_estimator(ClassifierConfig.of_kind(kind))) == kind
    # Any scikit-learn classifier on flattened sequences is a config, without a registry entry ...
    logreg = {"class_path": "sklearn.linear_model.LogisticRegression", "init_args": {"C": 0.5}}
    config = ClassifierConfig(class_path=FLAT_CLASS_PATH, init_args={"estimator": logreg})
    pipeline = build_pipeline(config, seed=0)
    assert isinstance(pipeline[-1].estimator, LogisticRegression) and pipeline[-1].estimator.C == 0.5
    assert pipeline.fit(*fold[:2]).predict_proba(fold[2]).shape == (len(fold[2]), 2)
    assert resolve_classifier(config).name == "logisticregression_processed"
    # ... and a registry entry is one line: its class_path and init_args.
    monkeypatch.setitem(CLASSIFIERS, "logreg", {"class_path": FLAT_CLASS_PATH, "init_args": {"estimator": logreg}})
    assert resolve_classifier(ClassifierConfig.of_kind("logreg", "raw")).name == "logreg_raw"
    assert pickle_free_kinds() == RECURRENT_KINDS


def test_registry_builds_estimators_from_config_seed_and_split_seed():
    config = ClassifierConfig.of_kind("gru", residual=False, hidden_size=7, num_layers=3, dropout=0.1, loss="ce", lr=0.01,
                                      weight_decay=0.0, max_epochs=9, batch_size=5, patience=2, val_fraction=0.3)
    params = build_pipeline(config, seed=4, split_seed=11).named_steps["classify"].get_params()
    # The estimator's parameters are what it computes, nothing about how it runs (that is running_on's).
    assert params == {"cell": "gru", "residual": False, "hidden_size": 7, "num_layers": 3, "dropout": 0.1, "loss": "ce",
                      "lr": 0.01, "weight_decay": 0.0, "max_epochs": 9, "batch_size": 5, "patience": 2,
                      "val_fraction": 0.3, "split_seed": 11, "random_state": 4}
    dt = {"class_path": "sklearn.tree.DecisionTreeClassifier", "init_args": {"max_depth": 2}}
    tree = build_pipeline(ClassifierConfig.of_kind("dt", estimator=dt), seed=4).named_steps["classify"]
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


def _direct_training(x, labels, config: ClassifierConfig, seed: int, split_seed: int = 0) -> ResidualRNNClassifier:
    """The pre-registry recipe (``fit_neural``), step by step: validation split of the (already scaled) training
    rows seeded by ``split_seed``, seeded weights and batch order, early stopping and best weights on val/loss."""
    net = build_estimator(config)  # the defaults filled in
    fit_idx, val_idx = validation_split(labels, np.arange(len(x)), net.val_fraction, split_seed)
    L.seed_everything(seed, verbose=False)
    network = ResidualRNNClassifier(x.shape[-1], net.hidden_size, net.num_layers, net.cell, net.residual,
                                    net.dropout, num_outputs=1 if net.loss == "bce" else 2)
    module = PDClassifierModule(network, net.loss, net.lr, net.weight_decay)

    def tensors(rows):
        return TensorDataset(torch.as_tensor(x[rows], dtype=torch.float32), torch.as_tensor(labels[rows]))

    best = BestWeights("val/loss")
    flags = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    trainer = L.Trainer(max_epochs=net.max_epochs, accelerator="cpu", devices=1, logger=False,
                        callbacks=[best, EarlyStopping(monitor="val/loss", mode="min", patience=net.patience)],
                        enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                        num_sanity_val_steps=0, deterministic=LIGHTNING.deterministic)
    trainer.fit(module, DataLoader(tensors(fit_idx), batch_size=net.batch_size, shuffle=True,
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
    config = ClassifierConfig.of_kind(kind, **{**TINY_ARGS, "loss": loss, "hidden_size": 6, "max_epochs": 6,
                                               "batch_size": 8, "patience": 2})
    pipeline = build_pipeline(config, seed=5, split_seed=3)
    with running_on(LIGHTNING):
        fit_pipelines([pipeline], [x_train], [y_train])
    scaler = SequenceScaler().fit(x_train)
    network = _direct_training(scaler.transform(x_train), y_train, config, seed=5, split_seed=3)
    with torch.no_grad():
        logits = network(torch.as_tensor(scaler.transform(x_test), dtype=torch.float32))
    direct = (torch.sigmoid(logits) if loss == "bce" else torch.softmax(logits, -1)[:, 1]).numpy().astype(np.float64)
    np.testing.assert_array_equal(pipeline.predict_proba(x_test)[:, 1], direct)
    # Another training seed gives other weights.
    other = build_pipeline(config, seed=6, split_seed=3)
    with running_on(LIGHTNING):
        fit_pipelines([other], [x_train], [y_train])
    assert not np.array_equal(other.predict_proba(x_test), pipeline.predict_proba(x_test))


def test_a_config_is_named_when_resolved_and_a_name_spelled_from_the_values_follows_them():
    """An unnamed config is named from its estimator and features; the config file's `lstm_processed_residual` with
    residual false (a sweep trial) is printed as `lstm_processed`; a name of the user's own is kept whatever the values."""
    assert ClassifierConfig().name is None  # spelled when resolved, not before
    default = resolve_classifier(ClassifierConfig())
    assert (default.name, default.class_path) == ("lstm_processed_residual", RNN_CLASS_PATH)
    assert resolve_classifier(ClassifierConfig(init_args={"residual": False})).name == "lstm_processed"
    assert resolve_classifier(ClassifierConfig(features="raw", init_args={"cell": "gru"})).name == "gru_raw_residual"
    assert resolve_classifier(ClassifierConfig.of_kind("rf", "raw")).name == "rf_raw"
    assert resolve_classifier(ClassifierConfig.of_kind("svm", "both")).name == "svm_both"
    assert resolve_classifier(ClassifierConfig(name="paper model", init_args={"residual": False})).name == "paper model"
    assert resolve_classifier(ClassifierConfig(name="my forest", features="raw", class_path=FLAT_CLASS_PATH,
                                               init_args=CLASSIFIERS["rf"]["init_args"])).name == "my forest"
    sweep_trial = ClassifierConfig(name="lstm_processed_residual", init_args={"residual": False})
    assert resolve_classifier(sweep_trial).name == "lstm_processed"
    assert resolve_classifier(ClassifierConfig(name="lstm_processed_residual", features="raw",
                                               init_args={"cell": "gru"})).name == "gru_raw_residual"
    assert resolve_classifier(ClassifierConfig(name="lstm_processed_residual")).name == "lstm_processed_residual"
    # A short class name is spelled out.
    assert resolve_classifier(ClassifierConfig(class_path="ResidualRNNEstimator")).class_path == RNN_CLASS_PATH


@pytest.mark.parametrize("check", [build_estimator, resolve_classifier])
def test_unknown_or_mistyped_init_args_are_refused_with_the_accepted_parameters(check):
    with pytest.raises(ValueError, match=r"'hiden_size' is not accepted") as error:
        check(ClassifierConfig(init_args={"hiden_size": 8}))
    assert RNN_CLASS_PATH in str(error.value)
    accepted = str(error.value).partition("its parameters:")[2]
    assert {"cell", "residual", "hidden_size", "lr", "val_fraction", "split_seed", "random_state"} <= {
        name.strip() for name in accepted.split(",")}
    with pytest.raises(ValueError, match=r"'estimators' is not accepted; its parameters: estimator$"):
        check(ClassifierConfig.of_kind("rf", estimators=3))
    with pytest.raises(ValueError, match=r"Got value: abc \(parameter lr\)"):
        check(ClassifierConfig(init_args={"lr": "abc"}))
    with pytest.raises(ValueError, match=r"Got value: rnn \(parameter cell\)"):
        check(ClassifierConfig(init_args={"cell": "rnn"}))
    # A nested estimator's mistake is named with that estimator's own parameters, at any depth.
    forest = {"class_path": "sklearn.ensemble.RandomForestClassifier", "init_args": {"n_estimatorz": 3}}
    with pytest.raises(ValueError, match=r"class_path sklearn.ensemble.RandomForestClassifier: Option 'n_estimatorz' "
                                         r"is not accepted; its parameters: n_estimators, "):
        check(ClassifierConfig.of_kind("rf", estimator=forest))
    svc = {"class_path": "sklearn.svm.SVC", "init_args": {"CC": 1}}
    calibrated = {"class_path": "sklearn.calibration.CalibratedClassifierCV", "init_args": {"estimator": svc}}
    with pytest.raises(ValueError, match=r"class_path sklearn.svm.SVC: Option 'CC' is not accepted; its parameters: C, "):
        check(ClassifierConfig.of_kind("svm", estimator=calibrated))
    with pytest.raises(ValueError, match=r"class_path dfer_pd.stage2.nowhere.Net"):
        check(ClassifierConfig(class_path="dfer_pd.stage2.nowhere.Net"))
    with pytest.raises(ValueError, match="init_args must be a mapping"):
        ClassifierConfig(init_args=["hidden_size", 8])


def test_build_pipeline_seeds_every_random_state_and_every_network_split():
    forest = build_pipeline(ClassifierConfig.of_kind("rf"), seed=7, split_seed=3)
    assert forest[-1].estimator.random_state == 7
    svm = build_pipeline(ClassifierConfig.of_kind("svm"), seed=7, split_seed=3)
    assert svm[-1].estimator.estimator.random_state == 7  # the SVC inside the calibration
    assert isinstance(svm[-1].estimator.estimator, SVC)
    network = build_pipeline(ClassifierConfig(init_args=TINY_ARGS), seed=7, split_seed=3)[-1]
    assert (network.random_state, network.split_seed) == (7, 3)
    assert build_pipeline(ClassifierConfig(init_args=TINY_ARGS))[-1].get_params()["random_state"] == 0
    # The config's own values are overridden by the seeds (cross-validation sets them fit by fit).
    config = ClassifierConfig(init_args={**TINY_ARGS, "random_state": 99, "split_seed": 99})
    assert build_pipeline(config, seed=1, split_seed=2)[-1].get_params()["random_state"] == 1
    assert build_pipeline(config, seed=1, split_seed=2)[-1].get_params()["split_seed"] == 2
    assert build_estimator(config).random_state == 99


def test_network_fits_in_a_batched_block_train_when_it_ends(fold):
    x_train, y_train, x_test, _ = fold
    config = ClassifierConfig(init_args={**TINY_ARGS, "max_epochs": 4, "hidden_size": 6})
    pipeline, forest = build_pipeline(config, seed=2), build_pipeline(ClassifierConfig.of_kind("dt"), seed=2)
    with running_on(CPU), NetworkBatch() as batch:
        pipeline.fit(x_train, y_train)
        forest.fit(x_train, y_train)
        assert batch.holds(pipeline[-1]) and not hasattr(pipeline[-1], "network_")
        with pytest.raises(NotFittedError):
            pipeline.predict_proba(x_test)
        assert forest.predict_proba(x_test).shape == (len(x_test), 2)  # a baseline fits at once
    assert pipeline[-1].n_epochs_ >= 1 and len(pipeline[-1].history_) == pipeline[-1].n_epochs_
    twin = build_pipeline(config, seed=2)
    with running_on(CPU):
        fit_pipelines([twin], [x_train], [y_train])
    np.testing.assert_array_equal(pipeline.predict_proba(x_test), twin.predict_proba(x_test))
    # The lightning engine fits at once, inside the block.
    with running_on(LIGHTNING), NetworkBatch() as batch:
        pipeline = build_pipeline(config, seed=2).fit(x_train, y_train)
        assert not batch.holds(pipeline[-1]) and pipeline.predict_proba(x_test).shape == (len(x_test), 2)
    np.testing.assert_allclose(pipeline.predict_proba(x_test), twin.predict_proba(x_test), atol=1e-5, rtol=0)
    # The queued networks train on the runtime the block runs in.
    with pytest.raises(ValueError, match="accelerator cpu, gpu or auto, got 'tpu'"):
        with running_on(RuntimeSettings(accelerator="tpu")), NetworkBatch() as batch:
            build_pipeline(config).fit(x_train, y_train)  # queued: nothing is checked yet
            assert len(batch.queued) == 1


def test_the_estimator_has_no_runtime_parameters():
    assert not RUNTIME_KEYS & set(ResidualRNNEstimator().get_params())
    deep = build_pipeline(ClassifierConfig()).get_params(deep=True)
    assert not RUNTIME_KEYS & {key.rpartition("__")[2] for key in deep}
    for key in ("accelerator", "engine", "num_threads", "deterministic"):
        with pytest.raises(TypeError):
            ResidualRNNEstimator(**{key: "cpu"})
        with pytest.raises(ValueError, match=f"'{key}' is not accepted"):
            build_estimator(ClassifierConfig(init_args={key: "cpu"}))
