"""`dfer-pd export` and the ONNX runtimes: parity with PyTorch, the contract they run under, and the
lean scoring path (text features once, prefetching) shared by extraction and diagnose."""

import json
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'dfer-pd[onnx]') is not installed")
onnx = pytest.importorskip("onnx")

from helpers import save_stage1_checkpoint  # noqa: E402
from dfer_pd.commands.export import main as export_main  # noqa: E402
from dfer_pd.stage1.cache import CONTRACT_FILE  # noqa: E402
from dfer_pd.stage1.contract import ContractError, ScoringContract, load_stage1  # noqa: E402
from dfer_pd.stage1.datasets.dfew import DfewDataModule  # noqa: E402
from dfer_pd.stage1.export import (  # noqa: E402
    FP32_TOLERANCE,
    INT8_TOLERANCE,
    META_PROBE,
    OnnxModelError,
    OnnxProbeError,
    OnnxStage1,
    OnnxUnavailableError,
    Probe,
    onnx_path_for,
    probe_cache_file,
    read_export_info,
    require_onnx,
)
from dfer_pd.stage2.extraction import extract_intensities  # noqa: E402
from dfer_pd.stage1.scoring import ScoringDataset, Stage1Scorer, TorchStage1, prepare_clip  # noqa: E402
from dfer_pd.stage2.cohort import read_manifest  # noqa: E402
from dfer_pd.stage2.cohort_datamodule import PDCohortDataModule  # noqa: E402
from dfer_pd.synthetic.dfew import make_dfew_tree  # noqa: E402

# INT8_TOLERANCE is the export's own bound, the one its probe holds on every machine that loads the file; the
# measured errors on CPUs with and without VNNI are in docs/performance.md.


@pytest.fixture(scope="module")
def exported(tiny_stage1_checkpoint):
    """The tiny checkpoint exported once, float32 and int8, beside itself (where --runtime onnx looks)."""
    result = export_main(["--checkpoint", str(tiny_stage1_checkpoint), "--int8", "true"])
    return tiny_stage1_checkpoint, result


@pytest.fixture(scope="module")
def dfew_test_fold(tmp_path_factory):
    """Pixel values of the synthetic DFEW fold-1 test clips, prepared by the scoring path."""
    root = make_dfew_tree(tmp_path_factory.mktemp("dfew"), num_clips=40, size=48, seed=1)
    return DfewDataModule(str(root), fold=1, classes=4).split_records("test")


def _pixels(records, contract):
    return torch.stack([prepare_clip(r.path, contract).pixel_values for r in records])


def test_export_is_checked_and_records_its_checkpoint(exported):
    checkpoint, result = exported
    assert result["onnx"] == onnx_path_for(checkpoint, "onnx") and result["int8"] == onnx_path_for(checkpoint, "onnx-int8")
    for path in (result["onnx"], result["int8"]):
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    info = read_export_info(result["onnx"])
    contract = ScoringContract.from_checkpoint(checkpoint)
    assert info.checkpoint_sha256 == contract.checkpoint_sha256 and info.runtime == "onnx"
    assert read_export_info(result["int8"]).runtime == "onnx-int8"
    assert info.network.num_frames == contract.num_frames and info.network.class_names == contract.class_names
    # No text transformer in the graph: G is a constant, so the prompts' token ids are not an input.
    graph = onnx.load(str(result["onnx"])).graph
    assert [i.name for i in graph.input] == ["pixel_values"]
    assert [o.name for o in graph.output] == ["cosine", "video_features"]
    assert result["max_abs_cosine_delta"] <= FP32_TOLERANCE


def test_fp32_export_matches_pytorch_and_int8_stays_within_tolerance(exported, dfew_test_fold):
    checkpoint, result = exported
    contract = ScoringContract.from_checkpoint(checkpoint)
    pixels = _pixels(dfew_test_fold, contract)
    reference = TorchStage1(load_stage1(checkpoint).net, contract)(pixels).cosine
    fp32 = OnnxStage1(result["onnx"], contract.with_runtime("onnx"))(pixels)[0]
    int8 = OnnxStage1(result["int8"], contract.with_runtime("onnx-int8"))(pixels)[0]
    assert len(dfew_test_fold) >= 5 and fp32.shape == reference.shape == (len(dfew_test_fold), 4)
    assert np.abs(fp32 - reference).max() <= FP32_TOLERANCE
    int8_delta = np.abs(int8 - reference).max()
    assert 0 < int8_delta <= INT8_TOLERANCE  # quantised: different, but close


def _with_probe(source, destination, edit):
    """A copy of an export whose probe was changed by ``edit(Probe) -> Probe`` (its weights untouched)."""
    model = onnx.load(str(source))
    for entry in model.metadata_props:
        if entry.key == META_PROBE:
            entry.value = edit(Probe.from_text(entry.value)).to_text()
    onnx.save(model, str(destination))
    return destination


def test_each_export_carries_a_probe_that_runs_once_per_machine(exported, tmp_path, monkeypatch):
    checkpoint, result = exported
    monkeypatch.setenv("DFER_PD_CACHE_DIR", str(tmp_path / "cache"))
    contract = ScoringContract.from_checkpoint(checkpoint)
    network = load_stage1(checkpoint).net
    for path, runtime, tolerance in ((result["onnx"], "onnx", FP32_TOLERANCE), (result["int8"], "onnx-int8", INT8_TOLERANCE)):
        info = read_export_info(path)
        probe = info.probe
        assert probe.tolerance == tolerance and probe.pixels.dtype == np.uint8
        assert probe.pixels.shape[1:] == (contract.num_frames, 3, contract.image_size, contract.image_size)
        # The stored cosines are PyTorch's for the stored pixels, normalised as the contract's transform does.
        with torch.no_grad():
            cosine = network(torch.from_numpy(Probe.normalise(probe.pixels, info.network))).cosine.double().numpy()
        np.testing.assert_allclose(probe.cosine, cosine, atol=1e-6)
        session = OnnxStage1(path, contract.with_runtime(runtime))
        assert session.probe_delta <= tolerance
        cached = json.loads(probe_cache_file(info).read_text())
        assert cached["max_abs_cosine_delta"] == session.probe_delta and cached["machine"].startswith("machine: ")
    # The second load reads the result instead of running the probe again.
    calls = []
    monkeypatch.setattr("dfer_pd.stage1.export.Probe.normalise", lambda *a: calls.append(a))
    OnnxStage1(result["int8"], contract.with_runtime("onnx-int8"))
    assert calls == []


def test_an_export_whose_probe_fails_on_this_machine_is_refused_everywhere(exported, tiny_cohort, screening_setup,
                                                                          tmp_path, monkeypatch, capsys):
    """What a machine whose int8 kernels overflow sees: the probe's cosines are off by more than the tolerance."""
    from dfer_pd.cli import main as cli_main
    from dfer_pd.screening.webapp import Screener

    checkpoint, result = exported
    monkeypatch.setenv("DFER_PD_CACHE_DIR", str(tmp_path / "cache"))
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    (laptop / checkpoint.name).write_bytes(checkpoint.read_bytes())
    off = _with_probe(result["int8"], onnx_path_for(laptop / checkpoint.name, "onnx-int8"),
                      lambda p: Probe(p.pixels, p.cosine + 0.05, p.tolerance))
    contract = ScoringContract.from_checkpoint(laptop / checkpoint.name, runtime="onnx-int8")
    with pytest.raises(OnnxProbeError, match=r"int8 cosines differ from PyTorch's by 0\.0[5-7].*tolerance 0\.02.*--runtime onnx"):
        OnnxStage1(off, contract)
    # extract, diagnose and serve all open the file through OnnxStage1, so all refuse it.
    with pytest.raises(OnnxProbeError):
        extract_intensities(PDCohortDataModule(str(tiny_cohort), batch_size=3), laptop / checkpoint.name, contract,
                            tmp_path / "intensities", accelerator="cpu")
    _, model, videos = screening_setup
    with pytest.raises(OnnxProbeError):
        Screener(off, model, tmp_path / "serve")
    args = ["diagnose", "--stage1", str(off), "--screening_model", str(model), "--out", str(tmp_path / "report")]
    for expression, path in videos.items():
        args += [f"--{expression}", str(path)]
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "differ from PyTorch's by" in err and "what to do:" in err and "Traceback" not in err
    # A file whose probe passes is accepted beside it.
    OnnxStage1(result["int8"], ScoringContract.from_checkpoint(checkpoint, runtime="onnx-int8"))


def test_export_refuses_to_write_an_int8_file_beyond_its_tolerance(tiny_stage1_checkpoint, tmp_path, monkeypatch):
    import dfer_pd.stage1.export as export

    monkeypatch.setattr(export, "TOLERANCE_OF_QUANTIZATION", {"none": FP32_TOLERANCE, "dynamic-int8": 1e-9})
    out = tmp_path / "stage1.onnx"
    with pytest.raises(OnnxProbeError, match=r"stage1\.int8\.onnx: its int8 cosines differ.*not written"):
        export.export_stage1(tiny_stage1_checkpoint, out, int8=True)
    assert out.is_file() and not (tmp_path / "stage1.int8.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stage1.onnx"]  # nothing half-written


def test_text_features_are_computed_once_per_checkpoint(tiny_stage1_checkpoint, tiny_cohort, monkeypatch):
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    network = load_stage1(tiny_stage1_checkpoint).net
    calls = {"text": 0}
    original = type(network.text_encoder).forward

    def counting(self, *args, **kwargs):
        calls["text"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(network.text_encoder), "forward", counting)
    scorer = Stage1Scorer(network, contract)
    subject = read_manifest(tiny_cohort).subjects[0]
    first, _ = scorer.score_videos(list(subject.videos.values()))
    second, _ = scorer.score_videos(list(subject.videos.values()))
    assert calls["text"] == 1, "the frozen text side must run once, not per batch or per call"
    np.testing.assert_array_equal(first.cosine, second.cosine)
    with torch.no_grad():  # the full forward pass, text encoded inside, gives the same cosines
        direct = network(_pixels_of(subject, contract)).cosine.double().numpy()
    np.testing.assert_allclose(first.cosine, direct, atol=1e-6)


def _pixels_of(subject, contract):
    return torch.stack([prepare_clip(p, contract).pixel_values for p in subject.videos.values()])


def test_prefetching_dataset_returns_what_sequential_reading_does(tiny_cohort, tiny_stage1_checkpoint):
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    subjects = read_manifest(tiny_cohort).subjects[:3]
    items = [(f"{s.subject_id}/{e}", p) for s in subjects for e, p in s.videos.items()]
    dataset = ScoringDataset(items, contract)
    try:
        batches = [dataset.__getitems__(list(range(start, min(start + 5, len(items))))) for start in range(0, len(items), 5)]
    finally:
        dataset.close()
    fetched = [item for batch in batches for item in batch]
    assert [item["key"] for item in fetched] == [key for key, _ in items]
    for item, (key, path) in zip(fetched, items):
        assert torch.equal(item["pixel_values"], prepare_clip(path, contract).pixel_values), key


def test_extraction_batches_go_through_the_prefetching_path(tiny_cohort, tiny_stage1_checkpoint, monkeypatch):
    requested = []
    original = ScoringDataset.prepared

    def recording(self, indices):
        requested.append(list(indices))
        return original(self, indices)

    monkeypatch.setattr(ScoringDataset, "prepared", recording)
    datamodule = PDCohortDataModule(str(tiny_cohort), batch_size=3)
    datamodule.set_videos_to_score([(str(i), s.videos["anger"]) for i, s in enumerate(datamodule.cohort.subjects[:5])],
                                   ScoringContract.from_checkpoint(tiny_stage1_checkpoint))
    keys = [key for batch in datamodule.predict_dataloader() for key in batch["key"]]
    assert keys == ["0", "1", "2", "3", "4"] and requested == [[0, 1, 2], [3, 4]]


def test_prefetch_guesses_the_next_request_from_its_stride(tiny_stage1_checkpoint):
    contract = ScoringContract.from_checkpoint(tiny_stage1_checkpoint)
    dataset = ScoringDataset([(str(i), f"v{i}.mp4") for i in range(20)], contract)
    assert dataset._expected_next([0, 1, 2, 3]) == [4, 5, 6, 7]  # sequential batches
    assert dataset._expected_next([0, 2, 4, 6]) == [8, 10, 12, 14]  # one DDP rank of two
    assert dataset._expected_next([16, 17, 18, 19]) == []  # the last batch
    assert ScoringDataset([(str(i), "v.mp4") for i in range(4)], contract, prefetch=3)._expected_next([0]) == [1, 2, 3]
    assert ScoringDataset([], contract, prefetch=0)._expected_next([0]) == []


def test_onnx_extraction_names_its_runtime_and_agrees_with_torch(exported, tiny_cohort, tmp_path):
    checkpoint, _ = exported
    cache = tmp_path / "cache"
    results = {}
    for runtime in ("torch", "onnx", "onnx-int8"):
        contract = ScoringContract.from_checkpoint(checkpoint, runtime=runtime)
        results[runtime], report = extract_intensities(PDCohortDataModule(str(tiny_cohort), batch_size=3), checkpoint,
                                                       contract, cache, accelerator="cpu")
        assert report.scored == 40 and results[runtime].contract.runtime == runtime
        assert json.loads((report.cache_folder / CONTRACT_FILE).read_text())["runtime"] == runtime
    assert len({p.name for p in cache.iterdir()}) == 3, "each runtime has its own cache folder"
    assert np.abs(results["onnx"].cosine - results["torch"].cosine).max() <= FP32_TOLERANCE
    assert np.abs(results["onnx-int8"].cosine - results["torch"].cosine).max() <= INT8_TOLERANCE
    with pytest.raises(ValueError, match="CPU provider"):
        extract_intensities(PDCohortDataModule(str(tiny_cohort)), checkpoint,
                            ScoringContract.from_checkpoint(checkpoint, runtime="onnx"), tmp_path / "c2", accelerator="gpu")


def test_runtime_is_in_the_contract_and_mismatched_exports_are_refused(exported, tmp_path):
    checkpoint, result = exported
    torch_contract = ScoringContract.from_checkpoint(checkpoint)
    onnx_contract = torch_contract.with_runtime("onnx")
    assert onnx_contract.key() != torch_contract.key() != onnx_contract.with_runtime("onnx-int8").key()
    assert ScoringContract.from_json(onnx_contract.to_json()) == onnx_contract
    assert "runtime onnx" in onnx_contract.describe()
    with pytest.raises(ContractError, match="float32 ONNX export.*bf16-mixed"):
        ScoringContract.from_checkpoint(checkpoint, precision="bf16-mixed").with_runtime("onnx", "model")
    with pytest.raises(ContractError, match="runtime must be one of"):
        torch_contract.with_runtime("tensorrt")
    # An export of another checkpoint, or of the other quantisation, is refused by name.
    other = ScoringContract.from_checkpoint(save_stage1_checkpoint(tmp_path / "other.ckpt", seed=7), runtime="onnx")
    with pytest.raises(ContractError, match="exported from stage-1 checkpoint"):
        OnnxStage1(result["onnx"], other)
    with pytest.raises(ContractError, match="onnx-int8 export"):
        OnnxStage1(result["int8"], onnx_contract)
    with pytest.raises(OnnxModelError, match="dfer-pd export"):
        Stage1Scorer.from_checkpoint(tmp_path / "other.ckpt", other)
    with pytest.raises(ContractError, match="is an ONNX export"):
        Stage1Scorer.from_checkpoint(result["onnx"], torch_contract)
    not_ours = tmp_path / "plain.onnx"
    onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), str(not_ours))
    with pytest.raises(OnnxModelError, match="not a dfer-pd stage-1 export"):
        read_export_info(not_ours)


def test_diagnose_with_the_onnx_runtime_agrees_with_torch(exported, tiny_cohort, tmp_path):
    from dfer_pd.screening.diagnose import diagnose
    from dfer_pd.stage2.settings import ClassifierConfig
    from dfer_pd.stage2.screening_model import fit_screening_model
    from dfer_pd.stage2.runtime import running_on
    from dfer_pd.stage2.settings import CPU, CVConfig

    checkpoint, result = exported
    data, _ = extract_intensities(PDCohortDataModule(str(tiny_cohort), batch_size=4), checkpoint,
                                  ScoringContract.from_checkpoint(checkpoint), tmp_path / "cache", accelerator="cpu")
    with running_on(CPU):
        model = fit_screening_model(data, ClassifierConfig(name="lstm", init_args={"hidden_size": 8, "max_epochs": 20}),
                                    CVConfig())
    subject = read_manifest(tiny_cohort).subjects[0]
    torch_result = diagnose(subject.videos, checkpoint, model)
    by_runtime = diagnose(subject.videos, checkpoint, model, runtime="onnx")
    deployed = tmp_path / "laptop" / "stage1.int8.onnx"  # the export alone: no .ckpt, no CLIP folder beside it
    deployed.parent.mkdir()
    deployed.write_bytes(result["int8"].read_bytes())
    by_file = diagnose(subject.videos, deployed, model)  # its runtime read from the file
    assert torch_result.contract.runtime == "torch" and by_runtime.contract.runtime == "onnx"
    assert by_file.contract.runtime == "onnx-int8"
    assert by_runtime.contract.with_runtime("torch") == torch_result.contract == model.contract
    assert np.abs(by_runtime.cosine - torch_result.cosine).max() <= FP32_TOLERANCE
    assert np.abs(by_file.cosine - torch_result.cosine).max() <= INT8_TOLERANCE
    assert abs(by_runtime.p_pd - torch_result.p_pd) < 1e-3


def test_a_missing_extra_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # None in sys.modules makes the import fail
    require_onnx()  # the runtime does not need the exporter
    with pytest.raises(OnnxUnavailableError, match=r"onnxscript: pip install 'dfer-pd\[onnx\]'"):
        require_onnx("dfer-pd export", exporter=True)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(OnnxUnavailableError, match="needs onnx, onnxruntime"):
        require_onnx()


def test_web_page_loads_stage1_once_and_screens_on_the_onnx_runtime(exported, screening_setup, tmp_path, monkeypatch):
    from dfer_pd.screening.webapp import Screener

    checkpoint, model, videos = screening_setup
    assert checkpoint == exported[0]
    by_torch = Screener(checkpoint, model, tmp_path / "torch")
    by_onnx = Screener(checkpoint, model, tmp_path / "onnx", runtime="onnx")
    assert by_onnx.scorer.contract.runtime == "onnx" and by_torch.scorer.contract.runtime == "torch"

    def no_reload(*args, **kwargs):
        raise AssertionError("stage 1 was loaded again for a screening")

    monkeypatch.setattr(Stage1Scorer, "for_contract", no_reload)
    monkeypatch.setattr(Stage1Scorer, "from_checkpoint", no_reload)
    torch_screening, onnx_screening = by_torch.screen(videos), by_onnx.screen(videos)
    assert onnx_screening.verdict == torch_screening.verdict
    assert abs(onnx_screening.p_pd - torch_screening.p_pd) < 1e-3
    assert json.loads(onnx_screening.files["json"].read_text())["scoring_contract"]["runtime"] == "onnx"
