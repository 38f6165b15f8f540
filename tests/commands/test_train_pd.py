"""`dfer-pd train-pd` from saved intensities: repeated-CV outputs, the permutation test, the calibrated screening
model, pseudonymised ids, the held-out evaluation."""

import json

import numpy as np
import pandas as pd
import pytest

from dfer_pd.synthetic.intensities import synthetic_cohort
from dfer_pd.stage2.screening_model import ScreeningModel
from dfer_pd.commands.train_pd import build_parser, main as train_pd
from dfer_pd.stage2.settings import RNN_CLASS_PATH, CVConfig


def test_train_pd_outputs_and_pseudonyms(tmp_path, capsys):
    data = synthetic_cohort(n_pd=12, n_hc=12, seed=4)
    npz = data.save(tmp_path / "intensities.npz")
    out = tmp_path / "run"
    summary = train_pd("train-pd", ["--intensities", str(npz), "--out_dir", str(out), "--cohort.pseudonymise_ids", "true",
                                    "--classifier.init_args.hidden_size", "8", "--classifier.init_args.max_epochs", "10",
                                    "--runtime.accelerator", "cpu",
                                    "--cv.repeats", "2", "--stats.permutations", "20", "--wandb.mode", "disabled"])
    assert 0.0 <= summary["cv/accuracy_mean"] <= 1.0 and "cv/f1_weighted_std" in summary
    assert summary["cv/repeats"] == 2 and summary["cv/accuracy_ci_low"] <= summary["cv/accuracy_mean"]
    assert 1 / 21 <= summary["cv/permutation_p_accuracy"] <= 1 and "cv/brier_calibrated" in summary
    predictions = pd.read_csv(out / "predictions.csv")
    key = pd.read_csv(out / "pseudonyms.csv")
    assert sorted(key["subject_id"]) == sorted(data.subject_ids)
    assert set(predictions["subject_id"]) == set(key["pseudonym"])
    assert not set(predictions["subject_id"]) & set(data.subject_ids), "no real subject id in the outputs"
    for name in ("metrics.json", "folds.csv", "repeats.csv", "curves.csv", "roc.png", "confusion_matrix.png",
                 "intensity_boxplots.png", "calibration.json", "reliability.png", "permutation_test.json",
                 "permutation_test.png"):
        assert (out / name).is_file(), name
    assert sorted(predictions["repeat"].unique()) == [0, 1]
    model = ScreeningModel.load(out / "screening_model")
    assert model.classifier.name == "lstm_processed_residual" and model.classifier.class_path == RNN_CLASS_PATH
    assert model.pipeline[-1].cell == "lstm" and model.contract is None  # trained from a synthetic .npz: no checkpoint
    assert model.calibration.method == "platt" and model.calibration_report["n_predictions"] == 2 * len(data)
    raw, calibrated = model.predict_proba(data.cosine, calibrated=False), model.predict_proba(data.cosine)
    np.testing.assert_allclose(calibrated, model.calibration(raw))
    assert model.cv_summary["cv/accuracy_ci_high"] >= model.cv_summary["cv/accuracy_mean"]
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "permutation test (20 label permutations" in printed and "95% CI" in printed


def test_train_pd_with_a_baseline_says_why_no_screening_model(tmp_path, capsys):
    npz = synthetic_cohort(n_pd=10, n_hc=10, seed=4).save(tmp_path / "intensities.npz")
    out = tmp_path / "run"
    summary = train_pd("train-pd", ["--intensities", str(npz), "--out_dir", str(out), "--classifier.class_path",
                                    "dfer_pd.stage2.classifiers.FlatClassifier", "--classifier.init_args.estimator",
                                    "{class_path: sklearn.ensemble.RandomForestClassifier, init_args: {n_estimators: 5}}",
                                    "--plots", "false",
                                    "--cv.repeats", "2", "--stats.permutations", "0", "--wandb.mode", "disabled"])
    assert 0.0 <= summary["cv/accuracy_mean"] <= 1.0 and (out / "predictions.csv").is_file()
    assert not (out / "screening_model").exists()
    assert "no screening model saved: a screening model is saved without pickle" in capsys.readouterr().out
    from dfer_pd.common.errors import UsageError

    with pytest.raises(UsageError, match=r"^--classifier: class_path sklearn.ensemble.RandomForestClasifier: "
                                         r"module 'sklearn.ensemble' has no attribute 'RandomForestClasifier'"):
        train_pd("train-pd", ["--intensities", str(npz), "--out_dir", str(tmp_path / "bad"),
                              "--classifier.class_path", "sklearn.ensemble.RandomForestClasifier"])
    assert not (tmp_path / "bad").exists()  # refused before anything ran
    with pytest.raises(UsageError, match=r"^--classifier: class_path sklearn.ensemble.RandomForestClassifier: "
                                         r"Option 'n_estimatorz' is not accepted; its parameters: n_estimators, "):
        train_pd("train-pd", ["--intensities", str(npz), "--out_dir", str(tmp_path / "bad"), "--classifier.class_path",
                              "dfer_pd.stage2.classifiers.FlatClassifier", "--classifier.init_args.estimator",
                              "{class_path: sklearn.ensemble.RandomForestClassifier, init_args: {n_estimatorz: 5}}"])
    assert not (tmp_path / "bad").exists()


def test_classifier_options_on_the_command_line_merge_into_the_configs_and_typos_stop_first(tmp_path, monkeypatch):
    """--classifier.init_args.X overrides that one parameter of the YAML's init_args and keeps the others; a
    misspelt parameter stops train-pd with one line naming it and the accepted ones, before anything runs."""
    from dfer_pd.common.errors import UsageError
    from dfer_pd.stage2 import workflows

    npz = synthetic_cohort(n_pd=8, n_hc=8, seed=4).save(tmp_path / "intensities.npz")
    config = tmp_path / "small.yaml"
    config.write_text("classifier:\n  init_args: {hidden_size: 32, max_epochs: 3, patience: 2}\n")
    out = tmp_path / "run"
    train_pd("train-pd", ["--config", str(config), "--classifier.init_args.hidden_size=4", "--intensities", str(npz),
                          "--out_dir", str(out), "--cv.repeats", "1", "--cv.n_splits", "2", "--stats.permutations", "0",
                          "--plots", "false", "--wandb.mode", "disabled"])
    model = ScreeningModel.load(out / "screening_model")
    assert model.classifier.init_args == {"hidden_size": 4, "max_epochs": 3, "patience": 2}
    assert (model.pipeline[-1].hidden_size, model.pipeline[-1].max_epochs, model.pipeline[-1].patience) == (4, 3, 2)
    assert json.loads((out / "config.json").read_text())["classifier"]["init_args"] == model.classifier.init_args

    monkeypatch.setattr(workflows, "load_intensities", lambda *args: pytest.fail("intensities loaded"))
    with pytest.raises(UsageError) as refused:
        train_pd("train-pd", ["--config", str(config), "--classifier.init_args.hiden_size=8", "--intensities", str(npz),
                              "--out_dir", str(tmp_path / "bad")])
    message = str(refused.value)
    assert message.startswith("--classifier: ") and "\n" not in message
    assert "'hiden_size' is not accepted" in message and "hidden_size, num_layers, dropout" in message
    assert not (tmp_path / "bad").exists()


def test_commands_repeat_the_cv_ten_times_unless_told():
    assert CVConfig().repeats == 10  # one default, the dataclass's: the commands and the library agree
    for command in ("train-pd", "ablation"):
        assert build_parser(command).parse_args([]).cv.repeats == 10
        assert build_parser(command).parse_args(["--cv.repeats", "3"]).cv.repeats == 3
    assert build_parser("train-pd").parse_args(["--wandb.learning_curves", "true"]).wandb.learning_curves is True


def test_held_out_subjects_are_never_seen_until_the_single_evaluation(tmp_path, capsys):
    data = synthetic_cohort(n_pd=16, n_hc=16, seed=2)
    npz = data.save(tmp_path / "intensities.npz")
    out = tmp_path / "run"
    train_pd("train-pd", ["--intensities", str(npz), "--out_dir", str(out), "--classifier.init_args.hidden_size", "8",
                          "--classifier.init_args.max_epochs", "10", "--cv.repeats", "1", "--stats.permutations", "0",
                          "--holdout.fraction", "0.25", "--holdout.evaluate", "true", "--plots", "false",
                          "--wandb.mode", "disabled"])
    held_out = set(pd.read_csv(out / "holdout_subjects.csv")["subject_id"])
    assert len(held_out) == 8 and not held_out & set(pd.read_csv(out / "predictions.csv")["subject_id"])
    report = json.loads((out / "holdout.json").read_text())
    assert report["n_held_out"] == 8 and report["n_development"] == 24 and set(report["held_out_subjects"]) == held_out
    low, high = report["intervals"]["accuracy"]
    assert 0 <= low <= report["metrics"]["accuracy"] <= high <= 1
    model = ScreeningModel.load(out / "screening_model")
    assert model.reference["PD"]["n"] + model.reference["HC"]["n"] == 24  # trained without the held-out subjects
    assert "held-out evaluation, once (8 subjects)" in capsys.readouterr().out
    from dfer_pd.common.errors import UsageError

    with pytest.raises(UsageError, match="--holdout: evaluate needs a held-out share"):
        train_pd("train-pd", ["--intensities", str(npz), "--out_dir", str(tmp_path / "bad"), "--holdout.evaluate", "true"])


def test_table3_never_sees_the_held_out_subjects(tmp_path):
    """Table 3 guides the choice of model: with the sweep's --holdout.* it leaves out the same subjects."""
    from dfer_pd.common.errors import UsageError

    data = synthetic_cohort(n_pd=12, n_hc=12, seed=4)
    npz = data.save(tmp_path / "intensities.npz")
    common = ["--intensities", str(npz), "--classifier.init_args.hidden_size", "4",
              "--classifier.init_args.max_epochs", "3",
              "--cv.repeats", "1", "--cv.n_splits", "3", "--holdout.fraction", "0.25", "--wandb.mode", "disabled"]
    train_pd("train-pd", [*common, "--out_dir", str(tmp_path / "train"), "--stats.permutations", "0",
                          "--plots", "false", "--save_screening_model", "false"])
    table = train_pd("ablation", [*common, "--out_dir", str(tmp_path / "table3")])
    held_out = pd.read_csv(tmp_path / "table3" / "ablation" / "holdout_subjects.csv")["subject_id"]
    assert held_out.tolist() == pd.read_csv(tmp_path / "train" / "holdout_subjects.csv")["subject_id"].tolist()
    assert len(held_out) == 6 and len(table) > 1
    for row in (tmp_path / "table3" / "ablation" / "rows").iterdir():
        scored = set(pd.read_csv(row / "predictions.csv")["subject_id"])
        assert len(scored) == 18 and not scored & set(held_out), row.name
    with pytest.raises(UsageError, match="scored once, by train-pd"):
        train_pd("ablation", [*common, "--out_dir", str(tmp_path / "bad"), "--holdout.evaluate", "true"])
