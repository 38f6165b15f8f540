"""`dfer-pd extract | train-pd | ablation`: stage 2 driven by one YAML (experiments/pd_*.yaml).

Every option is a dotted key (`--classifier.hidden_size=32`), which is also how W&B sweeps pass them.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from dfer_pd.common.errors import UsageError
from dfer_pd.configs import ConfigFile
from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.stage2.settings import ClassifierConfig, CVConfig, HoldoutConfig, KinematicsSettings, StatsConfig

# Heavy modules (torch, Lightning, W&B) are imported inside the functions that run, so that
# `dfer-pd train-pd --help` answers at once.
# (No `if TYPE_CHECKING:` imports here: jsonargparse executes such blocks to resolve the settings'
# annotations. `CohortIntensities` in signatures is dfer_pd.stage2.features.CohortIntensities.)
log = logging.getLogger(__name__)


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
        min_decoded_share: a truncated video of which less than this share decodes is unusable.
    """

    manifest: str | None = None
    skip_incomplete: bool = False
    face_crop_cache: str | None = None
    pseudonymise_ids: bool = False
    skip_unusable: bool = False
    min_decoded_share: float = 0.9


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


# Which option groups each stage-2 command uses. The shipped YAML files serve all three commands, so a
# command accepts the others' keys in a config file but neither shows them nor uses them.
COMMAND_GROUPS: dict[str, tuple[str, ...]] = {
    "extract": ("cohort", "face", "kinematics", "extraction", "out_dir"),
    "train-pd": ("cohort", "face", "kinematics", "extraction", "intensities", "classifier", "cv", "stats", "holdout",
                 "wandb", "out_dir", "plots", "save_screening_model"),
    "ablation": ("cohort", "face", "kinematics", "extraction", "intensities", "classifier", "cv", "stats", "wandb",
                 "out_dir"),
}
REPEATS_DEFAULT = 10
"""`train-pd` and `ablation` repeat the k-fold CV this many times on new folds unless --cv.repeats says otherwise."""
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


def build_parser(command: str = "train-pd") -> ArgumentParser:
    """The options of one stage-2 command; every one is a dotted key (`--classifier.hidden_size=32`), as W&B sweeps pass them."""
    if command not in COMMAND_GROUPS:
        raise ValueError(f"unknown stage-2 command {command!r}; one of {tuple(COMMAND_GROUPS)}")
    parser = ArgumentParser(prog=f"dfer-pd {command}", description=DESCRIPTIONS[command], default_env=False)
    parser.add_argument("--config", action=ConfigFile,
                        help="YAML file(s) with any of the options below: a path or a shipped config's name (pd_lstm, pd_demo)")
    parser.add_class_arguments(CohortSettings, "cohort")
    parser.add_class_arguments(FaceCropSettings, "face", help="Whether and how faces are found and cropped before scoring.")
    parser.add_class_arguments(KinematicsSettings, "kinematics",
                               help="Landmark kinematics (mouth corners, brows, eyelids, jaw) read from every cohort video.")
    parser.add_class_arguments(ExtractionSettings, "extraction")
    parser.add_argument("--intensities", type=str | None, default=None,
                        help="a saved intensities .npz (from extract or train-pd) to use instead of cohort + checkpoint")
    parser.add_class_arguments(ClassifierConfig, "classifier")
    parser.add_class_arguments(CVConfig, "cv")
    parser.add_class_arguments(StatsConfig, "stats", help="Intervals, the permutation test, the paired tests of Table 3 "
                               "and the calibration of p(PD).")
    parser.add_class_arguments(HoldoutConfig, "holdout", help="Subjects set aside before cross-validation and tuning, "
                               "scored once at the end (honest figures after a sweep).")
    parser.add_class_arguments(WandbSettings, "wandb")
    parser.add_argument("--out_dir", type=str, default="runs/pd", help="folder for every output of the run")
    parser.add_argument("--plots", type=bool, default=True, help="write and log ROC, confusion matrix, box plots and t-SNE")
    parser.add_argument("--save_screening_model", type=bool, default=True,
                        help="after CV, train on the whole cohort and save out_dir/screening_model for `dfer-pd diagnose`")
    # Figures over 10 repeats of the k-fold CV unless asked otherwise (the demo's config asks for fewer), the
    # fits shared among one process per CPU (the demo's config asks for one: it runs Table 3 beside train-pd).
    parser.set_defaults({"cv.repeats": REPEATS_DEFAULT, "cv.workers": 0})
    hide_options(parser, [g for g in COMMAND_GROUPS["train-pd"] if g not in COMMAND_GROUPS[command]])
    return parser


def hide_options(parser: ArgumentParser, groups: list[str]) -> None:
    """Keep ``groups`` parseable (the shared YAML files carry them) but out of ``--help``."""
    for action in parser._actions:
        if any(action.dest == g or action.dest.startswith(f"{g}.") for g in groups):
            action.help = argparse.SUPPRESS
    for group in parser._action_groups:
        if group._group_actions and all(a.help == argparse.SUPPRESS for a in group._group_actions):
            group.description = None
            group.title = None


def cohort_intensities(cfg: Namespace, command: str = "train-pd") -> CohortIntensities:
    """Intensities from a saved .npz, or from the cohort scored through the cache (no forward pass when cached).

    Either way they carry the scoring contract they were made under.
    """
    from dfer_pd.stage2.features import CohortIntensities

    if cfg.get("intensities"):
        return CohortIntensities.load(cfg.intensities)
    from dfer_pd.common.errors import require_file

    alternative = "" if command == "extract" else " (or --intensities FILE.npz saved by extract or train-pd)"
    require_file(cfg.cohort.manifest, "--cohort.manifest",
                 f"the cohort manifest CSV (subject_id,label,expression,path[,sex,age]){alternative}")
    require_file(cfg.extraction.checkpoint, "--extraction.checkpoint",
                 f"a stage-1 checkpoint written by `dfer-pd train-dfer` (<run>/checkpoints/best.ckpt){alternative}")
    from dfer_pd.stage1.contract import ScoringContract
    from dfer_pd.stage2.extraction import extract_intensities
    from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule

    contract = ScoringContract.from_checkpoint(cfg.extraction.checkpoint, FaceCropSettings(**cfg.face.as_dict()),
                                               cfg.extraction.precision, cfg.extraction.runtime)
    datamodule = PDCohortDataModule(
        cfg.cohort.manifest,
        skip_incomplete=cfg.cohort.skip_incomplete,
        face_crop_cache=cfg.cohort.face_crop_cache,
        batch_size=cfg.extraction.batch_size,
        num_workers=cfg.extraction.num_workers,
    )
    for subject_id, reason in datamodule.cohort.skipped:
        log.warning("skipped subject %s: %s", subject_id, reason)
    data, report = extract_intensities(datamodule, cfg.extraction.checkpoint, contract, cfg.extraction.cache_dir,
                                       accelerator=cfg.extraction.accelerator, devices=cfg.extraction.devices,
                                       onnx_model=cfg.extraction.onnx_model,
                                       skip_unusable=cfg.cohort.skip_unusable,
                                       min_decoded_share=cfg.cohort.min_decoded_share,
                                       kinematics=KinematicsSettings(**cfg.kinematics.as_dict()))
    if datamodule.cohort.skipped:  # the extraction summary itself is logged by extract_intensities (once)
        print(f"{len(datamodule.cohort.skipped)} subject(s) skipped (--cohort.skip_incomplete)")
    if report.excluded_subjects:
        print(f"left out {len(report.excluded_subjects)} subject(s) with unusable videos (--cohort.skip_unusable):")
        for unusable in report.unusable:
            print(f"  {unusable.describe()}")
    print(f"scoring contract: {contract.describe()}")
    if report.checked:
        print(f"face path: {report.checked} videos checked, {report.face_seconds:.1f} s "
              f"({report.face_seconds / report.checked:.2f} s per video)")
    data.excluded = report.excluded if report.excluded_subjects else None
    return data


def mask_exclusions(excluded: dict | None) -> dict | None:
    """Left-out subjects without their ids and folders: with pseudonymised ids they stay on this machine too."""
    if not excluded:
        return excluded
    return {"count": excluded["count"],
            "videos": [{**v, "subject_id": "(pseudonymised)", "path": Path(v["path"]).name} for v in excluded["videos"]]}


def record_exclusions(data: CohortIntensities, out_dir: Path, run=None, pseudonyms: dict | None = None) -> None:
    """Subjects left out for unusable videos: out_dir/excluded_subjects.json, and their count and reasons in W&B."""
    excluded = data.excluded if pseudonyms is None else mask_exclusions(data.excluded)
    if not excluded:
        return
    from dfer_pd.common.files import atomic_write_json

    atomic_write_json(out_dir / "excluded_subjects.json", excluded)
    if run is not None:
        import wandb

        run.summary["cohort/excluded_subjects"] = excluded["count"]
        run.log({"cohort/excluded_videos": wandb.Table(
            columns=["subject_id", "expression", "line", "reason"],
            data=[[v["subject_id"], v["expression"], v["line"], v["reason"]] for v in excluded["videos"]])})


def pseudonymise(data: CohortIntensities, key_file: Path) -> CohortIntensities:
    """Subject ids -> 'P' + 10 hex digits of a salted sha256; the id/pseudonym key is written to key_file only."""
    import csv
    import hashlib
    import secrets

    salt = secrets.token_hex(16)
    if key_file.exists():  # keep pseudonyms stable across runs into the same folder
        with open(key_file, newline="") as handle:
            known = {row["subject_id"]: row["pseudonym"] for row in csv.DictReader(handle)}
    else:
        known = {}
    mapping = {s: known.get(s) or "P" + hashlib.sha256(f"{salt}:{s}".encode()).hexdigest()[:10] for s in data.subject_ids}
    with open(key_file, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject_id", "pseudonym"])
        writer.writerows(mapping.items())
    data.subject_ids = [mapping[s] for s in data.subject_ids]
    return data


def resolved_config(cfg: Namespace, command: str) -> dict:
    """The command's full resolved configuration (its own option groups), as saved and logged."""
    values = cfg.as_dict()
    return {key: values[key] for key in COMMAND_GROUPS[command] if key in values}


def _start_wandb(cfg: Namespace, job: str, out_dir: Path):
    """One W&B run for the command, its files under the output folder (or --wandb.dir / $WANDB_DIR)."""
    from dfer_pd.common.loggers import resolve_wandb_mode, wandb_dir

    mode = resolve_wandb_mode(cfg.wandb.mode)
    if mode == "disabled":
        return None
    import wandb

    return wandb.init(project=cfg.wandb.project, group=cfg.wandb.group, name=cfg.wandb.name, job_type=job,
                      mode=mode, dir=wandb_dir(cfg.wandb.dir, out_dir), config=resolved_config(cfg, job))


def _log_images(run, images: dict[str, Path]) -> None:
    if run is None:
        return
    import wandb

    run.log({key: wandb.Image(str(path)) for key, path in images.items()})


def stage2_configs(cfg: Namespace) -> tuple[ClassifierConfig, CVConfig]:
    """The classifier and CV settings; a bad value (an unknown classifier kind ...) is one line, not a traceback."""
    try:
        classifier = ClassifierConfig(**cfg.classifier.as_dict())
    except ValueError as err:
        raise UsageError(f"--classifier: {err}") from err
    try:
        return classifier, CVConfig(**cfg.cv.as_dict())
    except ValueError as err:
        raise UsageError(f"--cv: {err}") from err


def stage2_statistics(cfg: Namespace) -> tuple[StatsConfig, HoldoutConfig | None]:
    """The statistics and held-out settings (ablation has no held-out group); a bad value is one line."""
    try:
        stats = StatsConfig(**cfg.stats.as_dict())
    except ValueError as err:
        raise UsageError(f"--stats: {err}") from err
    if "holdout" not in cfg or cfg.holdout is None:
        return stats, None
    try:
        return stats, HoldoutConfig(**cfg.holdout.as_dict())
    except ValueError as err:
        raise UsageError(f"--holdout: {err}") from err


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
    print(f"held out {len(held)} of {len(data)} subjects (fraction {holdout.fraction}, seed {holdout.seed}); "
          f"cross-validation uses the other {len(development)} only")
    return data.subset(development), held


def run_train_pd(cfg: Namespace, data: CohortIntensities, out_dir: Path) -> dict:
    from dfer_pd.common.files import atomic_write_json
    from dfer_pd.common.loggers import finish_wandb_run
    from dfer_pd.stage2.crossval import (
        cross_validate,
        evaluate_holdout,
        permutation_test,
        wandb_learning_curves,
        wandb_metrics_sink,
    )
    from dfer_pd.stage2.screening_model import calibration_from_cv

    classifier, cv = stage2_configs(cfg)
    stats, holdout = stage2_statistics(cfg)
    held_out = None
    if holdout is not None and holdout.fraction > 0:
        data, held_out = split_holdout(data, holdout, out_dir)
    run = _start_wandb(cfg, "train-pd", out_dir)
    permutation = holdout_report = None
    try:
        record_exclusions(data, out_dir, run, {} if cfg.cohort.pseudonymise_ids else None)
        result = cross_validate(data, classifier, cv, out_dir=out_dir, metrics_sink=wandb_metrics_sink(), plots=cfg.plots,
                                confidence=stats.confidence)
        images = {}
        if cfg.plots:
            from dfer_pd.stage2.plots import plot_intensity_boxplots, tsne_plot

            images["plots/roc"] = out_dir / "roc.png"
            images["plots/confusion_matrix"] = out_dir / "confusion_matrix.png"
            images["plots/intensity_boxplots"] = plot_intensity_boxplots(data.intensities, data.labels, out_dir / "intensity_boxplots.png")
            if data.kinematics is not None:
                from dfer_pd.stage2.kinematics import plot_kinematics

                images["plots/kinematics"] = plot_kinematics(data.kinematics, data.labels, out_dir / "kinematics.png")
            if data.video_features is not None and len(data) >= 5:
                images["plots/tsne"] = tsne_plot(data.video_features, data.labels, out_dir / "tsne.png")
        extra: dict[str, float] = {}
        if stats.permutations:
            permutation = permutation_test(data, classifier, cv, stats.permutations, stats.permutation_seed)
            atomic_write_json(out_dir / "permutation_test.json", permutation.to_dict())
            extra.update({f"cv/permutation_p_{k}": v for k, v in permutation.p_values.items()})
            if cfg.plots:
                from dfer_pd.stage2.plots import plot_permutation_test

                images["plots/permutation_test"] = plot_permutation_test(permutation.to_dict(), out_dir / "permutation_test.png")
        calibrator, calibration = calibration_from_cv(result.predictions, stats.calibration, cv.threshold)
        atomic_write_json(out_dir / "calibration.json", {"calibrator": calibrator.to_dict(), **calibration})
        extra.update({"cv/brier_raw": calibration["brier_raw"], "cv/brier_calibrated": calibration["brier_calibrated"]})
        if cfg.plots:
            from dfer_pd.stage2.plots import plot_reliability

            images["plots/reliability"] = plot_reliability(calibration, out_dir / "reliability.png")
        if held_out is not None and holdout.evaluate:
            holdout_report = evaluate_holdout(data, held_out, classifier, cv, stats.confidence, seed=holdout.seed)
            atomic_write_json(out_dir / "holdout.json", holdout_report)
            extra.update({f"holdout/{k}": v for k, v in holdout_report["metrics"].items()})
        if run is not None:
            for key, value in extra.items():
                run.summary[key] = value
            if cfg.wandb.learning_curves:
                run.log(wandb_learning_curves(classifier.name, result.histories))
        _log_images(run, images)
    finally:
        finish_wandb_run()
    summary = {**result.summary(), **extra}
    if cfg.save_screening_model:
        from dfer_pd.stage2.screening_model import ScreeningModelError, fit_screening_model

        try:
            model = fit_screening_model(data, classifier, cv, cv_summary=summary, calibration=calibrator,
                                        calibration_report=calibration)
        except ScreeningModelError as err:  # refused before training: a classifier with no pickle-free format
            print(f"no screening model saved: {err}")
        else:
            print(f"screening model (trained on all {len(data)} subjects, p(PD) calibrated: {calibrator.method}) "
                  f"saved to {model.save(out_dir / 'screening_model')}")
    print_cv_summary(classifier.name, result, len(data), int(data.labels.sum()))
    if permutation is not None:
        print(f"  permutation test ({permutation.n_permutations} label permutations, one {cv.n_splits}-fold CV each): "
              f"accuracy p = {permutation.p_values['accuracy']:.3g}, ROC AUC p = {permutation.p_values['roc_auc']:.3g}")
    print(f"  Brier score of out-of-fold p(PD): {calibration['brier_raw']:.3f} raw"
          + (f", {calibration['brier_calibrated']:.3f} calibrated ({calibrator.method}, cross-fitted)"
             if calibrator.method != "none" else ""))
    if holdout_report is not None:
        metrics, intervals = holdout_report["metrics"], holdout_report["intervals"]
        print(f"  held-out evaluation, once ({holdout_report['n_held_out']} subjects): " + ", ".join(
            f"{name} {metrics[name]:.3f} ({intervals[name][0]:.3f}-{intervals[name][1]:.3f})"
            for name in ("accuracy", "roc_auc", "sensitivity", "specificity")))
    print(f"outputs in {out_dir} (predictions.csv, repeats.csv, metrics.json, calibration.json, plots)")
    return summary


def print_cv_summary(name: str, result, n_subjects: int, n_pd: int) -> None:
    """The headline figures: mean ± std over repeats and the interval, metric by metric."""
    spread = "std over repeats" if result.repeats > 1 else "std over folds"
    print(f"{name}: {result.repeats} x {result.cv.n_splits}-fold CV on {n_subjects} subjects ({n_pd} PD); "
          f"mean ± {spread} ({result.confidence:.0%} CI, Nadeau-Bengio corrected)")
    for metric in ("accuracy", "roc_auc", "sensitivity", "specificity", "f1_weighted", "brier"):
        print(f"  {metric:22s} {result.describe(metric)}")
    pooled, pooled_std = result.pooled["roc_auc"], result.pooled_std["roc_auc"]
    print(f"  {'roc_auc (out-of-fold)':22s} {pooled:.3f}" + ("" if pooled_std != pooled_std else f" ± {pooled_std:.3f}"))


def run_ablation_job(cfg: Namespace, data: CohortIntensities, out_dir: Path):
    import time

    from dfer_pd.common.loggers import finish_wandb_run
    from dfer_pd.stage2.ablation import run_ablation
    from dfer_pd.stage2.crossval import wandb_learning_curves

    base, cv = stage2_configs(cfg)
    stats, _ = stage2_statistics(cfg)
    run = _start_wandb(cfg, "ablation", out_dir)
    curves = {}

    def on_row(name, result) -> None:
        if run is not None and cfg.wandb.learning_curves:
            curves.update(wandb_learning_curves(name, result.histories))

    started = time.perf_counter()
    try:
        record_exclusions(data, out_dir, run, {} if cfg.cohort.pseudonymise_ids else None)
        table = run_ablation(data, cv, out_dir, base_config=base, confidence=stats.confidence,
                             reference=stats.reference, on_row=on_row)
        if run is not None:
            import wandb

            run.log({"table3": wandb.Table(dataframe=table), **curves})
    finally:
        finish_wandb_run()
    print((out_dir / "table3.md").read_text())
    print(f"Table 3 ({len(table)} rows, {int(table['fits'].sum())} fits) in {time.perf_counter() - started:.1f} s; "
          f"written to {out_dir / 'table3.md'} and {out_dir / 'table3.csv'}")
    return table


def run(command: str, cfg: Namespace):
    """Run a parsed stage-2 command (`dfer-pd extract | train-pd | ablation`)."""
    from dfer_pd.common.loggers import sweep_trial_dir

    if command != "extract":
        stage2_configs(cfg)  # a bad classifier, CV or statistics setting stops the run before any extraction
        stage2_statistics(cfg)
    out_dir = Path(cfg.out_dir)
    if command == "ablation":
        out_dir = out_dir / "ablation"
    out_dir = sweep_trial_dir(out_dir)  # under `wandb agent`, each trial writes to its own folder
    data = cohort_intensities(cfg, command)
    out_dir.mkdir(parents=True, exist_ok=True)
    if cfg.cohort.pseudonymise_ids:
        data = pseudonymise(data, out_dir / "pseudonyms.csv")
        data.excluded = mask_exclusions(data.excluded)
    data.save(out_dir / "intensities.npz")
    (out_dir / "config.json").write_text(json.dumps(resolved_config(cfg, command), indent=2, default=str))
    if command == "extract":
        record_exclusions(data, out_dir, None, {} if cfg.cohort.pseudonymise_ids else None)
        print(f"intensities of {len(data)} subjects saved to {out_dir / 'intensities.npz'}")
        return data
    if command == "ablation":
        return run_ablation_job(cfg, data, out_dir)
    return run_train_pd(cfg, data, out_dir)


def main(command: str, args: list[str] | None = None):
    """`dfer-pd <command> ARGS` from Python (tests, the demo): parse, then run."""
    return run(command, build_parser(command).parse_args(args))


__all__ = ["CohortSettings", "ExtractionSettings", "WandbSettings", "build_parser", "run", "main", "asdict"]
