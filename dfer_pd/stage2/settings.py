"""Stage-2 settings as plain dataclasses, in a module that imports nothing heavy.

The command line builds its parser from these classes (``dfer-pd train-pd --help`` must not wait for
torch or Lightning); every module imports them from here, and this module imports no other stage-2 module:
the vocabulary the settings are checked against (classifier kinds, feature kinds, loss outputs) is declared
here and used by the modules that implement it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

from dfer_pd.faces.settings import FaceCropSettings

RNN_CLASS_PATH = "dfer_pd.stage2.classifiers.ResidualRNNEstimator"
"""The residual LSTM/GRU estimator, the paper's model and train-pd's default classifier."""


def _flat(class_path: str, **init_args: Any) -> dict[str, Any]:
    inner = {"class_path": class_path, "init_args": init_args} if init_args else {"class_path": class_path}
    return {"class_path": "dfer_pd.stage2.classifiers.FlatClassifier", "init_args": {"estimator": inner}}


CLASSIFIERS: dict[str, dict[str, Any]] = {
    "lstm": {"class_path": RNN_CLASS_PATH, "init_args": {"cell": "lstm"}},
    "gru": {"class_path": RNN_CLASS_PATH, "init_args": {"cell": "gru"}},
    "dt": _flat("sklearn.tree.DecisionTreeClassifier"),
    "bc": _flat("sklearn.naive_bayes.GaussianNB"),  # the paper's "BC" (Bayes classifier)
    "rf": _flat("sklearn.ensemble.RandomForestClassifier", n_jobs=1),
    # An RBF SVC with Platt scaling fitted out-of-sample (SVC(probability=True) is deprecated in sklearn 1.9).
    "svm": _flat("sklearn.calibration.CalibratedClassifierCV", estimator={"class_path": "sklearn.svm.SVC"},
                 method="sigmoid", ensemble=False),
}
"""The named classifiers (Table 3's rows): kind -> the estimator's ``class_path`` and ``init_args``. Training
seeds are set by cross-validation on every ``random_state`` (:func:`dfer_pd.stage2.classifiers.build_pipeline`)."""
CLASSIFIER_KINDS: tuple[str, ...] = tuple(CLASSIFIERS)
RECURRENT_KINDS: tuple[str, ...] = ("lstm", "gru")
"""The kinds that are networks (trained in epochs, seconds per fit)."""
SEQUENCE_KINDS: tuple[str, ...] = ("raw", "processed", "both", "kinematics", "clip+kinematics")
"""The classifier's input features per subject (see :func:`dfer_pd.stage2.features.subject_sequences`)."""
FACE_TRACKING_FIELDS: tuple[str, ...] = ("detector", "detector_threshold", "fallback_detector", "min_face_fraction",
                                         "detect_every", "smooth_window")
"""The face settings that decide where the landmarks are (not how the face is cropped)."""
LOSS_OUTPUTS: dict[str, int] = {"bce": 1, "ce": 2}
"""Logits the network's head must give for each loss: one for BCE-with-logits, two for cross-entropy."""
REGRESSION_LOSS = "mse"
"""The loss of the residual network's regression head (one output: the MDS-UPDRS 3.2 estimate)."""
NETWORK_OUTPUTS: dict[str, int] = {**LOSS_OUTPUTS, REGRESSION_LOSS: 1}
"""Outputs of the network's head for every loss it trains with, the regression head's included."""
TARGETS: tuple[str, ...] = ("pd", "severity")
"""What train-pd learns: pd = PD vs HC (always); severity = also MDS-UPDRS item 3.2 from the same features."""
REGRESSOR_KINDS: tuple[str, ...] = ("lstm", "gru", "dt", "rf", "svm", "ridge")
"""The severity registry's kinds (:data:`dfer_pd.stage2.regressors.REGRESSORS`): the classifier kinds that have a
regression form (naive Bayes has none), and ridge regression."""


@dataclass
class ClassifierConfig:
    """The stage-2 classifier: a label, its input features and its estimator, built by ``class_path``.

    The estimator's ``__init__`` parameters are its settings, as scikit-learn's are: ``init_args`` holds only
    what differs from their defaults, and :func:`dfer_pd.stage2.classifiers.build_estimator` checks the names and
    types against the signature. How the networks run (device, engine, threads) is :class:`RuntimeSettings`.

    Args:
        name: label of this classifier in outputs, tables and W&B runs (default: spelled from the estimator and
            features, e.g. lstm_processed_residual, rf_raw).
        features: raw = the 4 intensities per video; processed = the paper's Eq. 4 features; both = the two concatenated;
            kinematics = the 12 landmark kinematics per video; clip+kinematics = Eq. 4 features and kinematics.
        class_path: the estimator's class: dfer_pd.stage2.classifiers.ResidualRNNEstimator (the residual LSTM/GRU),
            dfer_pd.stage2.classifiers.FlatClassifier around a scikit-learn classifier, or another scikit-learn
            estimator whose fit and predict_proba take (N, 4, F) sequences.
        init_args: the estimator's parameters that differ from its defaults, e.g. {hidden_size: 32, cell: gru}
            (`--classifier.init_args.hidden_size=32`); see `help(ResidualRNNEstimator)`.
    """

    name: str | None = None
    features: Literal["raw", "processed", "both", "kinematics", "clip+kinematics"] = "processed"
    class_path: str = RNN_CLASS_PATH
    init_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.features not in SEQUENCE_KINDS:
            raise ValueError(f"features must be one of {SEQUENCE_KINDS}, got {self.features!r}")
        if not isinstance(self.init_args, dict):
            raise ValueError(f"init_args must be a mapping of the estimator's parameters, got {self.init_args!r}")

    @classmethod
    def of_kind(cls, kind: str, features: str = "processed", name: str | None = None, **init_args: Any) -> ClassifierConfig:
        """The named classifier ``kind`` (:data:`CLASSIFIERS`), with ``init_args`` over the registry's."""
        if kind not in CLASSIFIERS:
            raise ValueError(f"kind must be one of {CLASSIFIER_KINDS}, got {kind!r}")
        spec = CLASSIFIERS[kind]
        return cls(name=name, features=features, class_path=spec["class_path"],
                   init_args={**spec.get("init_args", {}), **init_args})


def derived_name(kind: str, features: str, residual: bool) -> str:
    """A classifier's label spelled from its values, as Table 3's rows are: ``lstm_processed_residual``, ``rf_raw``."""
    return f"{kind}_{features}" + ("_residual" if residual else "")


DERIVED_NAMES = frozenset(derived_name(k, f, r) for k in CLASSIFIER_KINDS for f in SEQUENCE_KINDS for r in (False, True))
"""Every name :func:`derived_name` can spell: a config's name among these is re-spelled from its values."""


@dataclass(frozen=True)
class RuntimeSettings:
    """How the recurrent networks run, not what they compute: p(PD) changes only by float rounding (about 1e-7)
    between these settings, except ``deterministic``, which makes a seed repeat a run exactly. Code runs under
    them inside :func:`dfer_pd.stage2.runtime.running_on` (train-pd and ablation run the whole job so), as
    scikit-learn code runs under its ``config_context``.

    Args:
        accelerator: Lightning accelerator of the recurrent networks: auto, cpu, gpu.
        deterministic: deterministic torch algorithms, so a seed repeats a run exactly.
        engine: how the recurrent networks train: batched (many fits at once as one stacked ensemble, fast) or lightning (one Trainer fit each).
        threads: torch intra-op threads while the recurrent networks train (1 keeps a 2-core machine steady when anything else runs; 0: torch's default).
        workers: processes that share the fits of a CV, a permutation test or Table 3 (each with ``threads`` threads; 0: one per CPU; 1: this process).
    """

    accelerator: str = "auto"
    deterministic: bool = True
    engine: Literal["batched", "lightning"] = "batched"
    threads: int = 1
    workers: int = 0

    def __post_init__(self) -> None:
        if self.threads < 0:
            raise ValueError(f"threads must be 0 (torch's default) or more, got {self.threads}")
        if self.workers < 0:
            raise ValueError(f"workers must be 0 (one per CPU) or more, got {self.workers}")
        if self.engine not in ("batched", "lightning"):
            raise ValueError(f"engine must be batched or lightning, got {self.engine!r}")


CPU = RuntimeSettings(accelerator="cpu")
"""The recurrent networks on the CPU, everything else as default."""


@dataclass
class CVConfig:
    """How folds are drawn, the seeds each fit gets, and the rule the folds are scored with.

    ``split_seed`` fixes the folds and the validation splits the residual networks carve from each training
    fold (their ``val_fraction``); ``seeds`` are training seeds (weights, batch order, forests), each a complete
    pass over the same folds, set on every ``random_state`` of the estimator. How the networks run is not
    here: :class:`RuntimeSettings` (``--runtime.*``).

    Args:
        n_splits: number of subject-level folds (stratified by label).
        repeats: times the whole k-fold CV is run, each on new folds (split seed split_seed + r); figures are reported as mean, std and 95% interval over repeats.
        seeds: training seeds; each is a complete pass over the same folds.
        split_seed: seed of the folds and of the validation splits inside training folds.
        threshold: p(PD) at or above which a subject is called PD.
    """

    n_splits: int = 5
    repeats: int = 10
    seeds: list[int] = field(default_factory=lambda: [0])
    split_seed: int = 0
    threshold: float = 0.5

    def __post_init__(self) -> None:
        if self.n_splits < 2:
            raise ValueError(f"n_splits must be at least 2, got {self.n_splits}")
        if self.repeats < 1:
            raise ValueError(f"repeats must be at least 1, got {self.repeats}")
        if not self.seeds:
            raise ValueError("seeds must hold at least one training seed")


CALIBRATION_METHODS: tuple[str, ...] = ("auto", "platt", "isotonic", "none")
"""auto: whichever of none, Platt and isotonic has the lowest cross-fitted Brier score out of fold."""


@dataclass
class StatsConfig:
    """How the stage-2 figures are tested and calibrated.

    Args:
        confidence: level of the intervals (0.95: 95% intervals).
        permutations: label permutations of the permutation test of train-pd's model (0: no test). The smallest
            p-value it can give is 1 / (permutations + 1), so 100 or more are needed to show p < 0.01.
        permutation_seed: seed of the label permutations.
        reference: Table 3 row the other rows are compared with (the paper's model: the residual LSTM on Eq. 4 features).
        calibration: how the screening model's p(PD) is calibrated on out-of-fold predictions: auto (whichever of
            none, platt and isotonic has the lowest cross-fitted Brier score), platt (refused, so none, when its
            slope is not positive), isotonic or none. The verdict is calibrated p(PD) >= --cv.threshold.
        severity_permutations: score permutations of the severity test (train-pd --target severity; None: as many
            as permutations, 0: no test).
    """

    confidence: float = 0.95
    permutations: int = 100
    permutation_seed: int = 0
    reference: str = "lstm_processed_residual"
    calibration: Literal["auto", "platt", "isotonic", "none"] = "auto"
    severity_permutations: int | None = None

    def __post_init__(self) -> None:
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if self.permutations < 0 or (self.severity_permutations or 0) < 0:
            raise ValueError(f"permutations must be 0 or more, got {self.permutations}, {self.severity_permutations}")
        if self.calibration not in CALIBRATION_METHODS:
            raise ValueError(f"calibration must be one of {CALIBRATION_METHODS}, got {self.calibration!r}")


@dataclass
class HoldoutConfig:
    """An outer test set that cross-validation and tuning never see, scored once at the end.

    Tuning on the same cross-validated accuracy one reports biases it upwards. With ``fraction`` > 0 a
    stratified, seeded share of the subjects is set aside before anything runs: cross-validation (and so
    every W&B sweep trial) uses only the rest. With ``evaluate``, the chosen configuration is then trained
    on all other subjects and scored once on the held-out ones (out_dir/holdout.json).

    Args:
        fraction: share of subjects held out (0: none).
        seed: seed of the held-out split (keep it fixed across a sweep and its final evaluation).
        evaluate: train on the other subjects and score the held-out ones (do this once, after tuning).
    """

    fraction: float = 0.0
    seed: int = 0
    evaluate: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.fraction < 1.0:
            raise ValueError(f"fraction must be in [0, 1), got {self.fraction}")
        if self.evaluate and self.fraction == 0:
            raise ValueError("evaluate needs a held-out share: set fraction > 0 (the same as during tuning)")


@dataclass(frozen=True)
class KinematicsSettings:
    """How landmarks are read for kinematics. Off by default (the shipped stage-2 configs turn it on):
    without it the ``kinematics`` feature kinds cannot be used and Table 3 leaves their rows out, saying so.
    The face is found and tracked as the face settings (``--face.*``, the scoring contract's) say, on
    every ``detect_every``-th landmark frame.

    Args:
        enabled: read every cohort video's facial landmarks and add their kinematics to the intensities.
        fps: landmark frames per second of video, sampled by time.
        max_frames: at most this many landmark frames per video (long videos are sampled more sparsely).
        detect_every: run the face detector on every k-th landmark frame and track the face between.
    """

    enabled: bool = False
    fps: float = 10.0
    max_frames: int = 150
    detect_every: int = 5

    def __post_init__(self) -> None:
        if self.fps <= 0 or self.max_frames < 2:
            raise ValueError(f"kinematics need fps > 0 and max_frames >= 2, got {self.fps} and {self.max_frames}")
        if self.detect_every < 1:
            raise ValueError(f"detect_every must be at least 1, got {self.detect_every}")

    def face_settings(self, face: FaceCropSettings) -> FaceCropSettings:
        """The face path of the landmark pass: ``face``'s detector and tracking, detecting every ``detect_every``-th frame."""
        return replace(face, detect_every=self.detect_every)

    def key(self, face: FaceCropSettings) -> dict:
        """What decides the landmarks (``enabled`` and the crop's framing do not)."""
        values = asdict(self)
        values.pop("enabled")
        tracking = asdict(self.face_settings(face))
        return {**values, **{k: tracking[k] for k in FACE_TRACKING_FIELDS}}


@dataclass
class CohortSettings:
    """The cohort: its manifest, incomplete subjects, the face-crop cache and pseudonyms.

    Args:
        manifest: cohort manifest CSV (subject_id,label,expression,path[,sex,age]; label PD or HC; paths relative to it).
        skip_incomplete: skip (and report) subjects lacking one of the four expressions instead of stopping.
        face_crop_cache: folder where face crops are kept between runs (default: none).
        pseudonymise_ids: replace subject ids in every output and log by salted hashes; the key stays in out_dir/pseudonyms.csv.
        skip_unusable: leave out (and report, in out_dir/excluded_subjects.json and W&B) subjects with an unusable
            video (unreadable, truncated, a still image, no face) instead of stopping with the list of them.
    """

    manifest: str | None = None
    skip_incomplete: bool = False
    face_crop_cache: str | None = None
    pseudonymise_ids: bool = False
    skip_unusable: bool = False


@dataclass
class ExtractionSettings:
    """Stage-1 scoring: the checkpoint, its precision, the intensity cache and batching.

    Args:
        checkpoint: stage-1 checkpoint written by `dfer-pd train-dfer` (e.g. runs/dfer_clip/fold1/checkpoints/best.ckpt).
        precision: numeric precision of scoring (32-true, bf16-mixed, 16-mixed); part of the scoring contract.
        cache_dir: folder of the content-keyed intensity cache (a video is scored once per checkpoint and settings).
        batch_size: videos per batch (prepared together, the next batch on threads meanwhile; each video is
            scored in its own forward pass, so its scores do not depend on its batch-mates).
        num_workers: worker processes that decode videos and find faces and landmarks (the check pass and scoring; 0: in this process).
        accelerator: Lightning accelerator for scoring: auto, cpu, gpu.
        devices: number of devices for scoring.
        runtime: who runs stage 1: torch, or the checkpoint's ONNX export on the CPU (onnx, onnx-int8;
            made by `dfer-pd export`); part of the scoring contract and the cache key.
        onnx_model: the ONNX export to run (default: the one `dfer-pd export` wrote beside the checkpoint).
    """

    checkpoint: str | None = None
    precision: str = "32-true"
    cache_dir: str = "runs/intensity_cache"
    batch_size: int = 8
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int = 1
    runtime: str = "torch"
    onnx_model: str | None = None


@dataclass
class WandbSettings:
    """W&B: offline unless mode online (or WANDB_MODE=online); plots and metrics are logged, never faces.

    Args:
        project: W&B project of the run.
        mode: online, offline or disabled (default: $WANDB_MODE, else offline; online under `wandb agent`).
        group: W&B group of the run (e.g. one per experiment).
        name: W&B run name (default: W&B's generated name).
        dir: folder that holds the W&B run files (default: $WANDB_DIR, else the command's output folder).
        learning_curves: also log every recurrent network's training and validation loss per epoch (one line per
            repeat and fold).
    """

    project: str = "dfer-pd"
    mode: str | None = None
    group: str | None = None
    name: str | None = None
    dir: str | None = None
    learning_curves: bool = False
