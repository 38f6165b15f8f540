"""Test defaults: CPU only, nothing reaches the network, outputs under tmp_path."""

import os
import tempfile

os.environ.setdefault("WANDB_MODE", "disabled")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["CUDA_VISIBLE_DEVICES"] = ""
# One torch (OpenMP) thread per process: `make test` runs the tests in one process per CPU (pytest-xdist), and
# two threads per process on 2 cores wait for each other at every small operation (the suite ran 2x slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Help texts and ONNX probe results go to a cache of the test session's own, never the user's.
os.environ.setdefault("DFER_PD_CACHE_DIR", tempfile.mkdtemp(prefix="dfer_pd_test_cache_"))

import pytest  # noqa: E402

from helpers import save_stage1_checkpoint  # noqa: E402


@pytest.fixture(autouse=True)
def _offline_wandb(monkeypatch):
    """Every test runs with W&B disabled unless it sets the mode itself."""
    monkeypatch.setenv("WANDB_MODE", os.environ.get("WANDB_MODE", "disabled"))
    yield


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory):
    """A 10-subject synthetic cohort (short 32 px videos), written once per test session."""
    from dfer_pd.synthetic.cohort import make_pd_cohort

    root = tmp_path_factory.mktemp("cohort")
    return make_pd_cohort(root, num_subjects=10, fps=5, seconds=1.6, size=32, seed=3)


@pytest.fixture(scope="session")
def tiny_stage1_checkpoint(tmp_path_factory):
    return save_stage1_checkpoint(tmp_path_factory.mktemp("stage1") / "best.ckpt")


@pytest.fixture(scope="session")
def screening_setup(tiny_cohort, tiny_stage1_checkpoint, tmp_path_factory):
    """A stage-1 checkpoint, a screening model trained on the tiny cohort scored with it, and one subject's
    four videos: what `dfer-pd diagnose` and `dfer-pd serve` need (CLI error and browser tests)."""
    from dfer_pd.stage1.contract import ScoringContract
    from dfer_pd.stage2.extraction import extract_intensities
    from dfer_pd.stage2.settings import ClassifierConfig
    from dfer_pd.stage2.cohort import read_manifest
    from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule
    from dfer_pd.stage2.screening_model import fit_screening_model
    from dfer_pd.stage2.runtime import running_on
    from dfer_pd.stage2.settings import CPU, CVConfig

    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    data, _ = extract_intensities(PDCohortDataModule(str(tiny_cohort), batch_size=4), tiny_stage1_checkpoint, contract,
                                  tmp_path_factory.mktemp("screening_cache"), accelerator="cpu")
    with running_on(CPU):
        model = fit_screening_model(data, ClassifierConfig(init_args={"hidden_size": 8, "max_epochs": 5}), CVConfig())
    folder = model.save(tmp_path_factory.mktemp("screening") / "model")
    subject = read_manifest(tiny_cohort).subjects[0]
    return tiny_stage1_checkpoint, folder, subject.videos
