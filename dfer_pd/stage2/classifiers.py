"""The stage-2 classifiers as scikit-learn estimators, built by ``class_path``, and the one pipeline every fit uses.

Every classifier takes the per-subject sequences (N, 4 videos, F features) and is fitted as
``Pipeline([("scale", SequenceScaler()), ("classify", estimator)])`` built by :func:`build_pipeline`:
the residual LSTM/GRU (:class:`ResidualRNNEstimator`, which carves its own stratified validation split
from the rows it is given for early stopping and best-weight selection) and the Table 3 baselines
(:class:`FlatClassifier` around DT, naive Bayes, RF and SVM, which see the sequences flattened to
(N, 4 * F)). A :class:`~dfer_pd.stage2.settings.ClassifierConfig` names the estimator's class and the
``__init__`` parameters that differ from their defaults: the signature is the schema, checked by jsonargparse
as stage 1's data modules are. The named classifiers (Table 3's rows) are
:data:`~dfer_pd.stage2.settings.CLASSIFIERS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import pydoc
import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.loggers import Logger
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted
from torch.utils.data import DataLoader, TensorDataset

from dfer_pd.common.parallel import torch_threads
from dfer_pd.stage2.ensemble import NetworkBatch, fit_members, open_batch
from dfer_pd.stage2.runtime import current_runtime
from dfer_pd.stage2.features import SequenceScaler
from dfer_pd.stage2.module import PDClassifierModule, pd_probability
from dfer_pd.stage2.sequence_classifier import ResidualRNNClassifier
from dfer_pd.stage2.settings import (
    CLASSIFIERS,
    DERIVED_NAMES,
    LOSS_OUTPUTS,
    RECURRENT_KINDS,
    RNN_CLASS_PATH,
    ClassifierConfig,
    RuntimeSettings,
    derived_name,
)
from dfer_pd.stage2.splits import validation_split


def _sequences(X: Any, estimator: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"{estimator} expects (N, steps, features) sequences, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{estimator} got NaN or inf inputs")
    return X


class FlatEstimator(BaseEstimator):
    """A scikit-learn estimator on sequences flattened from (N, T, F) to (N, T * F); ``fit`` clones ``estimator``
    and fits the clone (``estimator_``). :class:`FlatClassifier` and the severity ``FlatRegressor`` are its forms."""

    def __init__(self, estimator: BaseEstimator | None = None) -> None:
        self.estimator = estimator

    def _flat(self, X: np.ndarray) -> np.ndarray:
        X = _sequences(X, type(self).__name__)
        return X.reshape(len(X), -1)

    def fit(self, X: np.ndarray, y: np.ndarray) -> FlatEstimator:
        if self.estimator is None:
            raise ValueError(f"{type(self).__name__} needs an estimator")
        self.estimator_ = clone(self.estimator).fit(self._flat(X), y)
        self.n_features_in_ = np.shape(X)[-1]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict(self._flat(X))


class FlatClassifier(ClassifierMixin, FlatEstimator):
    """A scikit-learn classifier on flattened sequences: the Table 3 baselines (DT, naive Bayes, RF, SVM)."""

    def fit(self, X: np.ndarray, y: np.ndarray) -> FlatClassifier:
        super().fit(X, y)
        self.classes_ = self.estimator_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.predict_proba(self._flat(X))


class EpochHistory(Callback):
    """Keeps every epoch's logged metrics (``train/loss``, ``val/loss``, ``val/<metric>``), as the batched engine's ``history_``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.rows.append({"epoch": int(trainer.current_epoch), **metrics})


class BestWeights(Callback):
    """Keeps, in memory, the weights of the epoch with the lowest monitored validation value."""

    def __init__(self, monitor: str = "val/loss") -> None:
        self.monitor = monitor
        self.best_value = math.inf
        self.best_epoch: int | None = None
        self.state: dict[str, torch.Tensor] | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        value = float(trainer.callback_metrics[self.monitor])
        if value < self.best_value:
            self.best_value, self.best_epoch = value, trainer.current_epoch
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def restore(self, module: torch.nn.Module) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)


@contextlib.contextmanager
def _quiet_and_restored_torch_flags() -> Iterator[None]:
    """Silence Lightning's per-Trainer banners and undo the global determinism flags a Trainer sets."""
    lightning_log = logging.getLogger("lightning.pytorch")
    level = lightning_log.level
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    cudnn = (torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic)
    lightning_log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning's pytree shim on new torch
            warnings.filterwarnings("ignore", message=".*have no `val_dataloader`.*")  # val_fraction=0
            yield
    finally:
        lightning_log.setLevel(level)
        torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
        torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = cudnn


def _as_tensors(inputs: np.ndarray, labels: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.as_tensor(inputs, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long))


class ResidualRNNEstimator(ClassifierMixin, BaseEstimator):
    """The residual LSTM/GRU (:class:`ResidualRNNClassifier`) as a scikit-learn estimator on (N, T, F) sequences.

    ``fit`` carves a stratified validation split of ``val_fraction`` of its rows (seeded by ``split_seed``,
    the same split for every ``random_state``), trains a fresh network on the rest (``random_state`` seeds
    the weights and the batch order), stops early after ``patience`` epochs without a lower validation loss
    and keeps the weights of the best epoch; ``val_fraction=0`` trains ``max_epochs`` and keeps the last
    weights. The fitted network lives on the CPU (``network_``), its per-epoch curves in ``history_``.
    ``predict_proba`` returns one column per ``classes_``. The fitted state is tensors plus JSON-able
    attributes (:meth:`export_fitted` / :meth:`import_fitted`), so a screening model stores it without pickle.

    The parameters are what the network computes; how it runs (device, engine, threads, deterministic
    kernels) is the :class:`~dfer_pd.stage2.settings.RuntimeSettings` of the
    :func:`~dfer_pd.stage2.runtime.running_on` block it is fitted in. The batched engine (the default) trains
    through :func:`dfer_pd.stage2.ensemble.fit_members`, the lean loop that trains many such networks at
    once; the lightning engine runs one Lightning ``Trainer`` fit. Both follow the same recipe with the same
    random streams and agree to rounding (tests/stage2/test_ensemble.py).

    Args:
        cell: lstm or gru.
        residual: add the residual connection around the recurrent layers (the paper's model).
        hidden_size: width of the recurrent layers.
        num_layers: number of stacked recurrent layers.
        dropout: dropout between recurrent layers.
        loss: bce (one PD logit) or ce (two-class softmax).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        max_epochs: most epochs of training per fit.
        batch_size: subjects per training batch.
        patience: epochs without a lower validation loss before early stopping.
        val_fraction: share of the training rows held out (stratified) for early stopping and best-weight
            selection (0: train max_epochs, keep the last weights).
        split_seed: seed of that validation split (cross-validation sets it from its own split seed).
        random_state: seed of the weights and the batch order (cross-validation sets the training seed).
    """

    def __init__(
        self,
        cell: Literal["lstm", "gru"] = "lstm",
        residual: bool = True,
        hidden_size: int = 64,
        num_layers: int = 2,
        dropout: float = 0.2,
        loss: Literal["bce", "ce"] = "bce",
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        max_epochs: int = 150,
        batch_size: int = 16,
        patience: int = 20,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        random_state: int = 0,
    ) -> None:
        self.cell = cell
        self.residual = residual
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.dropout = dropout
        self.loss = loss
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.patience = patience
        self.val_fraction = val_fraction
        self.split_seed = split_seed
        self.random_state = random_state

    def build_network(self, input_size: int) -> ResidualRNNClassifier:
        """The untrained network these parameters describe (the batched engine builds its members with it)."""
        if self.loss not in LOSS_OUTPUTS:
            raise ValueError(f"loss must be one of {tuple(LOSS_OUTPUTS)}, got {self.loss!r}")
        return ResidualRNNClassifier(
            input_size=input_size,
            hidden_size=self.hidden_size,
            num_layers=self.num_layers,
            cell=self.cell,
            residual=self.residual,
            dropout=self.dropout,
            num_outputs=LOSS_OUTPUTS[self.loss],
        )

    def check_training_rows(self, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(X, labels 0/1, classes) after the checks every fit makes."""
        X, y = _sequences(X, type(self).__name__), np.asarray(y)
        if y.shape != (len(X),):
            raise ValueError(f"{len(X)} sequences but labels of shape {y.shape}")
        classes, labels = np.unique(y, return_inverse=True)
        if len(classes) != 2:
            raise ValueError(f"training rows must hold both classes, got {classes.tolist()}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        return X, labels, classes

    def set_fitted(self, state: dict[str, torch.Tensor], classes: np.ndarray, best_epoch: int | None,
                   n_epochs: int, history: list[dict[str, float]] | None = None) -> ResidualRNNEstimator:
        """Become fitted with ``state`` (a ResidualRNNClassifier state dict); used by the batched engine."""
        network = self.build_network(state["input_projection.weight"].shape[1])
        network.load_state_dict(state)
        self.network_ = network.eval()
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = network.input_projection.in_features
        self.best_epoch_ = best_epoch
        self.n_epochs_ = int(n_epochs)
        self.history_ = list(history or [])
        self.fit_seconds_ = 0.0  # set by the batched engine: this network's share of its group's time
        return self

    def fit(self, X: np.ndarray, y: np.ndarray) -> ResidualRNNEstimator:
        """Train on (X, y) with the :func:`~dfer_pd.stage2.runtime.current_runtime`'s engine: batched (queued in the
        open :class:`~dfer_pd.stage2.ensemble.NetworkBatch`, else trained now) or one Lightning fit."""
        runtime = current_runtime()
        if runtime.engine == "lightning":
            return self._fit_with_lightning(X, y, runtime)
        return self.fit_batched(X, y)

    def fit_batched(self, X: np.ndarray, y: np.ndarray) -> ResidualRNNEstimator:
        """Queue (X, y) in the open batch, to train with the others when it closes; with none, train now."""
        self.check_training_rows(X, y)
        batch = open_batch()
        if batch is not None:
            batch.queue(self, X, y)
        else:
            fit_members([self], [X], [y], current_runtime())
        return self

    def _fit_with_lightning(self, X: np.ndarray, y: np.ndarray, runtime: RuntimeSettings) -> ResidualRNNEstimator:
        X, labels, classes = self.check_training_rows(X, y)
        fit_idx, val_idx = validation_split(labels, np.arange(len(X)), self.val_fraction, self.split_seed)
        L.seed_everything(self.random_state, verbose=False)
        module = PDClassifierModule(self.build_network(X.shape[-1]), loss=self.loss, lr=self.lr,
                                    weight_decay=self.weight_decay, validation_metrics=True)
        train_loader = DataLoader(
            _as_tensors(X[fit_idx], labels[fit_idx]),
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.random_state),
        )
        history = EpochHistory()
        callbacks: list[Callback] = [history]
        val_loader = None
        best = BestWeights("val/loss")
        if len(val_idx):
            val_loader = DataLoader(_as_tensors(X[val_idx], labels[val_idx]), batch_size=len(val_idx))
            callbacks += [best, EarlyStopping(monitor="val/loss", mode="min", patience=self.patience)]
        with _quiet_and_restored_torch_flags(), torch_threads(runtime.threads):
            trainer = L.Trainer(
                max_epochs=self.max_epochs,
                accelerator=runtime.accelerator,
                devices=1,
                logger=False,
                callbacks=callbacks,
                enable_progress_bar=False,
                enable_model_summary=False,
                enable_checkpointing=False,
                num_sanity_val_steps=0,
                deterministic=runtime.deterministic,
            )
            trainer.fit(module, train_loader, val_loader)
        best.restore(module)
        self.network_ = module.net.to("cpu").eval()
        self.classes_ = classes
        self.n_features_in_ = X.shape[-1]
        self.best_epoch_ = best.best_epoch
        self.n_epochs_ = trainer.current_epoch
        self.history_ = history.rows
        return self

    @torch.no_grad()
    def network_output(self, X: np.ndarray) -> torch.Tensor:
        """The fitted network's raw output on (N, T, F) sequences (logits; the regression form's scaled score)."""
        check_is_fitted(self, "network_")
        X = _sequences(X, type(self).__name__)
        if X.shape[-1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features per step, got {X.shape[-1]}")
        self.network_.eval()
        return self.network_(torch.as_tensor(X, dtype=torch.float32))

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        positive = pd_probability(self.network_output(X), self.loss).numpy().astype(np.float64)
        return np.stack([1.0 - positive, positive], axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(np.int64)]

    def export_fitted(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The fitted state without pickle: the network's tensors and JSON-able attributes."""
        check_is_fitted(self, "network_")
        tensors = {key: value.detach().cpu().contiguous() for key, value in self.network_.state_dict().items()}
        attributes = {"n_features_in": int(self.n_features_in_), "best_epoch": self.best_epoch_,
                      "n_epochs": int(self.n_epochs_), **self.output_attributes()}
        return tensors, attributes

    def import_fitted(self, tensors: dict[str, torch.Tensor], attributes: dict[str, Any]) -> ResidualRNNEstimator:
        """This (unfitted) estimator made fitted from :meth:`export_fitted`'s output; shapes must match its params."""
        network = self.build_network(int(attributes["n_features_in"]))
        network.load_state_dict(tensors)  # strict: a missing, extra or mis-shaped tensor raises
        self.network_ = network.eval()
        self.n_features_in_ = int(attributes["n_features_in"])
        self.best_epoch_ = attributes.get("best_epoch")
        self.n_epochs_ = attributes.get("n_epochs")
        self.set_output_attributes(attributes)
        return self

    def output_attributes(self) -> dict[str, Any]:
        """What maps the network's output to predictions, beyond its weights: the classes."""
        return {"classes": self.classes_.tolist()}

    def set_output_attributes(self, attributes: dict[str, Any]) -> None:
        self.classes_ = np.asarray(attributes["classes"])


def log_history(logger: Logger, history: list[dict[str, float]]) -> None:
    """Replay a batched fit's per-epoch curves (``train/loss``, ``val/loss``, ``val/accuracy``) into a Lightning logger."""
    for row in history:
        metrics = {k: v for k, v in row.items() if k != "epoch" and math.isfinite(v)}
        logger.log_metrics({**metrics, "epoch": row["epoch"]}, step=int(row["epoch"]))
    logger.save()


def _import_class(class_path: str) -> type:
    found = pydoc.locate(class_path)
    if not isinstance(found, type):
        raise ValueError(f"class_path {class_path!r}: no such class")
    return found


@functools.cache
def _estimator_parser():
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--estimator", type=BaseEstimator)
    return parser


@functools.lru_cache(maxsize=256)
def _template(class_path: str, init_args_json: str) -> BaseEstimator:
    parser = _estimator_parser()
    spec = {"class_path": class_path, "init_args": json.loads(init_args_json)}
    try:
        estimator = parser.instantiate(parser.parse_object({"estimator": spec})).estimator
    except Exception as err:  # jsonargparse's ArgumentError, or the class's own check of its arguments
        raise ValueError(_estimator_error(class_path, str(err))) from err
    for value in estimator.get_params(deep=True).values():
        # An untyped parameter (scikit-learn's have no annotations) keeps a spec it could not build as a dict:
        # building it alone says what is wrong with it.
        if isinstance(value, dict) and "class_path" in value:
            _template(str(value["class_path"]), json.dumps(value.get("init_args", {}), sort_keys=True, default=str))
            raise ValueError(f"class_path {class_path}: its nested {value['class_path']} was not built")
    return estimator


def _estimator_error(class_path: str, text: str) -> str:
    """jsonargparse's nested error as one line: the innermost class and what is wrong with its arguments."""
    import inspect
    import re

    lines = [line.strip().strip("- ") for line in text.splitlines() if line.strip()]
    problem = next((line for line in lines if "is not accepted" in line or line.startswith("Expected a ")
                    and "NoneType" not in line), None)
    if problem is None:
        kept = [line.rstrip(":") for line in lines if not line.startswith(("Problem with given class_path", "Parser key"))]
        return f"class_path {class_path}: " + "; ".join(kept[-2:])
    before = lines[:lines.index(problem)]
    owners = [m.group(1) for line in before for m in [re.search(r"class_path '([^']+)'", line)] if m]
    owner = owners[-1] if owners else class_path
    keys = [m.group(1) for line in before for m in [re.match(r'Parser key "([^"]+)"', line)] if m]
    message = f"class_path {owner}: {problem}" + (f" (parameter {keys[-1]})" if keys and keys[-1] != "estimator" else "")
    if "not accepted" in problem:
        accepted = list(inspect.signature(_import_class(owner)).parameters)
        message += f"; its parameters: {', '.join(accepted)}"
    return message


def build_estimator(config: ClassifierConfig) -> BaseEstimator:
    """A fresh, unfitted estimator of ``config``'s class, its ``init_args`` checked against its signature."""
    return clone(_template(config.class_path, json.dumps(config.init_args, sort_keys=True, default=str)))


def estimator_kind(estimator: BaseEstimator) -> str:
    """The registry kind of ``estimator`` (lstm, gru, dt, bc, rf, svm), else its class name in lower case."""
    if isinstance(estimator, ResidualRNNEstimator):
        return estimator.cell
    inner = estimator.estimator if isinstance(estimator, FlatClassifier) else estimator
    for kind, spec in CLASSIFIERS.items():
        if kind not in RECURRENT_KINDS and type(inner) is _import_class(spec["init_args"]["estimator"]["class_path"]):
            return kind
    return type(inner).__name__.lower()


def resolve_classifier(config: ClassifierConfig) -> ClassifierConfig:
    """``config`` checked (its estimator built once) and named: a missing name, or one spelled from values
    (``lstm_processed_residual``), is spelled from the estimator's actual values, so a sweep trial with
    ``residual`` false is ``lstm_processed``, not the file's label."""
    estimator = build_estimator(config)
    name = config.name
    if not name or name in DERIVED_NAMES:
        name = derived_name(estimator_kind(estimator), config.features, bool(getattr(estimator, "residual", False)))
    class_path = f"{type(estimator).__module__}.{type(estimator).__qualname__}"  # a short name, spelled out
    return dataclasses.replace(config, name=name, class_path=class_path)


PICKLE_FREE_CLASS_PATHS: tuple[str, ...] = (RNN_CLASS_PATH,)
"""The estimators whose fitted state a screening model stores (tensors + JSON)."""


def stored_classifier(values: dict[str, Any]) -> ClassifierConfig:
    """A classifier config read back from a saved model. Only :data:`PICKLE_FREE_CLASS_PATHS` are accepted, so
    reading a model file never imports or builds any other class."""
    config = ClassifierConfig(**values)
    if config.class_path not in PICKLE_FREE_CLASS_PATHS:
        raise ValueError(f"class_path {config.class_path!r} is not one a screening model stores "
                         f"({', '.join(PICKLE_FREE_CLASS_PATHS)})")
    return config


def trains_in_epochs(config: ClassifierConfig) -> bool:
    """Whether ``config``'s estimator is a residual network (seconds per fit; the batched engine's)."""
    return isinstance(build_estimator(config), ResidualRNNEstimator)


def seeded(pipeline: Pipeline, seed: int, split_seed: int = 0) -> Pipeline:
    """``pipeline`` with the training ``seed`` on every ``random_state`` of its steps (scikit-learn's convention)
    and ``split_seed`` on every network's validation split."""
    params = pipeline.get_params(deep=True)
    pipeline.set_params(**{key: int(seed) for key in params if key.rpartition("__")[2] == "random_state"},
                        **{key: int(split_seed) for key in params if key.rpartition("__")[2] == "split_seed"})
    return pipeline


def build_pipeline(config: ClassifierConfig, seed: int = 0, split_seed: int = 0) -> Pipeline:
    """The one way a stage-2 classifier is fitted: fold-local scaling of the sequences, then the estimator.

    The scaler is fitted on every row given to ``fit`` (the training fold: for the residual networks it
    includes the validation split they carve afterwards, never the test fold).
    """
    return seeded(Pipeline([("scale", SequenceScaler()), ("classify", build_estimator(config))]), seed, split_seed)


def saves_without_pickle(estimator: BaseEstimator) -> bool:
    """Whether ``estimator`` can export its fitted state as tensors + JSON (see :meth:`ResidualRNNEstimator.export_fitted`)."""
    return callable(getattr(estimator, "export_fitted", None)) and callable(getattr(estimator, "import_fitted", None))


def pickle_free_kinds() -> tuple[str, ...]:
    """The registry kinds whose fitted pipeline a screening model can save."""
    return tuple(kind for kind, spec in CLASSIFIERS.items() if spec["class_path"] in PICKLE_FREE_CLASS_PATHS)


def fit_pipelines(
    pipelines: list[Pipeline],
    inputs: list[np.ndarray],
    labels: list[np.ndarray],
    progress: Callable[[float], None] | None = None,
) -> list[float]:
    """``pipeline.fit(X, y)`` for each pipeline on its own rows; the residual networks among them in one
    :class:`NetworkBatch`, so they train together when it closes.

    The other pipelines (scikit-learn baselines) fit on a second thread meanwhile: both release the GIL in
    their heavy parts, so on two cores the baselines cost little extra wall time. ``progress`` receives the
    share of a fit completed (1 per fit in total). Returns each fit's seconds (a batched network's share of
    its group's wall time, in proportion to the epochs it trained).
    """
    from concurrent.futures import ThreadPoolExecutor

    if not len(pipelines) == len(inputs) == len(labels):
        raise ValueError(f"{len(pipelines)} pipelines, {len(inputs)} inputs and {len(labels)} label arrays")
    seconds = [0.0] * len(pipelines)
    networks = [i for i, pipeline in enumerate(pipelines) if isinstance(pipeline[-1], ResidualRNNEstimator)]
    others = sorted(set(range(len(pipelines))) - set(networks))

    def fit(indices: list[int], batch: NetworkBatch | None = None) -> None:
        for i in indices:
            started = time.perf_counter()
            pipelines[i].fit(inputs[i], labels[i])
            seconds[i] = time.perf_counter() - started
            if progress is not None and not (batch is not None and batch.holds(pipelines[i][-1])):
                progress(1.0)

    with ThreadPoolExecutor(max_workers=1) as pool:
        baselines = pool.submit(fit, others) if others and networks else None
        with NetworkBatch(progress) as batch:
            fit(networks, batch)
        if baselines is None:
            fit(others)
        else:
            baselines.result()
    for i in networks:
        if batch.holds(pipelines[i][-1]):
            seconds[i] += pipelines[i][-1].fit_seconds_
    return seconds
