"""`dfer-pd train-pd` from saved intensities: CV outputs, the screening model, pseudonymised ids."""

import pandas as pd

from dfer_pd.stage2.features import synthetic_cohort
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
    assert model.classifier.kind == "lstm" and model.stage1 is None  # trained from a saved .npz
    assert "accuracy" in capsys.readouterr().out
