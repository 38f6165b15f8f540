"""benchmarks/gpu_check.py --smoke: every part of the prepared GPU check runs on the CPU at tiny sizes, so it cannot rot."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_smoke_writes_json_and_markdown(tmp_path):
    env = {**os.environ, "WANDB_MODE": "disabled", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["smoke"] and report["machine"].startswith("machine: ") and report["gpu"]["gpu"] is None
    assert report["data"]["min_frames"] >= 11 and report["data"]["clips"] == 30
    for part in ("step", "reference", "fit", "ddp"):
        assert report[part]["steps_per_s"] > 0 and report[part]["clips_per_s"] > 0, part
    assert report["reference"]["batch"] > report["step"]["batch"]
    assert report["ddp"]["devices"] == 2 and 0 <= report["fit"]["loader_wait_share"] <= 1
    assert [r["workers"] for r in report["loader"]] == [0, 1] and all(r["clips_per_s"] > 0 for r in report["loader"])
    extraction = report["extraction"]
    assert extraction["videos"] == 24 and extraction["videos_per_s"] > 0 and extraction["diagnose_one_subject_s"] > 0
    table = (tmp_path / "gpu_check.md").read_text()
    assert "| DFER-CLIP reference step | 3 |" in table and "| Lightning DDP |" in table and report["machine"] in table
    assert "The GPU waits on the loader: **" in table
    assert not (tmp_path / "work").exists()  # the scratch tree is removed
