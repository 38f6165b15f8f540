"""The `dfer-pd` command tree: names, help text, --version, --print_config, config names, lazy imports."""

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dfer_pd import __version__
from dfer_pd.cli import COMMANDS, build_parser, main
from dfer_pd.configs import ConfigNotFoundError, resolve_config, shipped_configs

REPO = Path(__file__).resolve().parents[2]
LIGHT_COMMANDS = [name for name, command in COMMANDS.items() if not command.cache_help]
HEAVY = ("torch", "lightning", "transformers", "sklearn", "wandb", "gradio")


def command_parser(name: str):
    return build_parser(name)._subcommands_action._name_parser_map[name]


def visible_options(parser) -> dict[str, str | None]:
    """--option -> help text, for every option --help shows (nested subcommands included)."""
    options = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action._name_parser_map.values():
                options.update(visible_options(sub))
        elif action.help != argparse.SUPPRESS and action.option_strings:
            options[action.option_strings[-1]] = action.help
    return options


def run_cli(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "dfer-pd"
    return subprocess.run([str(script), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=REPO)


def test_root_help_lists_every_command_and_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("usage: dfer-pd ")
    for name in COMMANDS:
        assert name in printed
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"dfer-pd {__version__}"


def test_unknown_command_is_one_message_with_exit_code_2(capsys):
    assert main(["frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "dfer-pd: error: argument command: invalid choice: 'frobnicate'" in err and "Traceback" not in err


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_has_help_text(name):
    options = visible_options(command_parser(name))
    generic = {"--help", "--print_config"}

    def group_config(option: str) -> bool:  # `--cohort CONFIG`: a YAML for a whole option group
        return any(other.startswith(f"{option}.") for other in options)

    missing = [opt for opt, text in options.items()
               if opt not in generic and not opt.endswith(".help") and not group_config(opt)
               and (not text or text == "Path to a configuration file.")]
    assert not missing, f"{name}: options without help text: {missing}"


def test_each_stage2_command_shows_only_its_own_options():
    extract = visible_options(command_parser("extract"))
    train_pd = visible_options(command_parser("train-pd"))
    ablation = visible_options(command_parser("ablation"))
    assert not [o for o in extract if o.startswith(("--classifier", "--cv", "--wandb", "--plots", "--intensities",
                                                     "--save_screening_model"))]
    assert "--cohort.manifest" in extract and "--extraction.checkpoint" in extract
    assert {"--classifier.class_path", "--classifier.init_args", "--cv.n_splits", "--runtime.engine", "--wandb.dir",
            "--plots", "--save_screening_model"} <= set(train_pd)
    assert "--cv.val_fraction" not in train_pd and "--cv.runtime" not in train_pd  # the estimator's; its own group
    assert "--classifier.init_args" in ablation and "--plots" not in ablation and "--save_screening_model" not in ablation
    # The shared YAML still parses for extract (its classifier/cv keys are accepted, not shown).
    cfg = command_parser("extract").parse_args(["--config", "pd_lstm"])
    assert cfg.extraction.checkpoint == "runs/dfer_clip/fold1/checkpoints/best.ckpt"


def test_program_names_in_usage():
    for name in ("synth", "extract", "train-pd", "diagnose", "serve", "demo"):
        assert command_parser(name).format_usage().startswith(f"usage: dfer-pd [options] {name}")


@pytest.mark.parametrize("name", LIGHT_COMMANDS)
def test_print_config_on_every_command(name, capsys):
    """`dfer-pd <command> ... --print_config` prints a YAML that the same command parses back."""
    required = {"diagnose": ["--stage1", "a.ckpt", "--screening_model", "model"],
                "serve": ["--stage1", "a.ckpt", "--screening_model", "model"],
                "synth": ["cohort", "out"]}.get(name, [])
    with pytest.raises(SystemExit) as done:
        main([name, *required, "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert isinstance(printed, dict) and printed
    if name == "diagnose":
        assert printed["stage1"] == "a.ckpt" and printed["device"] == "cpu"


def test_train_dfer_print_config_takes_a_config_name(capsys):
    with pytest.raises(SystemExit) as done:
        main(["train-dfer", "--config", "dfer_demo", "--trainer.max_epochs", "3", "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["trainer"]["max_epochs"] == 3 and printed["model"]["network"]["clip_name_or_path"] == "builtin:tiny-clip"
    assert "save_dir" not in printed["trainer"]["logger"]["init_args"] or printed["trainer"]["logger"]["init_args"]["save_dir"] is None


def test_config_names_and_paths():
    configs = shipped_configs()
    assert {"pd_lstm", "pd_demo", "dfer_clip", "dfer_demo", "datasets/dfew7", "sweeps/pd_lstm_sweep"} <= set(configs)
    # The packaged configs are the repository's experiments/ (one copy: dfer_pd/experiments links to it).
    for name, path in configs.items():
        assert path.read_bytes() == (REPO / "experiments" / f"{name}.yaml").read_bytes()
    assert set(configs) == {p.relative_to(REPO / "experiments").with_suffix("").as_posix()
                            for p in (REPO / "experiments").rglob("*.yaml")}
    assert resolve_config("pd_lstm") == resolve_config("pd_lstm.yaml") == configs["pd_lstm"]
    assert resolve_config("experiments/pd_lstm.yaml").samefile(configs["pd_lstm"])  # a path (from the repo) or a name
    assert resolve_config("dfew7") == configs["datasets/dfew7"]
    assert resolve_config(str(REPO / "experiments" / "pd_demo.yaml")) == REPO / "experiments" / "pd_demo.yaml"
    with pytest.raises(ConfigNotFoundError, match="--config pd_lsmt: no such file, and no shipped config of that name"):
        resolve_config("pd_lsmt")
    cfg = command_parser("train-pd").parse_args(["--config", "pd_demo", "--classifier.init_args.hidden_size", "8"])
    assert cfg.classifier.init_args == {"hidden_size": 8, "max_epochs": 60, "patience": 15}  # merged into the file's
    assert cfg.cohort.manifest == "runs/demo/data/cohort/manifest.csv"


def test_configs_command_lists_and_prints(capsys):
    assert main(["configs"]) == 0
    listed = capsys.readouterr().out
    assert "pd_lstm" in listed and "Stage 2, the paper's configuration" in listed
    assert main(["configs", "pd_demo"]) == 0
    assert capsys.readouterr().out == (REPO / "experiments" / "pd_demo.yaml").read_text()


def test_synth_writes_both_layouts_from_flags(tmp_path, capsys):
    assert main(["synth", "dfew", str(tmp_path / "dfew"), "--num_clips", "20", "--size", "32"]) == 0
    assert main(["synth", "cohort", str(tmp_path / "cohort"), "--num_subjects", "4", "--seconds", "1", "--size", "32"]) == 0
    assert len(list((tmp_path / "dfew" / "Clip" / "clip_224x224").iterdir())) == 20
    with open(tmp_path / "cohort" / "manifest.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 16 and {r["label"] for r in rows} == {"PD", "HC"}
    assert "wrote" in capsys.readouterr().out


def test_help_imports_nothing_heavy():
    """`dfer-pd <command> --help` answers without torch, Lightning, scikit-learn, W&B or Gradio (lazy imports)."""
    code = ("import sys\nfrom dfer_pd.cli import main\n"
            f"for argv in [['--help']] + [[name, '--help'] for name in {LIGHT_COMMANDS!r}] + [['synth', 'cohort', '--help']]:\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_train_dfer_help_is_cached_and_keyed_on_sources_and_width(tmp_path):
    """train-dfer's parser needs Lightning; its plain --help comes from a cache keyed on sources and versions."""
    env = {"DFER_PD_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "100"}
    first = run_cli("train-dfer", "--help", env=env)
    assert first.returncode == 0, first.stderr[-2000:]
    assert "--ckpt_path" in first.stdout and "--trainer.max_epochs" in first.stdout and "--model.network.tau" in first.stdout
    assert len(list((tmp_path / "cache").glob("help-train-dfer-*.txt"))) == 1
    code = ("import sys\nfrom dfer_pd.cli import main\nmain(['train-dfer', '--help'])\n"
            "print('lightning' in sys.modules, 'torch' in sys.modules)")
    cached = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO,
                            env={**os.environ, **env})
    assert cached.stdout.endswith("False False\n") and cached.stdout[: -len("False False\n")] == first.stdout
    from dfer_pd.commands.help_cache import help_key

    package = tmp_path / "package"
    (package / "commands").mkdir(parents=True)
    (package / "commands" / "x.py").write_text("A = 1\n")
    key = help_key("train-dfer", package)
    assert help_key("train-dfer", package) == key
    (package / "commands" / "x.py").write_text("A = 22\n")  # an edited source file
    assert help_key("train-dfer", package) != key
    key = help_key("train-dfer", package)
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "77"
    try:
        assert help_key("train-dfer", package) != key  # the terminal width
    finally:
        os.environ.pop("COLUMNS") if old is None else os.environ.__setitem__("COLUMNS", old)
