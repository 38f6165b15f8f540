"""`dfer-pd train-dfer-folds` on a small tree in DFEW's layout: five folds, the report, finished folds skipped."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dfer_pd.cli import main as cli_main
from dfer_pd.stage1.datasets.dfew import dfew_records
from dfer_pd.stage1.datasets.dfew_layout import DFEW_CLASSES
from dfer_pd.stage1.folds import FoldResult, build_report, report_markdown
from dfer_pd.synthetic.dfew import make_dfew_tree

DEMO = str(Path(__file__).resolve().parents[2] / "experiments" / "dfer_demo.yaml")


@pytest.fixture(scope="module")
def dfew_tree(tmp_path_factory):
    return make_dfew_tree(tmp_path_factory.mktemp("dfew_folds") / "DFEW", num_clips=50, max_frames=20, size=32, seed=1)


def folds_args(root, runs_dir, *extra):
    return [
        "train-dfer-folds", "--config", DEMO,
        "--data.root", str(root), "--data.num_workers", "0", "--data.batch_size", "4",
        "--model.network.num_frames", "4",
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "2", "--trainer.enable_progress_bar", "false",
        "--trainer.logger", "lightning.pytorch.loggers.CSVLogger", "--trainer.logger.save_dir", str(runs_dir / "csv"),
        "--runs_dir", str(runs_dir),
        *extra,
    ]


def test_five_folds_report_then_only_missing_folds_train(dfew_tree, tmp_path, capsys):
    runs = tmp_path / "runs"
    assert cli_main(folds_args(dfew_tree, runs)) == 0
    report = json.loads((runs / "report.json").read_text())
    assert [f["fold"] for f in report["folds"]] == [1, 2, 3, 4, 5]
    assert report["class_names"] == ["neutral", "happiness", "surprise", "anger"] and report["published"] == []
    # DFEW's test sets partition the clips: the summed matrix counts every four-class clip exactly once.
    test_keys = [r.key for k in range(1, 6) for r in dfew_records(dfew_tree, "test", k, "clip_224x224", 4)]
    assert len(set(test_keys)) == len(test_keys) == report["summed"]["test_clips"]
    assert np.asarray(report["summed"]["confusion_matrix"]).sum() == len(test_keys)
    for fold in report["folds"]:
        assert (runs / f"fold{fold['fold']}" / "checkpoints" / "best.ckpt").is_file()
        # Our WAR/UAR from the confusion counts are what train-dfer's torchmetrics logged on that fold.
        assert fold["war"] == pytest.approx(fold["test_metrics"]["test/war"], abs=1e-6)
        assert fold["uar"] == pytest.approx(fold["test_metrics"]["test/uar"], abs=1e-6)
        assert fold["recall"]["anger"] == pytest.approx(fold["test_metrics"]["test/recall_anger"], abs=1e-6)
    wars = [f["war"] for f in report["folds"]]
    assert report["mean"]["war"] == pytest.approx(np.mean(wars)) and report["std"]["war"] == pytest.approx(np.std(wars, ddof=1))
    markdown = (runs / "report.md").read_text()
    assert "| **mean ± std** |" in markdown and "DFER-CLIP" not in markdown and "Machine: `machine:" in markdown
    assert (runs / "confusion_matrix_sum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert capsys.readouterr().out.count("== fold ") == 5

    # Fold 3 lost (as if never run), fold 5 interrupted before its test: only those two run again.
    before = {k: (runs / f"fold{k}" / "checkpoints" / "best.ckpt").stat().st_mtime_ns for k in (1, 2, 4)}
    shutil.rmtree(runs / "fold3")
    (runs / "fold5" / "fold_result.json").unlink()
    assert cli_main(folds_args(dfew_tree, runs)) == 0
    out = capsys.readouterr().out
    assert "== fold 3 " in out and "== fold 5 " in out and "(resuming from" in out
    assert "== fold 1 " not in out and "== fold 2 " not in out and "== fold 4 " not in out
    assert before == {k: (runs / f"fold{k}" / "checkpoints" / "best.ckpt").stat().st_mtime_ns for k in (1, 2, 4)}
    again = json.loads((runs / "report.json").read_text())
    assert [f["fold"] for f in again["folds"]] == [1, 2, 3, 4, 5]
    # Fold 5 resumed after its last epoch: nothing more trained, the same checkpoint, the same figures.
    assert again["folds"][4]["confusion_matrix"] == report["folds"][4]["confusion_matrix"]

    # Reusing these folds with other settings is refused, before anything trains.
    assert cli_main(folds_args(dfew_tree, runs, "--data.classes", "7")) == 2
    assert "was trained with other settings (data.init_args.classes: 4 there, 7 now)" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--folds", "6"], "--folds 6: the dataset's official folds are 1..5"),
    (["--skip_test", "true"], "--skip_test true"),
    (["--folds", "[2]", "--ckpt_path", "x.ckpt"], "--ckpt_path is set per fold"),
])
def test_bad_options_are_one_line_errors(dfew_tree, tmp_path, capsys, extra, message):
    assert cli_main(folds_args(dfew_tree, tmp_path / "runs", *extra)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and not (tmp_path / "runs").exists()


def test_a_fold_without_clips_stops_before_training(dfew_tree, tmp_path, capsys):
    root = tmp_path / "DFEW"
    shutil.copytree(dfew_tree, root)
    (root / "EmoLabel_DataSplit" / "test(single-labeled)" / "set_4.csv").write_text("video_name,label\n")
    assert cli_main(folds_args(root, tmp_path / "runs")) == 2
    assert "DFEW test fold 4 lists no clips" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_seven_class_report_puts_the_published_figures_beside_ours():
    names = DFEW_CLASSES[7]
    rng = np.random.default_rng(0)
    results = [FoldResult(k, names, rng.integers(0, 20, (7, 7)), f"fold{k}/best.ckpt", 0.5) for k in range(1, 6)]
    report = build_report(results, "dfer_pd.stage1.datasets.dfew.DfewDataModule")
    assert [p["method"].split()[0] for p in report["published"]] == ["DFER-CLIP", "MAE-DFER", "S2D"]
    assert report["published"][0]["uar"] == pytest.approx(0.5961) and report["published"][2]["war"] == pytest.approx(0.7603)
    summed = sum(r.matrix for r in results)
    assert report["summed"]["war"] == pytest.approx(np.trace(summed) / summed.sum())
    markdown = report_markdown(report)
    assert "| DFER-CLIP (Zhao and Patras, BMVC 2023) | 59.61 | 71.25 |" in markdown
    assert f"| **this run** (mean of folds 1, 2, 3, 4, 5) | {100 * report['mean']['uar']:.2f} ± " in markdown
    # Four classes, or another dataset's seven: no published DFEW row.
    assert build_report(results, "dfer_pd.stage1.datasets.ferv39k.Ferv39kDataModule")["published"] == []
