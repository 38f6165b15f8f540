"""`dfer-pd demo`: the whole pipeline on the synthetic world with a tiny CLIP, on a CPU, in minutes."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

from dfer_pd.configs import ConfigFile, resolve_config


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="dfer-pd demo", description=__doc__)
    parser.add_argument("--config", action=ConfigFile, help="a YAML file with any of the options below")
    parser.add_argument("--out", type=str, default="runs/demo",
                        help="folder for data, checkpoints, tables, plots, reports and the W&B runs")
    parser.add_argument("--dfew_clips", type=int, default=960, help="synthetic DFEW clips for stage 1")
    parser.add_argument("--subjects", type=int, default=100, help="subjects in the synthetic PD/HC cohort")
    parser.add_argument("--effect_size", type=float, default=1.5, help="hypomimia strength of the synthetic PD group (0 = none)")
    parser.add_argument("--stage1_epochs", type=int | None, default=None, help="override the dfer_demo config's max_epochs")
    parser.add_argument("--stage2_epochs", type=int | None, default=None, help="override the pd_demo config's classifier.init_args.max_epochs")
    parser.add_argument("--ablation", type=bool, default=True, help="also run Table 3")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data and of stage 1")
    return parser


def diagnose_examples(manifest: Path, stage1_checkpoint: str, out: Path) -> dict[str, str]:
    """Run `dfer-pd diagnose` on the first PD and the first HC subject of the synthetic cohort: each one's headline
    (and estimated MDS-UPDRS 3.2 when there is one)."""
    from dfer_pd.stage2.cohort import read_manifest
    from dfer_pd.commands.diagnose import main as diagnose

    cohort = read_manifest(manifest)
    headlines = {}
    for label, group in ((1, "PD"), (0, "HC")):
        subject = next(s for s in cohort.subjects if s.label == label)
        # No preprocessing flags: diagnose applies the screening model's scoring contract.
        args = ["--stage1", stage1_checkpoint, "--screening_model", str(out / "stage2" / "screening_model"),
                "--out", str(out / "diagnose" / subject.subject_id)]
        for expression, path in subject.videos.items():
            args += [f"--{expression}", str(path)]
        answer = diagnose(args)
        # With a verdict from a screening model trained with severity, its estimated MDS-UPDRS 3.2 on the next line.
        headlines[f"{group} ({subject.subject_id})"] = answer["headline"] + (
            f"\n    {answer['severity']}" if answer.get("severity") else "")
    return headlines


def render_cohort(root: Path, landmark_root: Path, kinematics: dict, face: dict, **render) -> None:
    """The synthetic cohort, then its videos' landmarks into extraction's landmark cache (they do not
    depend on stage 1, so this second process does both while stage 1 trains)."""
    from dfer_pd.faces.settings import FaceCropSettings
    from dfer_pd.stage2.kinematics import read_landmarks_ahead
    from dfer_pd.stage2.settings import KinematicsSettings
    from dfer_pd.synthetic.cohort import make_pd_cohort

    make_pd_cohort(root, **render)
    settings = KinematicsSettings(**kinematics)
    if settings.enabled:
        read_landmarks_ahead(root / "manifest.csv", landmark_root, settings, FaceCropSettings(**face))


def main(args: list[str] | None = None) -> dict:
    """`dfer-pd demo ARGS` from Python (tests)."""
    return run(build_parser().parse_args(args))


def _logged(log: str | None, function, args, kwargs):
    """``function(*args, **kwargs)`` in a worker process, its terminal output (Python's and C libraries') into ``log``."""
    if log is not None:
        descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(descriptor, 1)
        os.dup2(descriptor, 2)
    function(*args, **kwargs)


@contextlib.contextmanager
def beside(function, *args, log: str | Path | None = None, **kwargs):
    """Run ``function(*args, **kwargs)`` in a new process while the caller goes on; the context gives a
    ``wait()`` that blocks until it is done and raises its error. Leaving the context early stops it.

    The demo's steps are single-threaded or leave a core idle part of the time (rendering, the
    stage-2 fits, Table 3), so on a few cores two of them side by side finish sooner."""
    import multiprocessing

    pool = multiprocessing.get_context("spawn").Pool(1)
    job = pool.apply_async(_logged, (None if log is None else str(log), function, args, kwargs))
    try:
        yield lambda: job.get()
        pool.close()  # done: the worker exits on its own, cleaning up after itself
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


def run(cfg: Namespace) -> dict:
    from dfer_pd.synthetic.dfew import make_dfew_tree
    from dfer_pd.commands.train_dfer import main as train_dfer
    from dfer_pd.commands.train_pd import build_parser as stage2_parser
    from dfer_pd.commands.train_pd import main as stage2
    from dfer_pd.stage2.kinematics import landmark_cache_root

    out = Path(cfg.out)
    # Every W&B run of the demo (stage 1, train-pd, ablation) in one folder, unless the user chose one.
    wandb_dir = os.environ.get("WANDB_DIR") or str(out)
    started = time.perf_counter()
    dfew_root = out / "data" / "dfew"
    cohort_root = out / "data" / "cohort"
    intensity_cache = out / "intensity_cache"
    seconds = {}
    print(f"[1/6] synthetic DFEW tree ({cfg.dfew_clips} clips) and cohort ({cfg.subjects} subjects) under {out / 'data'}; "
          "the cohort is rendered (and its landmarks read) in a second process while stage 1 trains")
    stage2_config = resolve_config("pd_demo")
    stage2_options = stage2_parser("extract").parse_args(["--config", str(stage2_config)])
    # 5 s per expression, as the paper's protocol asks (shorter videos are flagged by diagnose).
    # Phone-like recordings (the face moving in a portrait frame with background), so extraction runs face
    # detection, tracking, landmarks and alignment as on real cohorts; 6 fps keeps rendering and landmarks cheap.
    cohort_root.mkdir(parents=True, exist_ok=True)
    with beside(render_cohort, cohort_root, landmark_cache_root(intensity_cache), stage2_options.kinematics.as_dict(),
                stage2_options.face.as_dict(),
                num_subjects=cfg.subjects, effect_size=cfg.effect_size, seconds=5.0, fps=6, seed=cfg.seed,
                recording="phone", log=cohort_root / "synth.log") as cohort_written:
        make_dfew_tree(dfew_root, num_clips=cfg.dfew_clips, seed=cfg.seed, workers=0)
        seconds["synthetic DFEW"] = time.perf_counter() - started

        print("[2/6] stage 1: tiny CLIP expression network on the synthetic DFEW fold 1")
        mark = time.perf_counter()
        stage1_args = [
            "--config", str(resolve_config("dfer_demo")),
            "--data.root", str(dfew_root),
            "--trainer.default_root_dir", str(out / "stage1"),
            "--trainer.logger.init_args.save_dir", wandb_dir,
            f"--seed_everything={cfg.seed}",
        ]
        if cfg.stage1_epochs is not None:
            stage1_args.append(f"--trainer.max_epochs={cfg.stage1_epochs}")
        stage1 = train_dfer(stage1_args)
        seconds["stage 1"] = time.perf_counter() - mark
        cohort_written()
    manifest = cohort_root / "manifest.csv"

    stage2_args = [
        "--config", str(stage2_config),
        "--cohort.manifest", str(manifest),
        "--extraction.checkpoint", stage1["best_checkpoint"],
        "--extraction.cache_dir", str(intensity_cache),
        "--cohort.face_crop_cache", str(out / "face_crops"),
        "--out_dir", str(out / "stage2"),
    ]
    print("[3/6] extraction of the cohort's intensities through the cache")
    mark = time.perf_counter()
    stage2("extract", stage2_args)
    stage2_args.append(f"--wandb.dir={wandb_dir}")  # train-pd and ablation open W&B runs; extract does not
    if cfg.stage2_epochs is not None:
        stage2_args.append(f"--classifier.init_args.max_epochs={cfg.stage2_epochs}")
    seconds["extraction"] = time.perf_counter() - mark
    ablation_log = out / "stage2" / "ablation.log"
    with contextlib.ExitStack() as stack:
        table3_written, table3_started = None, time.perf_counter()
        if cfg.ablation:
            print(f"[4/6] Table 3 ablation on the same folds, in a second process (progress: {ablation_log})")
            table3_written = stack.enter_context(beside(
                stage2, "ablation", [*stage2_args, "--intensities", str(out / "stage2" / "intensities.npz")],
                log=ablation_log))
        print("[5/6] stage 2: residual LSTM, repeated 5-fold subject-level cross-validation, permutation test, calibration")
        mark = time.perf_counter()
        summary = stage2("train-pd", stage2_args)
        seconds["train-pd"] = time.perf_counter() - mark
        print("[6/6] dfer-pd diagnose on one synthetic PD and one synthetic HC subject")
        headlines = diagnose_examples(manifest, stage1["best_checkpoint"], out)
        if table3_written is not None:
            table3_written()
            seconds["Table 3"] = time.perf_counter() - table3_started
    minutes = (time.perf_counter() - started) / 60
    print(f"\ndemo finished in {minutes:.1f} min")
    print(f"  stage 1 test fold: WAR {stage1.get('test/war', float('nan')):.3f}  UAR {stage1.get('test/uar', float('nan')):.3f}  ({out / 'stage1'})")
    print(f"  stage 2 accuracy:  {summary['cv/accuracy_mean']:.3f} ± {summary['cv/accuracy_std']:.3f} "
          f"(95% CI {summary['cv/accuracy_ci_low']:.3f}-{summary['cv/accuracy_ci_high']:.3f}), ROC AUC "
          f"{summary['cv/roc_auc_mean']:.3f}, {int(summary['cv/repeats'])} x 5-fold CV"
          + (f", permutation p = {summary['cv/permutation_p_accuracy']:.3g}" if "cv/permutation_p_accuracy" in summary else "")
          + f"  ({out / 'stage2'})")
    if "severity/spearman_mean" in summary:
        print("  MDS-UPDRS 3.2:     " + ", ".join(
            f"{label} {summary[f'severity/{m}_mean']:.3f} ({summary[f'severity/{m}_ci_low']:.3f}-"
            f"{summary[f'severity/{m}_ci_high']:.3f})" for m, label in (("spearman", "rho"), ("mae", "MAE"), ("kappa", "kappa")))
              + (f", permutation p = {summary['severity/permutation_p_spearman']:.3g}"
                 if "severity/permutation_p_spearman" in summary else "") + f"  ({out / 'stage2' / 'severity'})")
    print("  time: " + ", ".join(f"{name} {value:.0f} s" for name, value in seconds.items())
          + " (the cohort rendered beside stage 1" + (", Table 3 beside train-pd and diagnose)" if cfg.ablation else ")"))
    print(f"  plots:  {out / 'stage2'}/*.png    Table 3: {out / 'stage2' / 'ablation' / 'table3.md'}")
    for group, headline in headlines.items():
        print(f"  diagnose, synthetic {group} subject: {headline}")
    print(f"  reports: {out / 'diagnose'}/*/report.html")
    print(f"  W&B runs (offline unless WANDB_MODE=online; group 'demo'): {Path(wandb_dir) / 'wandb'}")
    return {"stage1": stage1, "stage2": summary}
