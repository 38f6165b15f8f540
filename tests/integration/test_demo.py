"""`dfer-pd demo` end to end at toy sizes: every stage runs and leaves its outputs where it says."""

import pandas as pd
import pytest

from dfer_pd.commands.demo import main as demo


# Slow (90 s) and, inside the full suite, it failed once in three runs in a way pytest could not even
# report (CPython 3.11's AST recursion-counter race with a background thread while formatting the
# failure); every stage it chains has its own test in `make test`. `make test-all` runs it.
@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path, capsys, monkeypatch):
    # Offline W&B (on this machine): the demo's runs must all land in one folder, <out>/wandb.
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_DIR", raising=False)
    out = tmp_path / "demo"
    result = demo(["--out", str(out), "--dfew_clips", "40", "--subjects", "12", "--stage1_epochs", "1",
                   "--stage2_epochs", "3"])
    printed = capsys.readouterr().out
    assert "stage 2 accuracy" in printed and "Table 3" in printed
    assert (out / "stage1" / "checkpoints" / "best.ckpt").is_file()
    predictions = pd.read_csv(out / "stage2" / "predictions.csv")
    assert sorted(set(predictions["subject_id"])) == [f"S{i:03d}" for i in range(1, 13)]  # every repeat predicts each
    assert set(predictions["fold"]) == {1, 2, 3, 4, 5}
    for plot in ("roc.png", "confusion_matrix.png", "intensity_boxplots.png", "tsne.png"):
        assert (out / "stage2" / plot).stat().st_size > 0, plot
    table = pd.read_csv(out / "stage2" / "ablation" / "table3.csv")
    assert len(table) == 19  # the paper's 16 rows and 3 on landmark kinematics (the demo's cohort has them)
    assert (out / "stage2" / "kinematics.png").stat().st_size > 0
    assert 0.0 <= result["stage2"]["cv/accuracy_mean"] <= 1.0
    # The demo ends with diagnose on one PD and one HC subject, each with a full report.
    assert printed.count("diagnose, synthetic") == 2 and "not a diagnosis" in printed
    reports = sorted((out / "diagnose").glob("*/report.json"))
    assert len(reports) == 2 and all((r.parent / "report.html").is_file() for r in reports)
    # One W&B run per step that logs (stage 1, train-pd, ablation), all in <out>/wandb, none scattered elsewhere.
    assert len(list((out / "wandb").glob("offline-run-*"))) == 3
    assert [p for p in out.rglob("wandb") if p.is_dir()] == [out / "wandb"]


def _write_and_fail(path, fail):
    import sys

    print("to the log", flush=True)
    print("errors too", file=sys.stderr, flush=True)
    if fail:
        raise ValueError(f"{path}: went wrong in the background")
    path.write_text("done")


def test_a_step_beside_the_demo_logs_its_output_and_raises_its_error(tmp_path, capfd):
    from dfer_pd.commands.demo import beside

    log = tmp_path / "step.log"
    with beside(_write_and_fail, tmp_path / "ok.txt", False, log=log) as wait:
        wait()
    assert (tmp_path / "ok.txt").read_text() == "done"
    assert log.read_text().splitlines() == ["to the log", "errors too"]
    assert "to the log" not in capfd.readouterr().out  # nothing reached this process's terminal
    with pytest.raises(ValueError, match="bad.txt: went wrong in the background"):
        with beside(_write_and_fail, tmp_path / "bad.txt", True, log=log) as wait:
            wait()
