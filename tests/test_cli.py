"""The `dfer-pd` console script: dispatch, synth flags, unknown commands."""

import csv

from dfer_pd.cli import main


def test_help_and_unknown_command(capsys):
    assert main(["--help"]) == 0
    assert "train-dfer" in capsys.readouterr().out
    assert main(["frobnicate"]) == 2
    assert "unknown command 'frobnicate'" in capsys.readouterr().err


def test_synth_writes_both_layouts_from_flags(tmp_path, capsys):
    main(["synth", "dfew", str(tmp_path / "dfew"), "--num_clips", "20", "--size", "32"])
    main(["synth", "cohort", str(tmp_path / "cohort"), "--num_subjects", "4", "--seconds", "1", "--size", "32"])
    assert len(list((tmp_path / "dfew" / "Clip" / "clip_224x224").iterdir())) == 20
    with open(tmp_path / "cohort" / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and {r["label"] for r in rows} == {"PD", "HC"}
    assert "wrote" in capsys.readouterr().out
