"""The stage-2 workflows behind `dfer-pd extract | train-pd | ablation`, given settings objects and a W&B run.

A command parses its options into a :class:`Stage2Job`, opens (or not) a W&B run and prints what these
functions return; everything between (extraction through the cache, pseudonyms, the held-out split,
cross-validation, the permutation test, calibration, plots, the screening model, Table 3) lives here, so
a notebook or another front end runs the same steps with ``run=None`` or its own run.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfer_pd.common.errors import UsageError
from dfer_pd.common.files import atomic_write_json
from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.stage2.cohort import require_cohort_inputs
from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.stage2.settings import (
    ClassifierConfig,
    CohortSettings,
    CVConfig,
    ExtractionSettings,
    HoldoutConfig,
    KinematicsSettings,
    RuntimeSettings,
    StatsConfig,
    TARGETS,
)
from dfer_pd.stage1.quality_policy import QualityPolicy


@dataclass
class Stage2Job:
    """Everything a stage-2 command runs on, each settings object whole (the command builds it from its options)."""

    out_dir: Path
    cohort: CohortSettings = field(default_factory=CohortSettings)
    face: FaceCropSettings = field(default_factory=FaceCropSettings)
    quality: QualityPolicy = field(default_factory=QualityPolicy)
    kinematics: KinematicsSettings = field(default_factory=KinematicsSettings)
    extraction: ExtractionSettings = field(default_factory=ExtractionSettings)
    intensities: str | None = None
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    cv: CVConfig = field(default_factory=CVConfig)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    stats: StatsConfig = field(default_factory=StatsConfig)
    holdout: HoldoutConfig = field(default_factory=HoldoutConfig)
    plots: bool = True
    save_screening_model: bool = True
    learning_curves: bool = False
    target: str = "pd"  # "severity": also MDS-UPDRS 3.2 from the same features (dfer_pd.stage2.severity)

    def __post_init__(self) -> None:
        """The classifier checked against its estimator's signature and named, before any work starts
        (a ValueError names the bad class_path or init_args)."""
        from dfer_pd.stage2.classifiers import resolve_classifier

        self.classifier = resolve_classifier(self.classifier)


@dataclass
class CohortLoad:
    """A cohort's intensities and how they were obtained (for the command to report)."""

    data: CohortIntensities
    skipped: list[tuple[str, str]] = field(default_factory=list)
    report: Any = None  # dfer_pd.stage2.extraction.ExtractionReport when the cohort was scored
    contract: Any = None  # dfer_pd.stage1.contract.ScoringContract when the cohort was scored


def load_intensities(job: Stage2Job, command: str = "train-pd") -> CohortLoad:
    """Intensities from a saved .npz, or from the cohort scored through the cache (no forward pass when cached).

    Either way they carry the scoring contract they were made under.
    """
    if job.intensities:
        return CohortLoad(CohortIntensities.load(job.intensities))
    require_cohort_inputs(job.cohort.manifest, job.extraction.checkpoint, command)
    from dfer_pd.stage1.contract import ScoringContract
    from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule
    from dfer_pd.stage2.extraction import extract_intensities

    extraction = job.extraction
    contract = ScoringContract.from_checkpoint(extraction.checkpoint, job.face, extraction.precision, extraction.runtime)
    datamodule = PDCohortDataModule(job.cohort.manifest, skip_incomplete=job.cohort.skip_incomplete, lenient_manifest=True,
                                    face_crop_cache=job.cohort.face_crop_cache, batch_size=extraction.batch_size,
                                    num_workers=extraction.num_workers)
    data, report = extract_intensities(datamodule, extraction.checkpoint, contract, extraction.cache_dir,
                                       accelerator=extraction.accelerator, devices=extraction.devices,
                                       onnx_model=extraction.onnx_model, skip_unusable=job.cohort.skip_unusable,
                                       quality=job.quality, kinematics=job.kinematics)
    data.excluded = report.excluded if report.excluded_subjects else None
    return CohortLoad(data, list(datamodule.cohort.skipped), report, contract)


def mask_exclusions(excluded: dict | None) -> dict | None:
    """Left-out subjects without their ids and folders: with pseudonymised ids they stay on this machine too."""
    if not excluded:
        return excluded
    return {"count": excluded["count"],
            "videos": [{**v, "subject_id": "(pseudonymised)", "path": Path(v["path"]).name} for v in excluded["videos"]]}


def pseudonymise(data: CohortIntensities, key_file: Path) -> CohortIntensities:
    """Subject ids -> 'P' + 10 hex digits of a salted sha256; the id/pseudonym key is written to key_file only."""
    salt = secrets.token_hex(16)
    known: dict[str, str] = {}
    if key_file.exists():  # keep pseudonyms stable across runs into the same folder
        with open(key_file, newline="") as handle:
            known = {row["subject_id"]: row["pseudonym"] for row in csv.DictReader(handle)}
    mapping = {s: known.get(s) or "P" + hashlib.sha256(f"{salt}:{s}".encode()).hexdigest()[:10] for s in data.subject_ids}
    with open(key_file, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject_id", "pseudonym"])
        writer.writerows(mapping.items())
    data.subject_ids = [mapping[s] for s in data.subject_ids]
    data.excluded = mask_exclusions(data.excluded)
    return data


def record_inputs(job: Stage2Job, data: CohortIntensities, config: dict) -> CohortIntensities:
    """What the run starts from, in ``job.out_dir``: the intensities (ids pseudonymised first when asked, the key in
    pseudonyms.csv) and the options (config.json). Returns the intensities the run goes on with."""
    job.out_dir.mkdir(parents=True, exist_ok=True)
    if job.cohort.pseudonymise_ids:
        data = pseudonymise(data, job.out_dir / "pseudonyms.csv")
    data.save(job.out_dir / "intensities.npz")
    atomic_write_json(job.out_dir / "config.json", config)
    return data


def record_exclusions(data: CohortIntensities, out_dir: Path, run=None) -> None:
    """Subjects left out for unusable videos: out_dir/excluded_subjects.json, and their count and reasons in W&B."""
    if not data.excluded:
        return
    atomic_write_json(out_dir / "excluded_subjects.json", data.excluded)
    if run is not None:
        import wandb

        run.summary["cohort/excluded_subjects"] = data.excluded["count"]
        run.log({"cohort/excluded_videos": wandb.Table(
            columns=["subject_id", "expression", "line", "reason"],
            data=[[v["subject_id"], v["expression"], v["line"], v["reason"]] for v in data.excluded["videos"]])})


def split_holdout(data: CohortIntensities, holdout: HoldoutConfig, out_dir: Path) -> tuple[CohortIntensities, CohortIntensities]:
    """(development, held-out) cohorts; the held-out subject ids go to out_dir/holdout_subjects.csv."""
    from dfer_pd.stage2.splits import holdout_split

    try:
        development, held_out = holdout_split(data.labels, data.subject_ids, holdout.fraction, holdout.seed)
    except ValueError as err:
        raise UsageError(f"--holdout: {err}") from err
    held = data.subset(held_out)
    (out_dir / "holdout_subjects.csv").write_text(
        "subject_id,label\n" + "".join(f"{s},{'PD' if y else 'HC'}\n" for s, y in zip(held.subject_ids, held.labels)))
    return data.subset(development), held


@dataclass
class TrainPDOutcome:
    """What `train-pd` produced, for the command to print (every figure is also in out_dir)."""

    result: Any  # dfer_pd.stage2.metrics.CVResult
    summary: dict[str, float]
    n_subjects: int
    n_pd: int
    calibration: dict[str, Any]
    calibration_method: str
    permutation: Any = None  # dfer_pd.stage2.statistics.PermutationResult
    n_held_out: int = 0
    holdout_report: dict | None = None
    screening_model: Path | None = None
    screening_model_refused: str | None = None
    gate: str | None = None  # how often diagnose's gate refuses the cohort's own subjects (ScreeningModel.gate)
    severity: dict | None = None  # --target severity: dfer_pd.stage2.severity.run_severity's summary, table, folder
    severity_model: str | None = None  # the screening model's MDS-UPDRS 3.2 regressor (SeverityEstimator.performance)


def on_job_runtime(workflow):
    """``workflow(job, ...)`` run inside :func:`~dfer_pd.stage2.runtime.running_on` ``(job.runtime)``."""

    @functools.wraps(workflow)
    def run_on_runtime(job: Stage2Job, *args, **kwargs):
        from dfer_pd.stage2.runtime import running_on

        with running_on(job.runtime):
            return workflow(job, *args, **kwargs)

    return run_on_runtime


@on_job_runtime
def train_pd(job: Stage2Job, data: CohortIntensities, run=None) -> TrainPDOutcome:
    """Repeated subject-level CV, the permutation test, calibration, plots, the held-out evaluation, the screening model.

    ``run`` is an open W&B run (or None): fold metrics, summaries and plots go to it.
    """
    from dfer_pd.stage2.crossval import cross_validate, evaluate_holdout, permutation_test, wandb_learning_curves
    from dfer_pd.stage2.crossval import wandb_metrics_sink
    from dfer_pd.stage2.screening_model import ScreeningModelError, calibration_from_cv, fit_screening_model

    out_dir, classifier, cv, stats, holdout = job.out_dir, job.classifier, job.cv, job.stats, job.holdout
    if job.target not in TARGETS:
        raise UsageError(f"--target must be one of {', '.join(TARGETS)}, got {job.target!r}")
    held_out = None
    if holdout.fraction > 0:
        data, held_out = split_holdout(data, holdout, out_dir)
    record_exclusions(data, out_dir, run)
    if job.target == "severity":  # a cohort without enough scores, or a kind without a regression form: before training
        from dfer_pd.stage2.severity import SeverityError, scored_subjects, table_rows

        try:
            table_rows(classifier, scored_subjects(data, cv.n_splits))
        except SeverityError as err:
            raise UsageError(f"--target severity: {err}") from err
    result = cross_validate(data, classifier, cv, out_dir=out_dir, plots=job.plots, confidence=stats.confidence,
                            metrics_sink=wandb_metrics_sink() if run is not None else None)
    images = {"plots/roc": out_dir / "roc.png", "plots/confusion_matrix": out_dir / "confusion_matrix.png"} if job.plots else {}
    if job.plots:
        images.update(cohort_plots(data, out_dir))
    extra: dict[str, float] = {}
    permutation = None
    if stats.permutations:
        permutation = permutation_test(data, classifier, cv, stats.permutations, stats.permutation_seed)
        atomic_write_json(out_dir / "permutation_test.json", permutation.to_dict())
        extra.update({f"cv/permutation_p_{k}": v for k, v in permutation.p_values.items()})
        if job.plots:
            from dfer_pd.stage2.plots import plot_permutation_test

            images["plots/permutation_test"] = plot_permutation_test(permutation.to_dict(), out_dir / "permutation_test.png")
    calibrator, calibration = calibration_from_cv(result.predictions, stats.calibration, cv.threshold)
    atomic_write_json(out_dir / "calibration.json", {"calibrator": calibrator.to_dict(), **calibration})
    extra.update({"cv/brier_raw": calibration["brier_raw"], "cv/brier_calibrated": calibration["brier_calibrated"]})
    if job.plots:
        from dfer_pd.stage2.plots import plot_reliability

        images["plots/reliability"] = plot_reliability(calibration, out_dir / "reliability.png")
    holdout_report = None
    if held_out is not None and holdout.evaluate:
        # The deployed model's verdict: calibrated p(PD) >= the threshold; every evaluation is logged, append-only.
        holdout_report = evaluate_holdout(data, held_out, classifier, cv, stats.confidence, seed=holdout.seed,
                                          calibration=calibrator, threshold=calibration["threshold"])
        from dataclasses import asdict

        from dfer_pd.stage2.crossval import HOLDOUT_LOG, log_holdout_evaluation

        holdout_report["log"] = {"path": HOLDOUT_LOG, "evaluations": log_holdout_evaluation(out_dir, holdout_report, {
            "classifier": asdict(classifier), "cv": asdict(cv), "stats": asdict(stats), "holdout": asdict(holdout)})}
        atomic_write_json(out_dir / "holdout.json", holdout_report)
        extra.update({f"holdout/{k}": v for k, v in holdout_report["metrics"].items()})
    severity = None
    if job.target == "severity":  # MDS-UPDRS 3.2 on the scored subjects, the same folds and repeats
        from dfer_pd.stage2.severity import SeverityError, run_severity

        permutations = stats.permutations if stats.severity_permutations is None else stats.severity_permutations
        try:
            severity = run_severity(data, classifier, cv, out_dir, permutations, stats.permutation_seed,
                                    stats.confidence, job.plots)
        except SeverityError as err:
            raise UsageError(f"--target severity: {err}") from err
        extra.update(severity["summary"])
        if job.plots:
            images["plots/severity_scatter"] = severity["folder"] / "severity_scatter.png"
    if run is not None:
        import wandb

        for key, value in extra.items():
            run.summary[key] = value
        if job.learning_curves:
            run.log(wandb_learning_curves(classifier.name, result.histories))
        if images:
            run.log({key: wandb.Image(str(path)) for key, path in images.items()})
    outcome = TrainPDOutcome(result, {**result.summary(), **extra}, len(data), int(data.labels.sum()), calibration,
                             calibrator.method, permutation, 0 if held_out is None else len(held_out), holdout_report,
                             severity=severity)
    if job.save_screening_model:
        try:
            model = fit_screening_model(data, classifier, cv, cv_summary=outcome.summary, calibration=calibrator,
                                        calibration_report=calibration,
                                        severity=None if severity is None else severity["summary"])
        except ScreeningModelError as err:  # refused before training: a classifier with no pickle-free format
            outcome.screening_model_refused = str(err)
        else:
            outcome.screening_model = model.save(out_dir / "screening_model")
            outcome.gate = model.gate()
            if model.severity is not None:
                outcome.severity_model = model.severity.performance()
    return outcome


def cohort_plots(data: CohortIntensities, out_dir: Path) -> dict[str, Path]:
    """The cohort's figures that need no classifier: intensity boxes, kinematics, t-SNE of the video features."""
    from dfer_pd.stage2.plots import plot_intensity_boxplots, plot_kinematics, tsne_plot

    images = {"plots/intensity_boxplots": plot_intensity_boxplots(data.intensities, data.labels,
                                                                  out_dir / "intensity_boxplots.png")}
    if data.kinematics is not None:
        images["plots/kinematics"] = plot_kinematics(data.kinematics, data.labels, out_dir / "kinematics.png")
    if data.video_features is not None and len(data) >= 5:
        images["plots/tsne"] = tsne_plot(data.video_features, data.labels, out_dir / "tsne.png")
    return images


@on_job_runtime
def ablation(job: Stage2Job, data: CohortIntensities, run=None):
    """The paper's Table 3 on the same folds (out_dir/table3.md, table3.csv), without the held-out subjects of
    ``job.holdout``; its table and curves go to ``run``."""
    from dfer_pd.stage2.ablation import run_ablation
    from dfer_pd.stage2.crossval import wandb_learning_curves

    curves: dict = {}

    def on_row(name, result) -> None:
        if run is not None and job.learning_curves:
            curves.update(wandb_learning_curves(name, result.histories))

    if job.holdout.evaluate:
        raise UsageError("--holdout.evaluate: the held-out subjects are scored once, by train-pd; ablation only "
                         "leaves them out (--holdout.fraction and --holdout.seed as in the sweep)")
    if job.holdout.fraction > 0:  # Table 3 guides the choice of model: it never sees the held-out subjects
        data, _ = split_holdout(data, job.holdout, job.out_dir)
    record_exclusions(data, job.out_dir, run)
    table = run_ablation(data, job.cv, job.out_dir, base_config=job.classifier, confidence=job.stats.confidence,
                         reference=job.stats.reference, on_row=on_row)
    if run is not None:
        import wandb

        from dfer_pd.stage2.ablation import table3_for_wandb

        compact, summary = table3_for_wandb(table)  # the figures a reader compares, the paper's beside; all columns too
        run.summary.update(summary)
        figure = job.out_dir / "table3.png"
        run.log({"table3": wandb.Table(dataframe=compact), "table3_all_columns": wandb.Table(dataframe=table),
                 **({"table3_figure": wandb.Image(str(figure))} if figure.is_file() else {}), **curves})
    return table
