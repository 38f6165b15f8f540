"""The stage-2 classifiers as scikit-learn estimators, a registry of them, and the one pipeline every fit uses.

Every classifier takes the per-subject sequences (N, 4 videos, F features) and is fitted as
``Pipeline([("scale", SequenceScaler()), ("classify", estimator)])`` built by :func:`build_pipeline`:
the residual LSTM/GRU (:class:`ResidualRNNEstimator`, which carves its own stratified validation split
from the rows it is given for early stopping and best-weight selection) and the Table 3 baselines
(:class:`FlatClassifier` around DT, naive Bayes, RF and SVM, which see the sequences flattened to
(N, 4 * F)). Adding a classifier is one :data:`CLASSIFIERS` entry (plus its Table 3 row).
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping
from lightning.pytorch.loggers import Logger
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier
from sklearn.utils.validation import check_is_fitted
from torch.utils.data import DataLoader, TensorDataset

from dfer_pd.common.parallel import torch_threads
from dfer_pd.stage2.features import SequenceScaler
from dfer_pd.stage2.ensemble import fit_members
from dfer_pd.stage2.module import PDClassifierModule, pd_probability
from dfer_pd.stage2.sequence_classifier import ResidualRNNClassifier
from dfer_pd.stage2.settings import CLASSIFIER_KINDS, LOSS_OUTPUTS, ClassifierConfig, CVConfig
from dfer_pd.stage2.splits import validation_split



def _sequences(X: Any, estimator: str) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3:
        raise ValueError(f"{estimator} expects (N, steps, features) sequences, got shape {X.shape}")
    if not np.isfinite(X).all():
        raise ValueError(f"{estimator} got NaN or inf inputs")
    return X


class FlatClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier on sequences flattened from (N, T, F) to (N, T * F): the Table 3 baselines.

    ``fit`` clones ``estimator`` and fits the clone (``estimator_``); ``logger`` is accepted so every
    registry entry fits the same way, but a one-shot fit has no training curve to log.
    """

    def __init__(self, estimator: BaseEstimator | None = None) -> None:
        self.estimator = estimator

    def fit(self, X: np.ndarray, y: np.ndarray, logger: Logger | None = None) -> FlatClassifier:
        if self.estimator is None:
            raise ValueError("FlatClassifier needs an estimator")
        X = _sequences(X, type(self).__name__)
        self.estimator_ = clone(self.estimator).fit(X.reshape(len(X), -1), y)
        self.classes_ = self.estimator_.classes_
        self.n_features_in_ = X.shape[-1]
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        X = _sequences(X, type(self).__name__)
        return self.estimator_.predict_proba(X.reshape(len(X), -1))

    def predict(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        X = _sequences(X, type(self).__name__)
        return self.estimator_.predict(X.reshape(len(X), -1))


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


ENGINES: tuple[str, ...] = ("batched", "lightning")
"""How the residual networks train: many at once in one lean loop, or one Lightning fit each."""


def _as_tensors(inputs: np.ndarray, labels: np.ndarray) -> TensorDataset:
    return TensorDataset(torch.as_tensor(inputs, dtype=torch.float32), torch.as_tensor(labels, dtype=torch.long))


class ResidualRNNEstimator(ClassifierMixin, BaseEstimator):
    """The residual LSTM/GRU (:class:`ResidualRNNClassifier`) as a scikit-learn estimator on (N, T, F) sequences.

    ``fit`` carves a stratified validation split of ``val_fraction`` of its rows (seeded by ``split_seed``,
    the same split for every ``random_state``), trains a fresh network on the rest with Lightning
    (``random_state`` seeds the weights and the batch order; ``deterministic`` asks for deterministic
    kernels), stops early after ``patience`` epochs without a lower validation loss and keeps the weights
    of the best epoch; ``val_fraction=0`` trains ``max_epochs`` and keeps the last weights. The fitted
    network lives on the CPU (``network_``). ``predict_proba`` returns one column per ``classes_``.
    The fitted state is tensors plus JSON-able attributes (:meth:`export_fitted` / :meth:`import_fitted`),
    so a screening model stores it without pickle.

    ``engine="batched"`` (the default) trains through :func:`dfer_pd.stage2.ensemble.fit_members`, the
    lean loop that cross-validation uses to train many such networks at once; ``engine="lightning"``
    runs one Lightning ``Trainer`` fit. Both follow the same recipe with the same random streams and
    agree to rounding (tests/stage2/test_ensemble.py).
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
        accelerator: str = "cpu",
        deterministic: bool = True,
        engine: Literal["batched", "lightning"] = "batched",
        num_threads: int = 1,
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
        self.accelerator = accelerator
        self.deterministic = deterministic
        self.engine = engine
        self.num_threads = num_threads

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
        if self.engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {self.engine!r}")
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

    def fit(self, X: np.ndarray, y: np.ndarray, logger: Logger | None = None) -> ResidualRNNEstimator:
        """Train on (X, y); ``logger`` (a Lightning logger) records the training and validation curves."""
        X, labels, classes = self.check_training_rows(X, y)
        if self.engine == "batched":
            fit_members([self], [X], [y])
            if logger is not None:
                log_history(logger, self.history_)
            return self
        fit_idx, val_idx = validation_split(labels, np.arange(len(X)), self.val_fraction, self.split_seed)
        L.seed_everything(self.random_state, verbose=False)
        module = PDClassifierModule(self.build_network(X.shape[-1]), loss=self.loss, lr=self.lr,
                                    weight_decay=self.weight_decay)
        train_loader = DataLoader(
            _as_tensors(X[fit_idx], labels[fit_idx]),
            batch_size=self.batch_size,
            shuffle=True,
            generator=torch.Generator().manual_seed(self.random_state),
        )
        callbacks: list[Callback] = []
        val_loader = None
        best = BestWeights("val/loss")
        if len(val_idx):
            val_loader = DataLoader(_as_tensors(X[val_idx], labels[val_idx]), batch_size=len(val_idx))
            callbacks = [best, EarlyStopping(monitor="val/loss", mode="min", patience=self.patience)]
        with _quiet_and_restored_torch_flags(), torch_threads(self.num_threads):
            trainer = L.Trainer(
                max_epochs=self.max_epochs,
                accelerator=self.accelerator,
                devices=1,
                logger=logger if logger is not None else False,
                callbacks=callbacks,
                enable_progress_bar=False,
                enable_model_summary=False,
                enable_checkpointing=False,
                num_sanity_val_steps=0,
                log_every_n_steps=1,
                deterministic=self.deterministic,
            )
            trainer.fit(module, train_loader, val_loader)
        best.restore(module)
        self.network_ = module.net.to("cpu").eval()
        self.classes_ = classes
        self.n_features_in_ = X.shape[-1]
        self.best_epoch_ = best.best_epoch
        self.n_epochs_ = trainer.current_epoch
        self.history_ = []
        return self

    @torch.no_grad()
    def network_output(self, X: np.ndarray) -> torch.Tensor:
        """The fitted network's raw output on (N, T, F) sequences (logits; the regression form's scaled score)."""
        check_is_fitted(self, "network_")
        X = _sequences(X, type(self).__name__)
        if X.shape[-1] != self.n_features_in_:
            raise ValueError(f"expected {self.n_features_in_} features per step, got {X.shape[-1]}")
        self.network_.eval()
        with torch_threads(getattr(self, "num_threads", 1)):
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
        attributes = {"classes": self.classes_.tolist(), "n_features_in": int(self.n_features_in_),
                      "best_epoch": self.best_epoch_, "n_epochs": int(self.n_epochs_)}
        return tensors, attributes

    def import_fitted(self, tensors: dict[str, torch.Tensor], attributes: dict[str, Any]) -> ResidualRNNEstimator:
        """This (unfitted) estimator made fitted from :meth:`export_fitted`'s output; shapes must match its params."""
        network = self.build_network(int(attributes["n_features_in"]))
        network.load_state_dict(tensors)  # strict: a missing, extra or mis-shaped tensor raises
        self.network_ = network.eval()
        self.classes_ = np.asarray(attributes["classes"])
        self.n_features_in_ = int(attributes["n_features_in"])
        self.best_epoch_ = attributes.get("best_epoch")
        self.n_epochs_ = attributes.get("n_epochs")
        return self


def log_history(logger: Logger, history: list[dict[str, float]]) -> None:
    """Replay a batched fit's per-epoch curves (``train/loss``, ``val/loss``, ``val/accuracy``) into a Lightning logger."""
    for row in history:
        metrics = {k: v for k, v in row.items() if k != "epoch" and math.isfinite(v)}
        logger.log_metrics({**metrics, "epoch": row["epoch"]}, step=int(row["epoch"]))
    logger.save()


ClassifierFactory = Callable[[ClassifierConfig, int, CVConfig], BaseEstimator]
"""``factory(config, seed, cv)`` -> an unfitted estimator on (N, T, F) sequences with ``fit(X, y, logger=None)``
and ``predict_proba``; ``seed`` is the training seed, ``cv`` supplies the in-fold selection settings."""


def recurrent(cell: Literal["lstm", "gru"]) -> ClassifierFactory:
    """A registry factory for the residual ``cell`` network, configured by :class:`ClassifierConfig`."""

    def build(config: ClassifierConfig, seed: int, cv: CVConfig) -> ResidualRNNEstimator:
        return ResidualRNNEstimator(
            cell=cell, residual=config.residual, hidden_size=config.hidden_size, num_layers=config.num_layers,
            dropout=config.dropout, loss=config.loss, lr=config.lr, weight_decay=config.weight_decay,
            max_epochs=config.max_epochs, batch_size=config.batch_size, patience=config.patience,
            val_fraction=cv.val_fraction, split_seed=cv.split_seed, random_state=seed,
            accelerator=cv.runtime.accelerator, deterministic=cv.runtime.deterministic, engine=cv.runtime.engine, num_threads=cv.runtime.threads,
        )

    return build


def flat(make: Callable[[dict[str, Any], int], BaseEstimator]) -> ClassifierFactory:
    """A registry factory for a scikit-learn classifier ``make(params, seed)`` on flattened sequences;
    ``params`` are :attr:`ClassifierConfig.sklearn_params`."""

    def build(config: ClassifierConfig, seed: int, cv: CVConfig) -> FlatClassifier:
        return FlatClassifier(make(dict(config.sklearn_params), seed))

    return build


def _decision_tree(params: dict[str, Any], seed: int) -> DecisionTreeClassifier:
    return DecisionTreeClassifier(**{"random_state": seed, **params})


def _naive_bayes(params: dict[str, Any], seed: int) -> GaussianNB:  # the paper's "BC"
    return GaussianNB(**params)


def _random_forest(params: dict[str, Any], seed: int) -> RandomForestClassifier:
    return RandomForestClassifier(**{"random_state": seed, "n_jobs": 1, **params})


def _svm(params: dict[str, Any], seed: int) -> CalibratedClassifierCV:
    # An RBF SVC with Platt scaling fitted out-of-sample; SVC(probability=True) is deprecated in sklearn 1.9.
    # ``params`` go to the SVC.
    return CalibratedClassifierCV(SVC(**{"random_state": seed, **params}), method="sigmoid", ensemble=False)


CLASSIFIERS: dict[str, ClassifierFactory] = {
    "lstm": recurrent("lstm"),
    "gru": recurrent("gru"),
    "dt": flat(_decision_tree),
    "bc": flat(_naive_bayes),
    "rf": flat(_random_forest),
    "svm": flat(_svm),
}
"""Classifier kind -> factory, one for each of :data:`~dfer_pd.stage2.settings.CLASSIFIER_KINDS`."""
if tuple(CLASSIFIERS) != CLASSIFIER_KINDS:  # the settings validate kinds without importing this registry
    raise ImportError(f"the registry's kinds {tuple(CLASSIFIERS)} differ from CLASSIFIER_KINDS {CLASSIFIER_KINDS}")


def build_pipeline(config: ClassifierConfig, seed: int, cv: CVConfig | None = None) -> Pipeline:
    """The one way a stage-2 classifier is fitted: fold-local scaling of the sequences, then the estimator.

    The scaler is fitted on every row given to ``fit`` (the training fold: for the residual networks it
    includes the validation split they carve afterwards, never the test fold).
    ``fit(X, y, classify__logger=logger)`` passes a Lightning logger to the estimator.
    """
    estimator = CLASSIFIERS[config.kind](config, seed, cv or CVConfig())
    return Pipeline([("scale", SequenceScaler()), ("classify", estimator)])


def saves_without_pickle(estimator: BaseEstimator) -> bool:
    """Whether ``estimator`` can export its fitted state as tensors + JSON (see :meth:`ResidualRNNEstimator.export_fitted`)."""
    return callable(getattr(estimator, "export_fitted", None)) and callable(getattr(estimator, "import_fitted", None))


def pickle_free_kinds() -> tuple[str, ...]:
    """The registry kinds whose fitted pipeline a screening model can save."""
    return tuple(kind for kind, factory in CLASSIFIERS.items()
                 if saves_without_pickle(factory(ClassifierConfig(kind=kind), 0, CVConfig())))


def batches_with_others(pipeline: Pipeline) -> bool:
    """Whether ``pipeline``'s classifier trains in the batched engine (with other such pipelines, in one loop)."""
    estimator = pipeline.named_steps["classify"]
    return isinstance(estimator, ResidualRNNEstimator) and estimator.engine == "batched"


def fit_pipelines(
    pipelines: list[Pipeline],
    inputs: list[np.ndarray],
    labels: list[np.ndarray],
    progress: Callable[[float], None] | None = None,
) -> list[float]:
    """Fit each pipeline on its own rows, as ``pipeline.fit(X, y)`` would, the residual networks all at once.

    Every scaler is fitted on its own pipeline's rows only; the networks of batched-engine pipelines then
    train together (:func:`dfer_pd.stage2.ensemble.fit_members`), every other pipeline is fitted in turn.
    ``progress`` receives the share of a fit completed (1 per fit in total). Returns each fit's seconds
    (a batched network's share of its group's wall time, in proportion to the epochs it trained).
    """
    import time
    from concurrent.futures import ThreadPoolExecutor

    if not len(pipelines) == len(inputs) == len(labels):
        raise ValueError(f"{len(pipelines)} pipelines, {len(inputs)} inputs and {len(labels)} label arrays")
    seconds = [0.0] * len(pipelines)
    together = [i for i, pipeline in enumerate(pipelines) if batches_with_others(pipeline)]
    one_by_one = [i for i in range(len(pipelines)) if i not in set(together)]

    def fit_one_by_one(indices: list[int]) -> None:
        for i in indices:
            started = time.perf_counter()
            pipelines[i].fit(inputs[i], labels[i])
            seconds[i] = time.perf_counter() - started
            if progress is not None:
                progress(1.0)

    if not together:
        fit_one_by_one(one_by_one)
        return seconds
    # The scikit-learn fits run on a second thread while the networks train on this one (both release the
    # GIL in their heavy parts), so on two cores the baselines cost little extra wall time. Networks that
    # train with Lightning stay on this thread.
    lightning = [i for i in one_by_one if isinstance(pipelines[i].named_steps["classify"], ResidualRNNEstimator)]
    sklearn_fits = [i for i in one_by_one if i not in set(lightning)]
    fit_one_by_one(lightning)
    with ThreadPoolExecutor(max_workers=1) as pool:
        baselines = pool.submit(fit_one_by_one, sklearn_fits) if sklearn_fits else None
        estimators, scaled, targets = [], [], []
        for i in together:
            started = time.perf_counter()
            scaled.append(pipelines[i].named_steps["scale"].fit_transform(inputs[i]))
            estimators.append(pipelines[i].named_steps["classify"])
            targets.append(labels[i])
            seconds[i] = time.perf_counter() - started
        fit_members(estimators, scaled, targets, progress=progress)
        if baselines is not None:
            baselines.result()
    for i, estimator in zip(together, estimators):
        seconds[i] += estimator.fit_seconds_
    return seconds
