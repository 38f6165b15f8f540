"""Stage 1 as researchers report it: every official fold trained in turn, then one report over the folds.

:func:`run_folds` trains the folds one after another, each in its own run folder ``<runs_dir>/fold<k>``
(checkpoints, ``config.yaml``, its W&B run); a fold whose ``fold_result.json`` and best checkpoint exist is
finished and is not trained again; a fold interrupted after an epoch resumes from its ``last.ckpt``.
Training one fold is the caller's (``dfer-pd train-dfer-folds`` passes ``train-dfer``'s fit-and-test),
so this module needs no command line.

:func:`build_report` turns the folds' test confusion matrices into per-fold and mean ± std WAR and UAR
(WAR = accuracy over clips, UAR = mean per-class recall; std = sample std over the folds, n - 1),
per-class recall, and the summed confusion matrix; for DFEW's seven classes it puts the published
figures beside ours. :func:`write_report` writes ``report.json``, ``report.md`` and
``confusion_matrix_sum.png`` into ``runs_dir``.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfer_pd.common.errors import UsageError
from dfer_pd.common.files import atomic_write, atomic_write_json
from dfer_pd.stage1.datasets.dfew_layout import DFEW_CLASSES, NUM_FOLDS
from dfer_pd.stage1.module import CONFUSION_FILE  # the test confusion counts each fold's run writes

log = logging.getLogger(__name__)

RESULT_FILE = "fold_result.json"  # written once the fold's selected checkpoint was tested: the fold is finished
SETTINGS_FILE = "fold_settings.json"  # the settings the fold was started with (compared before resuming or reusing)
REPORT_JSON, REPORT_MD, REPORT_PNG = "report.json", "report.md", "confusion_matrix_sum.png"
WANDB_LOGGERS = ("WandbLogger", "PrivateWandbLogger")

# Published DFEW results, 7 classes, mean of the 5 official folds (percent), as their papers report them.
PUBLISHED_DFEW7: tuple[dict, ...] = (
    {"method": "DFER-CLIP (Zhao and Patras, BMVC 2023)", "uar": 59.61, "war": 71.25},
    {"method": "MAE-DFER (Sun et al., ACM MM 2023)", "uar": 63.41, "war": 74.43},
    {"method": "S2D (Chen et al., IEEE TAC 2024)", "uar": 61.82, "war": 76.03},
)

# Settings that do not change what a fold learns: a run may differ in these and still be reused or resumed.
_HARMLESS = {
    "config", "ckpt_path", "test_ckpt", "skip_test", "folds", "runs_dir", "wandb_group",
    "trainer.default_root_dir", "trainer.logger", "trainer.enable_progress_bar", "trainer.enable_model_summary",
    "trainer.log_every_n_steps", "trainer.profiler", "trainer.devices", "trainer.accelerator", "trainer.num_nodes",
    "trainer.strategy", "trainer.callbacks",
    "data.init_args.fold", "data.init_args.root", "data.init_args.num_workers", "data.init_args.persistent_workers",
    "data.init_args.pin_memory", "data.init_args.frame_cache_mb", "data.init_args.eval_batch_size",
    # linked from model.network (compared there)
    "data.init_args.num_frames", "data.init_args.clip_name_or_path", "data.init_args.image_size",
}


def check_folds(folds: int | Sequence[int] | None, num_folds: int = NUM_FOLDS) -> list[int]:
    """The folds to run, in order (all when None); a fold outside 1..num_folds is a UsageError."""
    if isinstance(folds, int):
        folds = [folds]
    chosen = list(range(1, num_folds + 1)) if not folds else sorted(set(int(f) for f in folds))
    unknown = [f for f in chosen if f not in range(1, num_folds + 1)]
    if unknown:
        raise UsageError(f"--folds {', '.join(map(str, unknown))}: the dataset's official folds are 1..{num_folds}")
    return chosen


def check_fold_splits(class_path: str, init_args: Mapping, folds: Sequence[int]) -> None:
    """Before anything trains: each chosen fold's train and test split files exist and list clips of the classes."""
    import pydoc

    data_class = pydoc.locate(class_path)  # the parser has checked that it names a ClipDataModule
    for fold in folds:
        datamodule = data_class(**{**init_args, "fold": fold})
        for split in ("train", "test"):
            if not datamodule.split_records(split):
                raise datamodule.layout_error(
                    f"{datamodule.describe(split)} lists no clips of the classes {', '.join(datamodule.class_names)}: "
                    "its split file is empty or holds only other classes")


def _flatten(value: Mapping, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, Mapping) and name not in _HARMLESS:
            flat.update(_flatten(item, f"{name}."))
        else:
            flat[name] = item
    return flat


def comparable_settings(resolved: Mapping) -> dict[str, object]:
    """A run's resolved config (as `--print_config` dumps it), flattened to dotted keys, minus what does not
    change what the fold learns (its number, folders, loggers, devices, loader workers)."""
    return {k: v for k, v in _flatten(resolved).items() if k not in _HARMLESS and k.split(".")[0] not in _HARMLESS}


def _check_same_settings(run_dir: Path, stored: Mapping, current: Mapping) -> None:
    keys = sorted(set(stored) | set(current))
    differ = [k for k in keys if json.dumps(stored.get(k), default=str) != json.dumps(current.get(k), default=str)]
    if differ:
        shown = "; ".join(f"{k}: {stored.get(k)!r} there, {current.get(k)!r} now" for k in differ[:4])
        more = f" and {len(differ) - 4} more" if len(differ) > 4 else ""
        raise UsageError(f"{run_dir} was trained with other settings ({shown}{more}): give another --runs_dir, "
                         "or remove that folder to train the fold again")


@dataclass(frozen=True)
class FoldResult:
    """One finished fold: its test confusion matrix (rows = true class) and the checkpoint it came from."""

    fold: int
    class_names: tuple[str, ...]
    matrix: np.ndarray
    best_checkpoint: str
    best_val_uar: float
    test_metrics: Mapping[str, float] | None = None  # what train-dfer's test logged (torchmetrics), for the record

    @property
    def recall(self) -> np.ndarray:
        rows = self.matrix.sum(axis=1)
        return np.divide(np.diag(self.matrix), rows, out=np.zeros(len(rows)), where=rows > 0)

    @property
    def war(self) -> float:
        return float(np.trace(self.matrix) / max(int(self.matrix.sum()), 1))

    @property
    def uar(self) -> float:
        return float(self.recall.mean())

    def to_dict(self) -> dict:
        return {"fold": self.fold, "class_names": list(self.class_names), "confusion_matrix": self.matrix.tolist(),
                "best_checkpoint": self.best_checkpoint, "best_val_uar": self.best_val_uar,
                "test_clips": int(self.matrix.sum()), "war": self.war, "uar": self.uar,
                "recall": dict(zip(self.class_names, self.recall.tolist())), "test_metrics": dict(self.test_metrics or {})}

    @classmethod
    def from_dict(cls, value: Mapping) -> FoldResult:
        return cls(int(value["fold"]), tuple(value["class_names"]), np.asarray(value["confusion_matrix"], dtype=np.int64),
                   str(value["best_checkpoint"]), float(value["best_val_uar"]), value.get("test_metrics"))


def fold_dir(runs_dir: str | Path, fold: int) -> Path:
    return Path(runs_dir) / f"fold{fold}"


def finished_fold(run_dir: Path) -> FoldResult | None:
    """The fold's result when it finished (result file and its best checkpoint both there), else None."""
    path = run_dir / RESULT_FILE
    if not path.is_file():
        return None
    result = FoldResult.from_dict(json.loads(path.read_text()))
    return result if Path(result.best_checkpoint).is_file() else None


def fold_namespace(cfg, fold: int, run_dir: Path, group: str, resume: Path | None):
    """A copy of train-dfer's parsed config for one fold: its data fold, run folder, W&B group and run name,
    and the checkpoint it resumes from."""
    from jsonargparse import Namespace

    fold_cfg = copy.deepcopy(cfg)
    for key in ("folds", "runs_dir", "wandb_group"):
        if key in fold_cfg:
            del fold_cfg[key]
    fold_cfg.data.init_args.fold = fold
    fold_cfg.trainer.default_root_dir = str(run_dir)
    fold_cfg.ckpt_path = str(resume) if resume else None
    fold_cfg.skip_test = False
    fold_cfg.test_ckpt = None
    loggers = fold_cfg.trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        if isinstance(logger, Namespace) and str(logger.get("class_path", "")).rsplit(".", 1)[-1] in WANDB_LOGGERS:
            logger.init_args.group = group
            logger.init_args.name = f"{group}-fold{fold}"
    return fold_cfg


def _stored_settings(run_dir: Path) -> dict:
    """What the fold in ``run_dir`` was started with: train-dfer-folds' record, else the config.yaml a plain
    `train-dfer` run (`make train-dfer FOLD=k`) saved; a checkpoint with neither is refused."""
    import yaml

    if (run_dir / SETTINGS_FILE).is_file():
        return json.loads((run_dir / SETTINGS_FILE).read_text())
    if (run_dir / "config.yaml").is_file():
        return comparable_settings(yaml.safe_load((run_dir / "config.yaml").read_text()) or {})
    raise UsageError(f"{run_dir} holds a checkpoint but no record of its settings ({SETTINGS_FILE} or config.yaml): "
                     "give another --runs_dir, or move that folder away")


def run_folds(
    runs_dir: str | Path,
    folds: Sequence[int],
    settings: Mapping,
    train_fold: Callable[[int, Path, Path | None], Mapping],
    is_global_zero: Callable[[], bool] = lambda: True,
) -> list[FoldResult]:
    """Train each fold not finished yet with ``train_fold(fold, run_dir, resume_checkpoint)`` (train-dfer's
    results: ``best_checkpoint``, ``best_val_uar``, test metrics), and return every fold's result.

    ``settings`` (:func:`comparable_settings` of the run's config) is stored with each fold; a finished or
    interrupted fold trained with other settings is refused rather than mixed into the report.
    """
    results = []
    for fold in folds:
        run_dir = fold_dir(runs_dir, fold)
        stored_path = run_dir / SETTINGS_FILE
        last = run_dir / "checkpoints" / "last.ckpt"
        stored = _stored_settings(run_dir) if last.is_file() or stored_path.is_file() else None
        if stored is not None:
            _check_same_settings(run_dir, stored, settings)
        finished = finished_fold(run_dir)
        if finished is not None:
            log.info("fold %d: finished in %s (WAR %.4f, UAR %.4f), not trained again", fold, run_dir,
                     finished.war, finished.uar)
            results.append(finished)
            continue
        resume = last if last.is_file() else None
        log.info("fold %d: %s in %s", fold, f"resuming from {resume}" if resume else "training", run_dir)
        if is_global_zero():
            run_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_json(stored_path, dict(settings))
        outcome = train_fold(fold, run_dir, resume)
        if not is_global_zero():
            continue
        confusion = json.loads((run_dir / CONFUSION_FILE).read_text())
        result = FoldResult(fold, tuple(confusion["class_names"]), np.asarray(confusion["matrix"], dtype=np.int64),
                            str(outcome["best_checkpoint"]), float(outcome["best_val_uar"]),
                            {k: float(v) for k, v in outcome.items() if k.startswith("test/")})
        atomic_write_json(run_dir / RESULT_FILE, result.to_dict())
        results.append(result)
    return results


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def build_report(results: Sequence[FoldResult], dataset: str) -> dict:
    """Per-fold and mean ± std WAR/UAR and per-class recall, the summed confusion matrix, and for DFEW's
    seven classes the published figures (fractions, 0-1; the published ones too)."""
    if not results:
        raise UsageError("no fold finished: nothing to report")
    class_names = results[0].class_names
    odd = [r.fold for r in results if r.class_names != class_names]
    if odd:
        raise UsageError(f"fold(s) {odd} were trained on other classes than fold {results[0].fold} ({', '.join(class_names)})")
    summed = sum(r.matrix for r in results)
    pooled = FoldResult(0, class_names, summed, "", 0.0)
    war, uar = _mean_std([r.war for r in results]), _mean_std([r.uar for r in results])
    recall = {name: _mean_std([r.recall[i] for r in results]) for i, name in enumerate(class_names)}
    report = {
        "dataset": dataset, "class_names": list(class_names), "folds": [r.to_dict() for r in results],
        "mean": {"war": war[0], "uar": uar[0], "recall": {k: v[0] for k, v in recall.items()}},
        "std": {"war": war[1], "uar": uar[1], "recall": {k: v[1] for k, v in recall.items()}},
        "std_kind": "sample (n - 1) over the folds",
        "summed": {"confusion_matrix": summed.tolist(), "test_clips": int(summed.sum()), "war": pooled.war, "uar": pooled.uar},
        "published": [],
    }
    if dataset.rsplit(".", 1)[-1] == "DfewDataModule" and tuple(class_names) == DFEW_CLASSES[7]:
        report["published"] = [{"method": p["method"], "uar": p["uar"] / 100, "war": p["war"] / 100} for p in PUBLISHED_DFEW7]
    return report


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def report_markdown(report: Mapping, machine: str = "", command: str = "") -> str:
    """The report as Markdown tables (percent)."""
    names, folds = report["class_names"], report["folds"]
    fold_list = ", ".join(str(f["fold"]) for f in folds)
    lines = [f"# Stage 1 over folds {fold_list}: {len(names)} classes ({', '.join(names)})", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    if machine:
        lines += [f"Machine: `{machine}`", ""]
    lines += ["Test-fold figures of the checkpoint selected on each fold's validation split, in percent "
              f"(std: {report['std_kind']}).", ""]
    lines += ["| fold | test clips | WAR | UAR | " + " | ".join(f"recall {n}" for n in names) + " | best val UAR |",
              "|---" * (5 + len(names)) + "|"]
    for f in folds:
        recalls = " | ".join(_pct(f["recall"][n]) for n in names)
        lines.append(f"| {f['fold']} | {f['test_clips']} | {_pct(f['war'])} | {_pct(f['uar'])} | {recalls} | "
                     f"{_pct(f['best_val_uar'])} |")
    mean, std = report["mean"], report["std"]
    recalls = " | ".join(f"{_pct(mean['recall'][n])} ± {_pct(std['recall'][n])}" for n in names)
    lines.append(f"| **mean ± std** | {report['summed']['test_clips']} | {_pct(mean['war'])} ± {_pct(std['war'])} | "
                 f"{_pct(mean['uar'])} ± {_pct(std['uar'])} | {recalls} | |")
    summed = report["summed"]
    lines += ["", f"Pooled over the folds' test clips (the summed confusion matrix, `{REPORT_PNG}`): "
                  f"WAR {_pct(summed['war'])}, UAR {_pct(summed['uar'])}."]
    if report["published"]:
        lines += ["", "Published DFEW results, 7 classes, mean of the 5 folds (percent):", "",
                  "| method | UAR | WAR |", "|---|---|---|"]
        lines += [f"| {p['method']} | {_pct(p['uar'])} | {_pct(p['war'])} |" for p in report["published"]]
        lines.append(f"| **this run** (mean of folds {fold_list}) | {_pct(mean['uar'])} ± {_pct(std['uar'])} | "
                     f"{_pct(mean['war'])} ± {_pct(std['war'])} |")
    return "\n".join(lines) + "\n"


def write_report(runs_dir: str | Path, report: dict, machine: str = "", command: str = "") -> dict[str, Path]:
    """``report.json``, ``report.md`` and ``confusion_matrix_sum.png`` in ``runs_dir``; their paths."""
    from dfer_pd.common.plots import save_confusion_matrix

    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    report = {**report, "machine": machine, "command": command}
    paths = {"json": runs_dir / REPORT_JSON, "markdown": runs_dir / REPORT_MD, "png": runs_dir / REPORT_PNG}
    atomic_write_json(paths["json"], report)
    with atomic_write(paths["markdown"], "w") as handle:
        handle.write(report_markdown(report, machine, command))
    folds = ", ".join(str(f["fold"]) for f in report["folds"])
    save_confusion_matrix(np.asarray(report["summed"]["confusion_matrix"]), paths["png"], report["class_names"],
                          f"Stage 1, test folds {folds} summed: {report['summed']['test_clips']} clips")
    return paths
