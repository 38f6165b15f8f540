"""`dfer-pd extract | train-pd | ablation`: stage 2 driven by one YAML (experiments/pd_*.yaml).

Every option is a dotted key (`--classifier.hidden_size=32`), which is also how W&B sweeps pass them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from dfer_pd.stage2.classifiers import ClassifierConfig
from dfer_pd.stage2.crossval import cross_validate, wandb_metrics_sink
from dfer_pd.common.loggers import finish_wandb_run
from dfer_pd.screening.faces import FaceCropSettings
from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.stage2.splits import CVConfig

log = logging.getLogger(__name__)


@dataclass
class CohortSettings:
    """The cohort manifest (subject_id,label,expression,path,sex,age), what to do with incomplete subjects,
    and where face crops are cached between runs (see --face for whether faces are cropped).
    `pseudonymise_ids` replaces subject ids in every output and log by salted hashes; the key to
    them stays in out_dir/pseudonyms.csv, on this machine."""

    manifest: str | None = None
    skip_incomplete: bool = False
    face_crop_cache: str | None = None
    pseudonymise_ids: bool = False


@dataclass
class ExtractionSettings:
    """Stage-1 scoring: which checkpoint, its numeric precision (part of the scoring contract), where the
    cache lives, and how to batch the forward passes."""

    checkpoint: str | None = None
    precision: str = "32-true"
    cache_dir: str = "runs/intensity_cache"
    batch_size: int = 8
    num_workers: int = 0
    accelerator: str = "auto"
    devices: int = 1


@dataclass
class WandbSettings:
    """W&B stays offline unless `mode: online` (or WANDB_MODE=online); plots are logged, never faces."""

    project: str = "dfer-pd"
    mode: str | None = None
    group: str | None = None
    name: str | None = None


def build_parser(command: str) -> ArgumentParser:
    parser = ArgumentParser(prog=f"dfer-pd {command}", description=__doc__, default_env=False)
    parser.add_argument("--config", action=ActionConfigFile, help="YAML file(s) with any of the options below")
    parser.add_class_arguments(CohortSettings, "cohort")
    parser.add_class_arguments(FaceCropSettings, "face", help="whether and how faces are found and cropped before scoring")
    parser.add_class_arguments(ExtractionSettings, "extraction")
    parser.add_argument("--intensities", type=str | None, default=None,
                        help="a saved CohortIntensities .npz to use instead of cohort + checkpoint")
    parser.add_class_arguments(ClassifierConfig, "classifier")
    parser.add_class_arguments(CVConfig, "cv")
    parser.add_class_arguments(WandbSettings, "wandb")
    parser.add_argument("--out_dir", type=str, default="runs/pd")
    parser.add_argument("--plots", type=bool, default=True)
    parser.add_argument("--save_screening_model", type=bool, default=True,
                        help="after CV, train on the whole cohort and save out_dir/screening_model for `dfer-pd diagnose`")
    return parser


def cohort_intensities(cfg: Namespace) -> CohortIntensities:
    """Intensities from a saved .npz, or from the cohort scored through the cache (no forward pass when cached).

    Either way they carry the scoring contract they were made under.
    """
    if cfg.intensities:
        return CohortIntensities.load(cfg.intensities)
    if not cfg.cohort.manifest or not cfg.extraction.checkpoint:
        raise SystemExit("give --cohort.manifest and --extraction.checkpoint (or --intensities FILE.npz)")
    from dfer_pd.stage1.contract import ScoringContract
    from dfer_pd.stage1.extraction import extract_intensities
    from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule

    contract = ScoringContract.from_checkpoint(cfg.extraction.checkpoint, FaceCropSettings(**cfg.face.as_dict()),
                                               cfg.extraction.precision)
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
                                       accelerator=cfg.extraction.accelerator, devices=cfg.extraction.devices)
    print(f"intensities: {report.summary()}; {len(datamodule.cohort.skipped)} subject(s) skipped")
    print(f"scoring contract: {contract.describe()}")
    return data


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


def _start_wandb(cfg: Namespace, job: str, out_dir: Path):
    from dfer_pd.common.loggers import resolve_wandb_mode

    mode = resolve_wandb_mode(cfg.wandb.mode)
    if mode == "disabled":
        return None
    import wandb

    config = {k: v for k, v in cfg.as_dict().items() if k not in {"config", "__path__"}}
    return wandb.init(project=cfg.wandb.project, group=cfg.wandb.group, name=cfg.wandb.name, job_type=job,
                      mode=mode, dir=str(out_dir), config=config)


def _log_images(run, images: dict[str, Path]) -> None:
    if run is None:
        return
    import wandb

    run.log({key: wandb.Image(str(path)) for key, path in images.items()})


def stage2_configs(cfg: Namespace) -> tuple[ClassifierConfig, CVConfig]:
    """The classifier and CV settings; a bad value (an unknown classifier kind ...) is one line, not a traceback."""
    try:
        return ClassifierConfig(**cfg.classifier.as_dict()), CVConfig(**cfg.cv.as_dict())
    except ValueError as err:
        raise SystemExit(f"error: {err}") from err


def run_train_pd(cfg: Namespace, data: CohortIntensities, out_dir: Path) -> dict:
    classifier, cv = stage2_configs(cfg)
    run = _start_wandb(cfg, "train-pd", out_dir)
    try:
        result = cross_validate(data, classifier, cv, out_dir=out_dir, metrics_sink=wandb_metrics_sink(), plots=cfg.plots)
        images = {}
        if cfg.plots:
            from dfer_pd.stage2.plots import plot_intensity_boxplots, tsne_plot

            images["plots/roc"] = out_dir / "roc.png"
            images["plots/confusion_matrix"] = out_dir / "confusion_matrix.png"
            images["plots/intensity_boxplots"] = plot_intensity_boxplots(data.intensities, data.labels, out_dir / "intensity_boxplots.png")
            if data.video_features is not None and len(data) >= 5:
                images["plots/tsne"] = tsne_plot(data.video_features, data.labels, out_dir / "tsne.png")
        _log_images(run, images)
    finally:
        finish_wandb_run()
    summary = result.summary()
    if cfg.save_screening_model:
        from dfer_pd.stage2.screening_model import ScreeningModelError, fit_screening_model

        try:
            model = fit_screening_model(data, classifier, cv, cv_summary=summary)
        except ScreeningModelError as err:  # refused before training: a classifier with no pickle-free format
            print(f"no screening model saved: {err}")
        else:
            print(f"screening model (trained on all {len(data)} subjects) saved to {model.save(out_dir / 'screening_model')}")
    print(f"{classifier.name}: {cv.n_splits}-fold CV on {len(data)} subjects ({int(data.labels.sum())} PD)")
    for metric in ("accuracy", "precision_binary", "recall_binary", "f1_binary", "f1_weighted", "roc_auc", "sensitivity", "specificity"):
        if f"cv/{metric}_mean" in summary:
            print(f"  {metric:18s} {summary[f'cv/{metric}_mean']:.3f} ± {summary[f'cv/{metric}_std']:.3f}")
    print(f"outputs in {out_dir} (predictions.csv, metrics.json, plots)")
    return summary


def run_ablation_job(cfg: Namespace, data: CohortIntensities, out_dir: Path):
    from dfer_pd.stage2.ablation import run_ablation

    base, cv = stage2_configs(cfg)
    run = _start_wandb(cfg, "ablation", out_dir)
    try:
        table = run_ablation(data, cv, out_dir, base_config=base)
        if run is not None:
            import wandb

            run.log({"table3": wandb.Table(dataframe=table)})
    finally:
        finish_wandb_run()
    print((out_dir / "table3.md").read_text())
    print(f"Table 3 written to {out_dir / 'table3.md'} and {out_dir / 'table3.csv'}")
    return table


def main(command: str, args: list[str] | None = None):
    cfg = build_parser(command).parse_args(args)
    stage2_configs(cfg)  # a bad classifier or CV setting stops the run before any extraction
    out_dir = Path(cfg.out_dir)
    if command == "ablation":
        out_dir = out_dir / "ablation"
    out_dir.mkdir(parents=True, exist_ok=True)
    data = cohort_intensities(cfg)
    if cfg.cohort.pseudonymise_ids:
        data = pseudonymise(data, out_dir / "pseudonyms.csv")
    data.save(out_dir / "intensities.npz")
    (out_dir / "config.json").write_text(json.dumps({k: v for k, v in cfg.as_dict().items() if k != "config"}, indent=2, default=str))
    if command == "extract":
        print(f"intensities of {len(data)} subjects saved to {out_dir / 'intensities.npz'}")
        return data
    if command == "ablation":
        return run_ablation_job(cfg, data, out_dir)
    return run_train_pd(cfg, data, out_dir)


__all__ = ["CohortSettings", "ExtractionSettings", "WandbSettings", "build_parser", "main", "asdict"]
