"""Every shipped YAML parses with the command it belongs to; the sweep's command runs offline."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from dfer_pd.synthetic.intensities import synthetic_cohort
from helpers import offline_run_contents
from dfer_pd.commands.train_pd import build_job, build_parser
from dfer_pd.stage2.classifiers import ResidualRNNEstimator, build_estimator
from dfer_pd.stage2.settings import RNN_CLASS_PATH

REPO = Path(__file__).resolve().parents[2]
STAGE1_CONFIGS = sorted((REPO / "experiments").glob("dfer_*.yaml"))
DATASET_CONFIGS = sorted((REPO / "experiments" / "datasets").glob("*.yaml"))
STAGE2_CONFIGS = sorted((REPO / "experiments").glob("pd_*.yaml"))
SWEEPS = sorted((REPO / "experiments" / "sweeps").glob("*.yaml"))
STAGE1_SWEEPS = [p for p in SWEEPS if p.name.startswith("dfer_")]
STAGE2_SWEEPS = [p for p in SWEEPS if p.name.startswith("pd_")]


def test_every_config_is_covered():
    shipped = set((REPO / "experiments").rglob("*.yaml"))
    assert shipped == set(STAGE1_CONFIGS) | set(DATASET_CONFIGS) | set(STAGE2_CONFIGS) | set(SWEEPS)
    assert STAGE1_CONFIGS and DATASET_CONFIGS and STAGE2_CONFIGS and SWEEPS


@pytest.mark.parametrize("config", STAGE1_CONFIGS, ids=lambda p: p.name)
def test_stage1_config_prints(config):
    configs = ["--config", str(REPO / "experiments" / "dfer_clip.yaml")] if config.name == "dfer_clip_reference.yaml" else []
    done = subprocess.run([sys.executable, "-m", "dfer_pd.cli", "train-dfer", *configs, "--config", str(config), "--print_config"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = yaml.safe_load(done.stdout)
    # The dataset is chosen by class_path; its frame count, image size and CLIP normalisation are linked
    # to the model's network: one source of truth.
    assert printed["data"]["class_path"] == "dfer_pd.stage1.datasets.dfew.DfewDataModule"
    assert "num_frames" in printed["model"]["network"]
    assert not {"num_frames", "clip_name_or_path", "image_size"} & set(printed["data"]["init_args"])


@pytest.mark.parametrize("config", DATASET_CONFIGS, ids=lambda p: p.name)
def test_dataset_config_layers_on_the_stage1_config(config, capsys):
    """experiments/datasets/<name>.yaml swaps the dataset of experiments/dfer_clip.yaml and keeps its recipe."""
    from dfer_pd.commands.train_dfer import main as train_dfer

    with pytest.raises(SystemExit) as done:
        train_dfer(["--config", str(REPO / "experiments" / "dfer_clip.yaml"), "--config", str(config), "--print_config"])
    assert done.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    data = yaml.safe_load(config.read_text())["data"]
    assert printed["data"]["class_path"] == data["class_path"]
    init_args = printed["data"]["init_args"]
    assert {key: init_args[key] for key in data["init_args"]} == data["init_args"]
    assert init_args["batch_size"] == 16 and printed["trainer"]["max_epochs"] == 50  # the recipe is kept
    assert not {"num_frames", "clip_name_or_path", "image_size"} & set(init_args)
    import importlib
    import inspect

    from dfer_pd.stage1.datasets.base import ClipDataModule

    module, name = data["class_path"].rsplit(".", 1)
    dataset = getattr(importlib.import_module(module), name)
    accepted = set(inspect.signature(dataset).parameters) | set(inspect.signature(ClipDataModule).parameters)
    assert issubclass(dataset, ClipDataModule)
    assert set(init_args) <= accepted  # no argument of the DFEW base config leaks into another dataset


@pytest.mark.parametrize("config", STAGE2_CONFIGS, ids=lambda p: p.name)
def test_stage2_config_parses_and_builds_its_classifier(config):
    cfg = build_parser("train-pd").parse_args(["--config", str(config)])
    assert cfg.cv.n_splits == 5 and cfg.classifier.features == "processed"
    job, _ = build_job(cfg, "train-pd")  # the classifier checked against its estimator's signature, and named
    assert job.classifier.class_path == RNN_CLASS_PATH and job.classifier.name == "lstm_processed_residual"
    estimator = build_estimator(job.classifier)
    assert isinstance(estimator, ResidualRNNEstimator) and estimator.cell == "lstm" and estimator.residual
    init_args = (yaml.safe_load(config.read_text()).get("classifier") or {}).get("init_args", {})
    assert job.classifier.init_args == init_args
    assert {key: estimator.get_params()[key] for key in init_args} == init_args


def drawn_values(spec: dict) -> list:
    """Values the agent can draw for one sweep parameter: each listed value, or a range's ends and middle."""
    if "values" in spec:
        return list(spec["values"])
    return [spec["min"], (spec["min"] + spec["max"]) / 2, spec["max"]]


@pytest.mark.parametrize("sweep_file", STAGE2_SWEEPS, ids=lambda p: p.name)
def test_every_sweep_parameter_is_an_option_the_classifier_resolves(sweep_file):
    """Each swept key, with each value the agent can draw, parses on top of pd_lstm.yaml and builds the classifier
    with that value (a misspelt init_args key parses as a dict entry but is refused when the classifier resolves)."""
    parameters = yaml.safe_load(sweep_file.read_text())["parameters"]
    parser = build_parser("train-pd")
    for key, spec in parameters.items():
        assert key.startswith("classifier."), key
        for value in drawn_values(spec):
            cfg = parser.parse_args(["--config", str(REPO / "experiments" / "pd_lstm.yaml"), f"--{key}={value}"])
            job, _ = build_job(cfg, "train-pd")
            *path, leaf = key.split(".")
            if path == ["classifier", "init_args"]:
                assert job.classifier.init_args == {leaf: value}, (key, value)
                assert build_estimator(job.classifier).get_params()[leaf] == value, (key, value)
            else:
                assert getattr(job.classifier, leaf) == value, (key, value)


def sweep_command(sweep: dict, params: dict) -> list[str]:
    """The command line `wandb agent` runs for one parameter set, built by wandb's own functions (the agent's
    macro expansion and argument formats; ${env}, ${interpreter}, ${program} as the agent fills them)."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command, create_sweep_command_args

    variables = create_sweep_command_args({"args": {key: {"value": value} for key, value in params.items()}})
    variables.update(env=["/usr/bin/env"], interpreter=["python"], program=[sweep["program"]])
    command = []
    for part in map(str, create_sweep_command(list(sweep["command"]))):
        command += (variables.get(part[2:-1]) or []) if part.startswith("${") and part.endswith("}") else [part]
    return command


def agent_environment(tmp_path: Path, params: dict, sweep_id: str, run_id: str) -> dict:
    """What `wandb agent` puts in a trial's environment: the sweep and run ids and the file of drawn values."""
    from wandb.sdk.lib.config_util import save_config_file_from_dict

    param_path = tmp_path / "wandb" / f"sweep-{sweep_id}" / f"config-{run_id}.yaml"
    param_path.parent.mkdir(parents=True, exist_ok=True)
    save_config_file_from_dict(str(param_path), {key: {"value": value} for key, value in params.items()})
    return {"WANDB_SWEEP_ID": sweep_id, "WANDB_RUN_ID": run_id, "WANDB_SWEEP_PARAM_PATH": str(param_path)}


def test_every_sweep_belongs_to_a_stage():
    assert set(SWEEPS) == set(STAGE1_SWEEPS) | set(STAGE2_SWEEPS) and STAGE1_SWEEPS and STAGE2_SWEEPS


@pytest.mark.parametrize("sweep_file", STAGE2_SWEEPS, ids=lambda p: p.name)
def test_sweep_command_runs_offline(sweep_file, tmp_path):
    sweep = yaml.safe_load(sweep_file.read_text())
    parser = build_parser("train-pd")
    # One parameter set, as the agent would draw it: the first value or the lower bound of each range.
    params = {name: spec["values"][0] if "values" in spec else spec["min"] for name, spec in sweep["parameters"].items()}
    params["classifier.init_args.hidden_size"] = 8
    params["classifier.init_args.residual"] = False  # the default classifier is named lstm_processed_residual
    command = sweep_command(sweep, params)
    # Run it, exactly as built, in a scratch folder laid out like the repo; the data come from the local
    # sweep_inputs.yaml the sweep file tells the user to write (here: a synthetic cohort's intensities).
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    intensities = synthetic_cohort(n_pd=15, n_hc=15, seed=0).save(tmp_path / "intensities.npz")
    (tmp_path / "sweep_inputs.yaml").write_text(yaml.safe_dump({"intensities": str(intensities),
                                                                "classifier": {"init_args": {"max_epochs": 5}}}))
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
           **agent_environment(tmp_path, params, "sw2", "trial2"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    assert shutil.which(command[1], path=env["PATH"]), "the console script the sweep runs is installed"
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "accuracy" in done.stdout
    # The printed CV line names the classifier the trial trained (its values), not the config file's label.
    assert "lstm_raw: 3 x 5-fold CV" in done.stdout and "residual" not in done.stdout.split(" x 5-fold CV")[0]
    trial = tmp_path / "runs" / "sweeps" / "pd_lstm" / "sweep-sw2" / "trial-trial2"
    assert (trial / "predictions.csv").is_file() and (trial / "config.json").is_file()
    held_out = (trial / "holdout_subjects.csv").read_text().splitlines()[1:]
    assert len(held_out) == 6 and not {line.split(",")[0] for line in held_out} & set(pd.read_csv(trial / "predictions.csv")["subject_id"])
    (run,) = list(tmp_path.rglob("offline-run-*"))
    logged = offline_run_contents(run)  # the run as W&B shows it: named after the drawn values, typed, folds as a table
    assert logged["job_type"] == "sweep-trial"
    assert logged["name"] == "features=raw dropout=0 hidden_size=8 lr=0.0001 num_layers=1 residual=false"
    assert logged["history"]["cv/folds/_type"] == "table-file" and logged["history"]["cv/folds/nrows"] == 15  # 3 x 5 fits
    assert sweep["metric"]["name"] in logged["summary"] and not any(key.startswith("repeat") for key in logged["history"])
    # The honest-tuning run takes the trial's drawn values alone: its defaults (plots, the permutation test, the
    # screening model) are not the trial's shortcuts.
    tuned = yaml.safe_load((trial / "hyperparameters.yaml").read_text())
    assert tuned == {"classifier": {"features": "raw", "init_args": {key.split(".")[-1]: value for key, value in params.items()
                                                                    if key.startswith("classifier.init_args.")}}}
    cfg = parser.parse_args(["--config", str(REPO / "experiments" / "pd_lstm.yaml"), "--config", str(trial / "hyperparameters.yaml")])
    assert cfg.plots and cfg.save_screening_model and cfg.stats.permutations > 0
    assert cfg.classifier.init_args == tuned["classifier"]["init_args"] and cfg.classifier.features == "raw"


@pytest.mark.parametrize("sweep_file", STAGE1_SWEEPS, ids=lambda p: p.name)
def test_stage1_sweep_command_runs_offline(sweep_file, tmp_path):
    """One trial of the stage-1 sweep as `wandb agent` runs it, offline, on a tiny DFEW tree with the tiny CLIP."""
    from dfer_pd.commands.train_dfer import build_parser as train_dfer_parser
    from dfer_pd.synthetic.dfew import make_dfew_tree

    sweep = yaml.safe_load(sweep_file.read_text())
    assert sweep["metric"]["name"].startswith("val/") and "--skip_test=true" in sweep["command"]  # tuned on validation
    params = {name: spec["values"][-1] if "values" in spec else spec["min"] for name, spec in sweep["parameters"].items()}
    command = sweep_command(sweep, params)
    # Every swept key is a real option of train-dfer.
    base = train_dfer_parser().parse_args(["--config", str(REPO / "experiments" / "dfer_clip.yaml")])
    for key in sweep["parameters"]:
        assert key in base, key
    (tmp_path / "experiments").symlink_to(REPO / "experiments")
    root = make_dfew_tree(tmp_path / "DFEW", num_clips=40, max_frames=20, size=32, seed=2)
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_DIR": str(tmp_path), "WANDB_SILENT": "true",
           "WANDB_SWEEP_ID": "sw1", "WANDB_RUN_ID": "trial1", "OMP_NUM_THREADS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    # The tiny CLIP on the CPU, one short epoch (the swept values stay as drawn).
    command += [f"--data.root={root}", "--model.network.clip_name_or_path=builtin:tiny-clip", "--model.network.random_init=true",
                "--model.network.num_frames=4", "--model.network.gate_heads=4", "--model.network.temporal_heads=4",
                "--model.network.temporal_mlp_dim=64", "--data.num_workers=0", "--data.batch_size=4", "--data.val_fraction=0.2",
                "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.precision=32-true", "--trainer.max_epochs=1",
                "--trainer.limit_train_batches=2", "--trainer.enable_progress_bar=false"]
    assert shutil.which(command[1], path=env["PATH"]), "the console script the sweep runs is installed"
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "best checkpoint:" in done.stdout and "test fold" not in done.stdout  # the test fold stays unseen
    trial = tmp_path / "runs" / "sweeps" / "dfer_clip" / "sweep-sw1" / "trial-trial1"
    assert (trial / "checkpoints" / "best.ckpt").is_file()
    saved = yaml.safe_load((trial / "config.yaml").read_text())
    assert saved["model"]["network"]["temporal_layers"] == params["model.network.temporal_layers"]
    assert saved["model"]["network"]["tau"] == params["model.network.tau"] and saved["model"]["lr_temporal"] == params["model.lr_temporal"]
    (run,) = list(tmp_path.rglob("offline-run-*"))
    (records,) = list(run.glob("*.wandb"))  # the offline run's records: the metric the sweep optimises was logged
    assert sweep["metric"]["name"].encode() in records.read_bytes()


def make_commands(target: str) -> list[list[str]]:
    """The dfer-pd command lines `make <target>` would run (dry run, nothing executed)."""
    import shlex

    done = subprocess.run(["make", "-n", "-o", ".venv/.installed", target], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr
    script = done.stdout.replace("\\\n", " ")
    return [shlex.split(line)[1:] for line in script.splitlines() if "bin/dfer-pd " in line]


@pytest.mark.parametrize("target", ["extract", "train-pd", "ablation"])
def test_make_stage2_targets_parse(target):
    (command,) = make_commands(target)
    assert command[0] == target
    cfg = build_parser(target).parse_args(command[1:])
    assert cfg.cohort.manifest == "data/cohort/manifest.csv"
    assert cfg.extraction.checkpoint == "runs/dfer_clip/fold1/checkpoints/best.ckpt"


def test_make_train_dfer_parses():
    (command,) = make_commands("train-dfer")
    assert command[0] == "train-dfer"
    done = subprocess.run([sys.executable, "-m", "dfer_pd.cli", *command, "--print_config"],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    printed = yaml.safe_load(done.stdout)
    assert printed["data"]["init_args"]["fold"] == 1 and printed["trainer"]["default_root_dir"] == "runs/dfer_clip/fold1"
