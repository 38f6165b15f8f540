"""The scoring contract: derived once from a checkpoint and the preprocessing, then carried and checked."""

import json

import numpy as np
import pytest

from helpers import save_stage1_checkpoint
from dfer_pd.faces.settings import FaceCropSettings
from dfer_pd.stage1.contract import CheckpointError, ContractError, ScoringContract, read_network_config
from dfer_pd.stage1.scoring import expression_cosines

SEVEN = ("neutral", "happiness", "surprise", "anger", "sadness", "disgust", "fear")


def test_contract_reads_the_checkpoint_settings_without_building_the_network(tiny_stage1_checkpoint):
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    network = read_network_config(tiny_stage1_checkpoint)
    assert (contract.num_frames, contract.tau, contract.image_size) == (4, 0.01, 48) == (
        network.num_frames, network.tau, network.image_size)
    assert contract.image_mean == network.image_mean and len(contract.checkpoint_sha256) == 64
    assert contract.sampler == "segment-centre" and contract.precision == "32-true" and not contract.face.crop_faces
    assert ScoringContract.from_json(contract.to_json()) == contract
    assert json.loads(contract.to_json())["face"]["crop_faces"] is False


def test_key_changes_with_anything_that_changes_scores(tiny_stage1_checkpoint, tmp_path):
    base = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    cropped = ScoringContract.from_checkpoint(tiny_stage1_checkpoint, FaceCropSettings(crop_faces=True))
    wider = ScoringContract.from_checkpoint(tiny_stage1_checkpoint, FaceCropSettings(crop_faces=True, margin=1.5))
    bf16 = ScoringContract.from_checkpoint(tiny_stage1_checkpoint, precision="bf16-mixed")
    other = ScoringContract.from_checkpoint(save_stage1_checkpoint(tmp_path / "o.ckpt", seed=9))
    keys = {c.key() for c in (base, cropped, wider, bf16, other)}
    assert len(keys) == 5
    # Face options change nothing when faces are not cropped: same contract, same cache folder.
    assert ScoringContract.from_checkpoint(tiny_stage1_checkpoint, FaceCropSettings(margin=2.0)) == base
    with pytest.raises(ContractError, match="precision"):
        ScoringContract.from_checkpoint(tiny_stage1_checkpoint, precision="int3")


def test_overrides_that_conflict_are_refused_naming_both_values(tiny_stage1_checkpoint):
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)  # no face cropping
    assert contract.with_overrides("model", crop_faces=False, precision=None) == contract
    assert contract.with_overrides("model", face_detector="dlib") == contract  # irrelevant without cropping
    with pytest.raises(ContractError) as error:
        contract.with_overrides("runs/pd/screening_model", crop_faces=True, precision="bf16-mixed")
    message = str(error.value)
    assert "--crop_faces true" in message and "has false" in message
    assert "--precision bf16-mixed" in message and "has 32-true" in message
    assert "runs/pd/screening_model" in message and "Leave these flags out" in message


def test_other_checkpoint_is_refused(tiny_stage1_checkpoint, tmp_path):
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    contract.check_checkpoint(tiny_stage1_checkpoint)
    with pytest.raises(ContractError, match="not the stage-1 checkpoint of this scoring contract"):
        contract.check_checkpoint(save_stage1_checkpoint(tmp_path / "other.ckpt", seed=4))


def test_stage2_takes_its_four_expressions_by_name(tmp_path):
    seven = ScoringContract.from_checkpoint(save_stage1_checkpoint(tmp_path / "seven.ckpt", class_names=SEVEN[::-1]))
    cosine = np.arange(7.0)[None].repeat(2, axis=0)  # column k holds k
    picked = expression_cosines(cosine, seven)
    assert picked.shape == (2, 4)
    assert picked[0].tolist() == [float(SEVEN[::-1].index(e)) for e in SEVEN[:4]]
    no_anger = ScoringContract.from_checkpoint(
        save_stage1_checkpoint(tmp_path / "no_anger.ckpt", class_names=("neutral", "happiness", "surprise", "sadness")))
    with pytest.raises(ContractError, match=r"lack \['anger'\]"):
        no_anger.expression_columns()


def test_foreign_or_corrupt_checkpoints_are_named(tmp_path):
    corrupt = tmp_path / "bad.ckpt"
    corrupt.write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="bad.ckpt is not a readable checkpoint") as raised:
        ScoringContract.from_checkpoint(corrupt)
    message = str(raised.value)  # one plain line, none of the unpickler's internal text or its weights_only advice
    assert "\n" not in message and "Unpickler" not in message and "weights_only" not in message
    with pytest.raises(CheckpointError, match="does not exist"):
        ScoringContract.from_checkpoint(tmp_path / "missing.ckpt")


def test_bf16_scoring_on_a_cpu_that_emulates_it_warns(tiny_stage1_checkpoint, monkeypatch):
    import warnings

    import torch

    from dfer_pd.stage1 import contract as contract_module
    from dfer_pd.stage1.contract import SlowPrecisionWarning, check_precision, load_stage1
    from dfer_pd.stage1.scoring import score_clips

    monkeypatch.setattr(contract_module, "native_bf16", lambda: False)
    with pytest.warns(SlowPrecisionWarning, match="bf16-mixed on this CPU .* emulated"):
        check_precision("bf16-mixed", "cpu")
    network = load_stage1(tiny_stage1_checkpoint).net
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint, precision="bf16-mixed")
    pixels = torch.zeros(1, contract.num_frames, 3, contract.image_size, contract.image_size)
    with pytest.warns(SlowPrecisionWarning):
        score_clips(network, pixels, contract)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_precision("bf16-mixed", "cuda")  # a GPU runs bf16 natively
        check_precision("32-true", "cpu")
        monkeypatch.setattr(contract_module, "native_bf16", lambda: True)
        check_precision("bf16-mixed", "cpu")  # AVX512-BF16 or AMX


def test_version_1_contracts_are_read_in_float32_and_refused_in_half_precision(tiny_stage1_checkpoint):
    """Version 2 computes the cosines in float32 whatever the precision: 32-true scores are unchanged, half ones not."""
    fp32 = ScoringContract.from_checkpoint(tiny_stage1_checkpoint).to_dict()
    assert fp32["version"] == 2
    old = ScoringContract.from_dict({**fp32, "version": 1})
    assert old.version == 1 and old.key() != ScoringContract.from_dict(fp32).key()  # its own cache folder
    bf16 = ScoringContract.from_checkpoint(tiny_stage1_checkpoint, precision="bf16-mixed").to_dict()
    with pytest.raises(ContractError, match="version 1 in bf16-mixed: its cosines were rounded to half precision"):
        ScoringContract.from_dict({**bf16, "version": 1})
    with pytest.raises(ContractError, match="version 3"):
        ScoringContract.from_dict({**fp32, "version": 3})
