"""`dfer-pd extract | train-pd | ablation`: stage 2 driven by one YAML (experiments/pd_*.yaml).

Every option is a dotted key (`--classifier.init_args.hidden_size=32`), which is also how W&B sweeps pass them. The
work is :mod:`dfer_pd.stage2.workflows`; this module parses, opens the W&B run and prints.
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from dfer_pd.common.errors import UsageError
from dfer_pd.configs import ConfigFile
from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.stage1.quality_policy import QualityPolicy
from dfer_pd.stage2.settings import (
    ClassifierConfig,
    CohortSettings,
    CVConfig,
    ExtractionSettings,
    HoldoutConfig,
    KinematicsSettings,
    RuntimeSettings,
    StatsConfig,
    WandbSettings,
)

# (No heavy imports at module level, and no `if TYPE_CHECKING:` block: `--help` answers at once, and
# jsonargparse executes such blocks to resolve annotations.)
GROUPS = {"cohort": CohortSettings, "face": FaceCropSettings, "quality": QualityPolicy, "kinematics": KinematicsSettings,
          "extraction": ExtractionSettings, "classifier": ClassifierConfig, "cv": CVConfig, "runtime": RuntimeSettings,
          "stats": StatsConfig, "holdout": HoldoutConfig, "wandb": WandbSettings}
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "extract": ("cohort", "face", "quality", "kinematics", "extraction"),
    "train-pd": ("cohort", "face", "quality", "kinematics", "extraction", "classifier", "cv", "runtime", "stats",
                 "holdout", "wandb"),
    "ablation": ("cohort", "face", "quality", "kinematics", "extraction", "classifier", "cv", "runtime", "stats",
                 "holdout", "wandb"),
}
"""The option groups of each command (the shipped YAML files serve all three; a file's other keys are ignored)."""
DESCRIPTIONS: dict[str, str] = {
    "extract": "Score every video of a cohort with a stage-1 checkpoint into the content-keyed intensity cache "
               "and save out_dir/intensities.npz (a cached video is never scored again).",
    "train-pd": "Stage 2: the cohort's intensities (scored through the cache, or --intensities FILE.npz), "
                "repeated subject-level k-fold cross-validation of the classifier (mean, std and 95% interval over "
                "repeats), a label-permutation test, plots, then the screening model trained on the whole cohort, "
                "its p(PD) calibrated on the out-of-fold predictions, for `dfer-pd diagnose`.",
    "ablation": "The paper's Table 3 (every classifier x raw/processed features) on the same subject-level folds, "
                "repeated, each row tested against the paper's model; writes out_dir/ablation/table3.md and table3.csv.",
}
GROUP_HELP = {"face": "Whether and how faces are found and cropped before scoring.",
              "quality": "What makes a video unusable.",
              "runtime": "How the recurrent networks run (device, engine, threads, processes); not what they compute.",
              "kinematics": "Landmark kinematics (mouth corners, brows, eyelids, jaw) read from every cohort video.",
              "stats": "Intervals, the permutation test, the paired tests of Table 3 and the calibration of p(PD).",
              "holdout": "Subjects set aside before cross-validation and tuning, scored once at the end (honest "
                         "figures after a sweep)."}


def build_parser(command: str = "train-pd") -> ArgumentParser:
    """The options of one stage-2 command; every one is a dotted key (`--classifier.init_args.hidden_size=32`), as W&B
    sweeps pass them. The classifier's init_args are checked against its estimator's signature when the job is built."""
    if command not in COMMAND_GROUPS:
        raise ValueError(f"unknown stage-2 command {command!r}; one of {tuple(COMMAND_GROUPS)}")
    groups = COMMAND_GROUPS[command]
    others = set(GROUPS) - set(groups) | ({"intensities"} if command == "extract" else set())
    others |= {"plots", "save_screening_model", "target"} if command != "train-pd" else set()
    parser = ArgumentParser(prog=f"dfer-pd {command}", description=DESCRIPTIONS[command], default_env=False)
    parser.add_argument("--config", action=ConfigFile.ignoring(others),
                        help="YAML file(s) with any of the options below: a path or a shipped config's name (pd_lstm, pd_demo)")
    for group in groups:
        parser.add_class_arguments(GROUPS[group], group, help=GROUP_HELP.get(group))
    if command != "extract":
        parser.add_argument("--intensities", type=str | None, default=None,
                            help="a saved intensities .npz (from extract or train-pd) to use instead of cohort + checkpoint")
    parser.add_argument("--out_dir", type=str, default="runs/pd", help="folder for every output of the run")
    if command == "train-pd":
        parser.add_argument("--plots", type=bool, default=True, help="write and log ROC, confusion matrix, box plots and t-SNE")
        parser.add_argument("--target", type=str, default="pd", choices=["pd", "severity"],
                            help="pd: PD vs HC; severity: also MDS-UPDRS 3.2 (manifest column updrs_3_2) from the same "
                                 "features, the same folds and repeats (out_dir/severity)")
        parser.add_argument("--save_screening_model", type=bool, default=True,
                            help="after CV, train on the whole cohort and save out_dir/screening_model for `dfer-pd diagnose`")
    return parser


def build_job(cfg: Namespace, command: str):
    """The :class:`~dfer_pd.stage2.workflows.Stage2Job` the options describe; a bad value is one line, not a traceback."""
    from dfer_pd.stage2.workflows import Stage2Job

    settings = {}
    for group in COMMAND_GROUPS[command]:
        try:
            settings[group] = GROUPS[group](**cfg[group].as_dict())
        except ValueError as err:
            raise UsageError(f"--{group}: {err}") from err
    wandb = settings.pop("wandb", None)
    try:
        job = Stage2Job(out_dir=Path(cfg.out_dir), intensities=cfg.get("intensities"), plots=cfg.get("plots", False),
                        save_screening_model=cfg.get("save_screening_model", False),
                        learning_curves=bool(wandb and wandb.learning_curves), target=cfg.get("target", "pd"),
                        **settings)
    except ValueError as err:  # the classifier's class_path or init_args
        raise UsageError(f"--classifier: {err}") from err
    return job, wandb


def start_wandb(settings: WandbSettings | None, job_type: str, out_dir: Path, config: dict):
    """One W&B run for the command, its files under the output folder (or --wandb.dir / $WANDB_DIR); None when disabled."""
    from dfer_pd.common.loggers import resolve_wandb_mode, sweep_parameters, trial_name, wandb_dir

    mode = resolve_wandb_mode(settings.mode) if settings else "disabled"
    if mode == "disabled":
        return None
    import wandb

    drawn = sweep_parameters()  # a sweep trial: named after its drawn values, typed sweep-trial
    return wandb.init(project=settings.project, group=settings.group, name=settings.name or trial_name(drawn) or f"{job_type} {out_dir}",
                      job_type="sweep-trial" if drawn else job_type, mode=mode, dir=wandb_dir(settings.dir, out_dir),
                      config=config)


def run(command: str, cfg: Namespace):
    """Run a parsed stage-2 command (`dfer-pd extract | train-pd | ablation`)."""
    from dfer_pd.common.errors import require_file
    from dfer_pd.stage2.cohort import require_cohort_inputs

    if cfg.get("intensities"):  # the input files first, before torch and W&B are imported
        require_file(cfg.intensities, "--intensities", "an intensities .npz written by `dfer-pd extract` or `train-pd`")
    else:
        require_cohort_inputs(cfg.cohort.manifest, cfg.extraction.checkpoint, command)
    from dfer_pd.common.loggers import finish_wandb_run, sweep_parameters, sweep_trial_dir, write_hyperparameters
    from dfer_pd.stage2 import workflows

    job, wandb_settings = build_job(cfg, command)  # a bad setting stops the run before any extraction
    job.out_dir = sweep_trial_dir(job.out_dir / "ablation" if command == "ablation" else job.out_dir)
    loaded = workflows.load_intensities(job, command)
    print_extraction(loaded)
    config = {key: value for key, value in cfg.as_dict().items() if key != "config"}
    data = workflows.record_inputs(job, loaded.data, config)
    write_hyperparameters(sweep_parameters(), job.out_dir / "hyperparameters.yaml")  # for the honest-tuning run
    if command == "extract":
        workflows.record_exclusions(data, job.out_dir)
        print(f"intensities of {len(data)} subjects saved to {job.out_dir / 'intensities.npz'}")
        return data
    run = start_wandb(wandb_settings, command, job.out_dir, config)
    try:
        if command == "ablation":
            table = workflows.ablation(job, data, run)
        else:
            outcome = workflows.train_pd(job, data, run)
    finally:
        finish_wandb_run()
    if command == "ablation":
        print((job.out_dir / "table3.md").read_text())
        print(f"Table 3 ({len(table)} rows, {int(table['fits'].sum())} fits) written to {job.out_dir / 'table3.md'} "
              f"and {job.out_dir / 'table3.csv'}")
        return table
    print_train_pd(job, outcome)
    return outcome.summary


def print_extraction(loaded) -> None:
    for subject_id, reason in loaded.skipped:
        print(f"skipped subject {subject_id}: {reason} (--cohort.skip_incomplete)")
    report = loaded.report
    if report is None:
        return
    if report.excluded_subjects:
        print(f"left out {len(report.excluded_subjects)} subject(s) with unusable videos (--cohort.skip_unusable):")
        for unusable in report.unusable:
            print(f"  {unusable.describe()}")
    print(f"scoring contract: {loaded.contract.describe()}")
    if report.checked:
        print(f"face path: {report.checked} videos checked, {report.face_seconds:.1f} s "
              f"({report.face_seconds / report.checked:.2f} s per video)")


def print_train_pd(job, outcome) -> None:
    """The headline figures: mean ± std over repeats and the interval, metric by metric; then the extras."""
    result, cv = outcome.result, job.cv
    if outcome.n_held_out:
        print(f"held out {outcome.n_held_out} subjects (fraction {job.holdout.fraction}, seed {job.holdout.seed}); "
              f"cross-validation used the other {outcome.n_subjects} only")
    spread = "std over repeats" if result.repeats > 1 else "std over folds"
    print(f"{job.classifier.name}: {result.repeats} x {cv.n_splits}-fold CV on {outcome.n_subjects} subjects "
          f"({outcome.n_pd} PD); mean ± {spread} ({result.confidence:.0%} CI, Nadeau-Bengio corrected)")
    for metric in ("accuracy", "roc_auc", "sensitivity", "specificity", "f1_weighted", "brier"):
        print(f"  {metric:22s} {result.describe(metric)}")
    pooled, pooled_std = result.pooled["roc_auc"], result.pooled_std["roc_auc"]
    print(f"  {'roc_auc (out-of-fold)':22s} {pooled:.3f}" + ("" if pooled_std != pooled_std else f" ± {pooled_std:.3f}"))
    if outcome.permutation is not None:
        p = outcome.permutation.p_values
        print(f"  permutation test ({outcome.permutation.n_permutations} label permutations, one {cv.n_splits}-fold CV "
              f"each): accuracy p = {p['accuracy']:.3g}, ROC AUC p = {p['roc_auc']:.3g}")
    calibration = outcome.calibration
    print(f"  Brier score of out-of-fold p(PD): {calibration['brier_raw']:.3f} raw"
          + (f", {calibration['brier_calibrated']:.3f} calibrated ({outcome.calibration_method}, cross-fitted)"
             if outcome.calibration_method != "none" else ""))
    if outcome.holdout_report is not None:
        metrics, intervals = outcome.holdout_report["metrics"], outcome.holdout_report["intervals"]
        print(f"  held-out evaluation, once ({outcome.holdout_report['n_held_out']} subjects): " + ", ".join(
            f"{name} {metrics[name]:.3f} ({intervals[name][0]:.3f}-{intervals[name][1]:.3f})"
            for name in ("accuracy", "roc_auc", "sensitivity", "specificity")))
    if outcome.severity is not None:
        from dfer_pd.stage2.severity import describe_severity

        for line in describe_severity(outcome.severity, cv.n_splits):
            print(line)
    if outcome.screening_model is not None:
        print(f"screening model (trained on all {outcome.n_subjects} subjects, p(PD) calibrated: "
              f"{outcome.calibration_method}) saved to {outcome.screening_model}")
        print(f"  {outcome.gate}")
        if outcome.severity_model:
            print(f"  it estimates MDS-UPDRS 3.2 too (regressor fitted on every scored subject): {outcome.severity_model}")
    elif outcome.screening_model_refused:
        print(f"no screening model saved: {outcome.screening_model_refused}")
    print(f"outputs in {job.out_dir} (predictions.csv, repeats.csv, metrics.json, calibration.json"
          + (", plots)" if job.plots else ")"))


def main(command: str, args: list[str] | None = None):
    """`dfer-pd <command> ARGS` from Python (tests, the demo): parse, then run."""
    return run(command, build_parser(command).parse_args(args))
