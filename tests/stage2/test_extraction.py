"""The intensity cache between the stages: reused, invalidated by content, resumable, atomic."""

import shutil

import numpy as np
import pytest
import torch

from helpers import save_stage1_checkpoint
from dfer_pd.common.files import atomic_save_npz
from dfer_pd.common.video import read_clip
from dfer_pd.stage1.cache import IntensityCache, IntensityCacheWriter
from dfer_pd.stage1.contract import CheckpointError, ContractError, ScoringContract, load_stage1
from dfer_pd.stage2.extraction import extract_intensities
from dfer_pd.stage1.scoring import Stage1Scorer, prepare_clip
from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule
from dfer_pd.stage2.features import CohortIntensities
from dfer_pd.synthetic.encode import encode_mp4


@pytest.fixture
def count_forward(monkeypatch):
    """Counts videos that go through the stage-1 network."""
    calls = {"videos": 0}
    original = Stage1Scorer.predict_step

    def counting(self, batch, batch_idx):
        calls["videos"] += len(batch["key"])
        return original(self, batch, batch_idx)

    monkeypatch.setattr(Stage1Scorer, "predict_step", counting)
    return calls


def extract(manifest, checkpoint, cache_dir, batch_size=4):
    dm = PDCohortDataModule(str(manifest), batch_size=batch_size)
    return extract_intensities(dm, checkpoint, ScoringContract.from_checkpoint(checkpoint), cache_dir, accelerator="cpu")


def test_second_run_uses_cache_without_forward_pass(tiny_cohort, tiny_stage1_checkpoint, tmp_path, count_forward):
    data, report = extract(tiny_cohort, tiny_stage1_checkpoint, tmp_path / "cache")
    assert count_forward["videos"] == 40 and report.scored == 40 and report.cached == 0
    assert data.cosine.shape == (10, 4, 4) and data.cosine.dtype == np.float64
    assert np.all(np.abs(data.cosine) <= 1.0 + 1e-6)
    assert data.tau == pytest.approx(0.01)
    assert data.video_features.shape[:2] == (10, 4)
    again, report2 = extract(tiny_cohort, tiny_stage1_checkpoint, tmp_path / "cache")
    assert count_forward["videos"] == 40, "the second run must not run the network"
    assert report2.cached == 40 and report2.scored == 0
    np.testing.assert_array_equal(again.cosine, data.cosine)
    # The intensities carry the contract they were scored under, through a save and a load.
    assert data.contract == ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    assert CohortIntensities.load(data.save(tmp_path / "i.npz")).contract == data.contract
    # Cached scores equal a direct forward pass through the checkpoint.
    module = load_stage1(tiny_stage1_checkpoint).eval()
    subject = PDCohortDataModule(str(tiny_cohort)).cohort.subjects[0]
    pixels = prepare_clip(subject.videos["happiness"], data.contract).pixel_values[None]
    with torch.no_grad():
        direct = module(pixels).cosine.double().numpy()[0]
    np.testing.assert_allclose(data.cosine[0, 1], direct, atol=1e-5)


def test_changed_checkpoint_or_video_is_rescored(tiny_cohort, tmp_path, count_forward):
    cohort = tmp_path / "cohort"
    shutil.copytree(tiny_cohort.parent, cohort)
    manifest = cohort / tiny_cohort.name
    ckpt = save_stage1_checkpoint(tmp_path / "a.ckpt", seed=0)
    extract(manifest, ckpt, tmp_path / "cache")
    assert count_forward["videos"] == 40
    # One video's bytes change: only that video is scored again.
    video = next(cohort.glob("S001/*.mp4"))
    frames = read_clip(video, 8)[0][:, :, ::-1]  # the same face, mirrored: other bytes, still a usable video
    encode_mp4(video, np.ascontiguousarray(frames), fps=5)
    _, report = extract(manifest, ckpt, tmp_path / "cache")
    assert report.scored == 1 and count_forward["videos"] == 41
    # A different checkpoint (other weights) re-scores everything.
    other = save_stage1_checkpoint(tmp_path / "b.ckpt", seed=1)
    _, report = extract(manifest, other, tmp_path / "cache")
    assert report.scored == 40


def test_interrupted_extraction_resumes(tiny_cohort, tiny_stage1_checkpoint, tmp_path, monkeypatch, count_forward):
    original = IntensityCacheWriter.write_on_batch_end
    state = {"batches": 0}

    def crash_after_two_batches(self, *args, **kwargs):
        if state["batches"] == 2:
            raise RuntimeError("simulated crash")
        state["batches"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(IntensityCacheWriter, "write_on_batch_end", crash_after_two_batches)
    with pytest.raises(RuntimeError, match="simulated crash"):
        extract(tiny_cohort, tiny_stage1_checkpoint, tmp_path / "cache", batch_size=4)
    written = list((tmp_path / "cache").rglob("*.npz"))
    assert len(written) == 8
    assert not list((tmp_path / "cache").rglob("*.tmp")), "no half-written files are left"
    monkeypatch.setattr(IntensityCacheWriter, "write_on_batch_end", original)
    before = count_forward["videos"]
    _, report = extract(tiny_cohort, tiny_stage1_checkpoint, tmp_path / "cache")
    assert report.cached == 8 and report.scored == 32
    assert count_forward["videos"] - before == 32


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    class Boom:
        def __array__(self, *args, **kwargs):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_save_npz(tmp_path / "x.npz", a=Boom())
    assert list(tmp_path.iterdir()) == []


def test_bad_checkpoints_are_named(tmp_path):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt.ckpt is not a readable checkpoint"):
        load_stage1(corrupt)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_stage1(tmp_path / "missing.ckpt")
    # A checkpoint whose weights come from another configuration (more context vectors than its hparams say).
    other_config = save_stage1_checkpoint(tmp_path / "other_config.ckpt", num_context=3)
    checkpoint = torch.load(other_config, weights_only=True)
    checkpoint["hyper_parameters"]["network"]["num_context"] = 2
    torch.save(checkpoint, other_config)
    with pytest.raises(CheckpointError, match="other_config.ckpt"):
        load_stage1(other_config)
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "hyper_parameters": {"clip_name_or_path": "builtin:tiny-clip", "random_init": True}}, foreign)
    with pytest.raises(CheckpointError, match="foreign.ckpt"):
        load_stage1(foreign)


def test_cache_files_carry_their_contract(tiny_cohort, tiny_stage1_checkpoint, tmp_path):
    _, report = extract(tiny_cohort, tiny_stage1_checkpoint, tmp_path / "cache")
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    assert report.cache_folder.name == contract.key()
    assert ScoringContract.from_json((report.cache_folder / "contract.json").read_text()) == contract
    entry = next(report.cache_folder.glob("*.npz"))
    with np.load(entry) as stored:
        assert str(stored["contract_key"]) == contract.key() and "tau" not in stored.files
    # A file moved into the folder of another contract (here: bf16 scoring) is refused, not used.
    bf16 = IntensityCache(tmp_path / "cache", ScoringContract.from_checkpoint(tiny_stage1_checkpoint, precision="bf16-mixed"))
    shutil.copy(entry, bf16.path(entry.stem))
    with pytest.raises(ContractError, match="another contract"):
        bf16.read(entry.stem)


def test_one_recording_under_two_names_is_a_manifest_error_before_any_scoring(tiny_cohort, tiny_stage1_checkpoint,
                                                                             tmp_path, count_forward):
    from dfer_pd.stage2.cohort import ManifestError

    cohort = tmp_path / "cohort"
    shutil.copytree(tiny_cohort.parent, cohort)
    manifest = cohort / tiny_cohort.name
    rows = manifest.read_text().splitlines()
    line, row = next((n, r) for n, r in enumerate(rows[1:], start=2) if ",anger," in r)
    anger = cohort / row.split(",")[3]
    happiness = anger.with_name(anger.name.replace("anger", "happiness"))
    shutil.copy(happiness, anger)  # a copy of the happiness video saved as the anger one
    with pytest.raises(ManifestError, match=rf"line {line}: subject '\w+''s 'anger' video is the same recording as its "
                                            r"'happiness' video \(line \d+, identical content\)"):
        extract(manifest, tiny_stage1_checkpoint, tmp_path / "cache")
    assert count_forward["videos"] == 0


def test_manifest_and_video_problems_come_in_one_list(tiny_cohort, tiny_stage1_checkpoint, tmp_path, count_forward):
    """A user fixes everything in one round: a wrong label and an unreadable video are named together."""
    from dfer_pd.stage2.cohort import ManifestError

    cohort = tmp_path / "cohort"
    shutil.copytree(tiny_cohort.parent, cohort)
    manifest = cohort / tiny_cohort.name
    rows = manifest.read_text().splitlines()
    rows[1] = rows[1].replace(",PD,", ",PDX,").replace(",HC,", ",HCX,")  # line 2: a label that does not exist
    manifest.write_text("\n".join(rows) + "\n")
    last = rows[-1].split(",")  # the last subject's last video becomes a text file
    (cohort / last[3]).write_text("not a video")
    datamodule = PDCohortDataModule(str(manifest), batch_size=4, lenient_manifest=True)
    with pytest.raises(ManifestError) as caught:
        extract_intensities(datamodule, tiny_stage1_checkpoint, ScoringContract.from_checkpoint(tiny_stage1_checkpoint),
                            tmp_path / "cache", accelerator="cpu")
    assert len(caught.value.problems) == 2
    assert "line 2" in caught.value.problems[0] and "label" in caught.value.problems[0]
    assert f"manifest line {len(rows)}" in caught.value.problems[1] and "not a readable video" in caught.value.problems[1]
    assert count_forward["videos"] == 0
    with pytest.raises(ManifestError, match="line 2"):  # read strictly, the manifest alone stops it
        PDCohortDataModule(str(manifest))
