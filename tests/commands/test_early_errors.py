"""A wrong path or option value answers before torch, Lightning or W&B is imported: one line, exit code 2.

Each case runs `dfer-pd`'s entry point in a fresh interpreter from an empty folder (so the shipped configs'
relative data paths do not exist), then lists the heavy modules that interpreter imported: none may be.
"""

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("torch", "lightning", "wandb", "sklearn")
PROBE = """
import json, sys
from dfer_pd.cli import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "heavy": sorted(m for m in %r if m in sys.modules)}))
""" % (HEAVY,)


def early(cwd, *args) -> tuple[dict, str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=120, env={**os.environ, "WANDB_MODE": "offline"})
    assert done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


CASES = {
    "diagnose, no videos folder": (["diagnose", "--videos", "nowhere", "--stage1", "model.ckpt",
                                    "--screening_model", "screening_model"], "nowhere is not a folder of expression videos"),
    "diagnose, a missing explicit video": (["diagnose", "--videos", ".", "--neutral", "n.mp4", "--happiness", "h.mp4",
                                            "--surprise", "s.mp4", "--anger", "a.mp4", "--stage1", "model.ckpt",
                                            "--screening_model", "screening_model"], "n.mp4 (neutral video) does not exist"),
    "train-pd, the shipped config without a manifest": (["train-pd", "--config", "pd_lstm"],
                                                        "--cohort.manifest data/cohort/manifest.csv: file not found"),
    "train-pd, a missing intensities file": (["train-pd", "--intensities", "x.npz"], "--intensities x.npz: file not found"),
    "extract, a missing checkpoint": (["extract", "--cohort.manifest", "model.ckpt", "--extraction.checkpoint", "no.ckpt"],
                                      "--extraction.checkpoint no.ckpt: file not found"),
    "train-dfer, a missing root": (["train-dfer", "--data.root", "/nonexistent"], "--data.root /nonexistent: folder not found"),
    "train-dfer, the config's root": (["train-dfer", "--config", "dfer_demo"], "--data.root runs/demo/data/dfew: folder not found"),
    "train-dfer, a missing resume checkpoint": (["train-dfer", "--config", "dfer_demo", "--data.root=.",
                                                 "--ckpt_path=last.ckpt"], "--ckpt_path last.ckpt: file not found"),
    "train-dfer-folds, a missing root": (["train-dfer-folds", "--data.init_args.root", "nowhere"],
                                         "--data.root nowhere: folder not found"),
    "synth, a negative count": (["synth", "cohort", "out", "--num_subjects", "-3"], "num_subjects must be at least 1, got -3"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_wrong_input_answers_before_heavy_imports(case, tmp_path):
    (tmp_path / "model.ckpt").write_bytes(b"not read")
    (tmp_path / "screening_model").mkdir()
    args, wording = CASES[case]
    result, stderr = early(tmp_path, *args)
    assert result["code"] == 2, stderr
    assert wording in stderr and "Traceback" not in stderr, stderr
    assert stderr.count("error:") == 1
    assert result["heavy"] == [], f"{case}: imported {result['heavy']} before answering"
    assert not (tmp_path / "wandb").exists() and not list(tmp_path.rglob("offline-run-*")), "a W&B run was opened"


@pytest.mark.parametrize("command, path", [("train-pd", "x/train-pd.nosuch.yaml"), ("synth", "synth.1.yaml")])
def test_a_config_path_is_quoted_as_typed(command, path, tmp_path):
    """The command's name inside a file path is not mistaken for an option key (``--config x/--nosuch.yaml``)."""
    args = [command, "--config", path] if command != "synth" else [command, "cohort", "out", "--config", path]
    result, stderr = early(tmp_path, *args)
    assert result["code"] == 2 and f"--config {path}: no such file" in stderr, stderr
