"""`dfer-pd train-pd` from saved intensities: CV outputs, the screening model, pseudonymised ids."""

import pandas as pd
import pytest

from dfer_pd.synthetic.intensities import synthetic_cohort
from dfer_pd.stage2.screening_model import ScreeningModel
from dfer_pd.commands.train_pd import main as train_pd


def test_train_pd_outputs_and_pseudonyms(tmp_path, capsys):
    data = synthetic_cohort(n_pd=12, n_hc=12, seed=4)
    npz = data.save(tmp_path / "intensities.npz")
    out = tmp_path / "run"
    summary = train_pd("train-pd", ["--intensities", str(npz), "--out_dir", str(out), "--cohort.pseudonymise_ids", "true",
                                    "--classifier.hidden_size", "8", "--classifier.max_epochs", "10", "--cv.accelerator", "cpu",
                                    "--wandb.mode", "disabled"])
    assert 0.0 <= summary["cv/accuracy_mean"] <= 1.0 and "cv/f1_weighted_std" in summary
    predictions = pd.read_csv(out / "predictions.csv")
    key = pd.read_csv(out / "pseudonyms.csv")
    assert sorted(key["subject_id"]) == sorted(data.subject_ids)
    assert set(predictions["subject_id"]) == set(key["pseudonym"])
    assert not set(predictions["subject_id"]) & set(data.subject_ids), "no real subject id in the outputs"
    for name in ("metrics.json", "folds.csv", "roc.png", "confusion_matrix.png", "intensity_boxplots.png"):
        assert (out / name).is_file(), name
    model = ScreeningModel.load(out / "screening_model")
    assert model.classifier.kind == "lstm" and model.contract is None  # trained from a synthetic .npz: no checkpoint
    assert "accuracy" in capsys.readouterr().out


def test_train_pd_with_a_baseline_says_why_no_screening_model(tmp_path, capsys):
    npz = synthetic_cohort(n_pd=10, n_hc=10, seed=4).save(tmp_path / "intensities.npz")
    out = tmp_path / "run"
    summary = train_pd("train-pd", ["--intensities", str(npz), "--out_dir", str(out), "--classifier.kind", "rf",
                                    "--classifier.sklearn_params", '{"n_estimators": 5}', "--plots", "false",
                                    "--wandb.mode", "disabled"])
    assert 0.0 <= summary["cv/accuracy_mean"] <= 1.0 and (out / "predictions.csv").is_file()
    assert not (out / "screening_model").exists()
    assert "no screening model saved: a screening model is saved without pickle" in capsys.readouterr().out
    with pytest.raises(SystemExit, match=r"^error: kind must be one of \('lstm', 'gru', 'dt', 'bc', 'rf', 'svm'\)"):
        train_pd("train-pd", ["--intensities", str(npz), "--out_dir", str(tmp_path / "bad"), "--classifier.kind", "xgb"])
    assert not (tmp_path / "bad").exists()  # refused before anything ran
