"""Stage-1 network: tiny CLIP saved with save_pretrained and loaded back through from_pretrained."""

import math

import numpy as np
import pytest
import torch

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.stage1.clip_assets import (
    BUILTIN_TINY_CLIP,
    TINY_CLIP_DIR,
    ClipCheckpointError,
    load_clip,
    load_image_normalisation,
    load_tokenizer,
    resolve_clip_path,
    save_tiny_clip,
)
from dfer_pd.stage1.modeling_dfer_clip import (
    DEFAULT_PHRASES,
    DferClip,
    DferClipConfig,
    FrameGate,
    intensities_from_cosine,
)

FRAMES = 4


@pytest.fixture(scope="module")
def tiny_clip_dir(tmp_path_factory):
    return save_tiny_clip(tmp_path_factory.mktemp("tiny_clip"), seed=0)


@pytest.fixture(scope="module")
def model(tiny_clip_dir):
    return DferClip(DferClipConfig(str(tiny_clip_dir), num_frames=FRAMES, temporal_mlp_dim=128))


def _clips(batch: int = 2, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, FRAMES, 3, 48, 48, generator=generator)


def _text_features(clip, input_ids: torch.Tensor) -> torch.Tensor:
    """get_text_features returns a tensor in transformers 4.x and an output object in 5.x."""
    features = clip.get_text_features(input_ids=input_ids)
    return features if isinstance(features, torch.Tensor) else features.pooler_output


# ---- assets -------------------------------------------------------------------------------------


def test_packaged_tokenizer_is_openai_clips():
    tokenizer = load_tokenizer(BUILTIN_TINY_CLIP)
    assert len(tokenizer) == 49408
    assert tokenizer("a smiling face")["input_ids"] == [49406, 320, 9200, 1710, 49407]
    assert tokenizer.eos_token_id == tokenizer.pad_token_id == 49407


def test_builtin_tiny_clip_resolves_and_random_init_is_seeded():
    assert resolve_clip_path(BUILTIN_TINY_CLIP) == str(TINY_CLIP_DIR)
    assert (TINY_CLIP_DIR / "config.json").is_file()
    assert resolve_clip_path("openai/clip-vit-base-patch32") == "openai/clip-vit-base-patch32"
    rng_before = torch.get_rng_state()
    first = load_clip(BUILTIN_TINY_CLIP, random_init=True, seed=3).state_dict()
    again = load_clip(BUILTIN_TINY_CLIP, random_init=True, seed=3).state_dict()
    other = load_clip(BUILTIN_TINY_CLIP, random_init=True, seed=4).state_dict()
    assert torch.equal(torch.get_rng_state(), rng_before), "seeding must not disturb the global RNG"
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not torch.equal(first["text_model.embeddings.token_embedding.weight"],
                           other["text_model.embeddings.token_embedding.weight"])


def test_saved_tiny_clip_loads_through_from_pretrained(tiny_clip_dir):
    loaded = load_clip(tiny_clip_dir).state_dict()
    built = load_clip(BUILTIN_TINY_CLIP, random_init=True, seed=0).state_dict()
    assert loaded.keys() == built.keys()
    assert all(torch.equal(loaded[k], built[k]) for k in loaded)
    mean, std, size = load_image_normalisation(tiny_clip_dir)
    assert size == 48
    assert mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    assert std == pytest.approx((0.26862954, 0.26130258, 0.27577711))
    assert load_tokenizer(tiny_clip_dir)("a smiling face")["input_ids"][1:4] == [320, 9200, 1710]


def test_image_normalisation_falls_back_to_clip_defaults(tmp_path):
    load_clip(BUILTIN_TINY_CLIP, random_init=True).config.save_pretrained(tmp_path)  # config only
    mean, std, size = load_image_normalisation(tmp_path)
    assert size == 48
    assert mean == pytest.approx((0.48145466, 0.4578275, 0.40821073))


@pytest.mark.parametrize("name", ["/no/such/clip_folder", "./missing_clip"])
def test_missing_local_folder_is_named(name):
    with pytest.raises(ClipCheckpointError, match="no such folder"):
        load_clip(name)


def test_unreachable_hub_id_says_to_pass_a_local_folder():
    with pytest.raises(ClipCheckpointError, match="local folder"):
        load_clip("no-such-org/no-such-clip")


def test_folder_without_checkpoint_is_named(tmp_path):
    with pytest.raises(ClipCheckpointError, match=str(tmp_path)):
        load_clip(tmp_path)


# ---- network ------------------------------------------------------------------------------------


def test_forward_shapes_and_scales(model):
    out = model(_clips(batch=3))
    assert out.cosine.shape == out.logits.shape == (3, len(EXPRESSIONS))
    assert out.cosine.dtype == out.logits.dtype == torch.float32
    assert out.video_features.shape == (3, model.embed_dim)
    assert out.text_features.shape == (len(EXPRESSIONS), model.embed_dim)
    torch.testing.assert_close(out.video_features.norm(dim=-1), torch.ones(3))
    torch.testing.assert_close(out.logits, out.cosine / 0.01)
    assert bool((out.cosine.abs() <= 1 + 1e-6).all())


def test_training_step_reaches_trainable_parts_and_leaves_text_frozen(tiny_clip_dir):
    model = DferClip(DferClipConfig(str(tiny_clip_dir), num_frames=FRAMES, temporal_mlp_dim=128))
    text_before = {k: v.clone() for k, v in model.text_encoder.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    trainable_before = [p.detach().clone() for p in trainable]
    optimizer = torch.optim.SGD(trainable, lr=0.1, momentum=0.9)

    for step in range(2):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(_clips(seed=step)).logits, torch.tensor([1, 3]))
        loss.backward()
        optimizer.step()

    def has_grad(module):
        return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())

    for part in (model.vision_model, model.visual_projection, model.frame_gate, model.temporal, model.prompt_learner):
        assert has_grad(part), type(part).__name__
    assert model.prompt_learner.context.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in model.text_encoder.parameters())
    text_after = model.text_encoder.state_dict()
    assert all(torch.equal(text_before[k], text_after[k]) for k in text_before)
    assert all(not torch.equal(a, b) for a, b in zip(trainable_before, trainable))


def test_param_groups_are_disjoint_and_cover_every_trainable_parameter(model):
    groups = model.param_groups()
    assert set(groups) == {"image_encoder", "temporal", "prompt"}
    ids = [id(p) for params in groups.values() for p in params]
    assert len(ids) == len(set(ids))
    assert set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert [id(p) for p in groups["prompt"]] == [id(model.prompt_learner.context)]


def test_without_gate_frame_features_go_straight_to_the_temporal_model(tiny_clip_dir):
    model = DferClip(DferClipConfig(str(tiny_clip_dir), num_frames=FRAMES, temporal_mlp_dim=128, use_gate=False)).eval()
    assert not any("frame_gate" in name for name, _ in model.named_parameters())
    clips = _clips()
    with torch.no_grad():
        frames = model.encode_frames(clips.flatten(0, 1)).view(2, FRAMES, -1)
        expected = torch.nn.functional.normalize(model.temporal(frames), dim=-1)
        torch.testing.assert_close(model(clips).video_features, expected)


def test_frame_gate_only_attenuates():
    gate = FrameGate(dim=16, heads=4)
    frames = torch.randn(2, 5, 16)
    gated = gate(frames)
    assert gated.shape == frames.shape
    assert bool((gated.abs() <= frames.abs()).all()) and bool((gated * frames >= 0).all())


@pytest.mark.parametrize("text", ["a smiling face", DEFAULT_PHRASES["anger"], "brows raised!"])
def test_text_path_matches_clip_text_features(model, tiny_clip_dir, text):
    clip = load_clip(tiny_clip_dir)
    ids = load_tokenizer(tiny_clip_dir)(text, padding="max_length", max_length=77, return_tensors="pt")["input_ids"]
    eot = (ids == 49407).int().argmax(dim=-1)
    with torch.no_grad():
        ours = model.text_encoder(clip.text_model.embeddings.token_embedding(ids), eot)
        torch.testing.assert_close(ours, _text_features(clip, ids), atol=1e-5, rtol=0)


def test_prompt_learner_with_placeholder_embeddings_reproduces_plain_clip(model, tiny_clip_dir):
    clip = load_clip(tiny_clip_dir)
    learner = model.prompt_learner
    ids = learner.input_ids
    saved_context = learner.context.detach().clone()
    try:
        with torch.no_grad():
            learner.context.copy_(clip.text_model.embeddings.token_embedding(ids[:, 1 : 1 + learner.num_context]))
            prompt_features = model.text_encoder(learner(), learner.eot_positions)
            torch.testing.assert_close(prompt_features, _text_features(clip, ids), atol=1e-5, rtol=0)
    finally:
        with torch.no_grad():
            learner.context.copy_(saved_context)


def test_gradient_checkpointing_gives_the_same_outputs_and_gradients(tiny_clip_dir):
    plain = DferClip(DferClipConfig(str(tiny_clip_dir), num_frames=FRAMES, temporal_mlp_dim=128)).train()
    checkpointed = DferClip(DferClipConfig(str(tiny_clip_dir), num_frames=FRAMES, temporal_mlp_dim=128, gradient_checkpointing=True))
    checkpointed.train()
    assert any(getattr(m, "gradient_checkpointing", False) for m in checkpointed.vision_model.modules())
    clips = _clips()
    losses = [m(clips).logits.logsumexp(dim=-1).sum() for m in (plain, checkpointed)]
    torch.testing.assert_close(losses[0], losses[1])
    for loss in losses:
        loss.backward()
    grads = [m.vision_model.embeddings.patch_embedding.weight.grad for m in (plain, checkpointed)]
    torch.testing.assert_close(grads[0], grads[1])


def test_state_dict_round_trip_gives_identical_outputs(model, tiny_clip_dir, tmp_path):
    model.eval()
    torch.save(model.state_dict(), tmp_path / "dfer_clip.pt")
    restored = DferClip(DferClipConfig(str(tiny_clip_dir), num_frames=FRAMES, temporal_mlp_dim=128, seed=7)).eval()
    clips = _clips()
    with torch.no_grad():
        assert not torch.equal(restored(clips).cosine, model(clips).cosine)  # different seed, different init
        restored.load_state_dict(torch.load(tmp_path / "dfer_clip.pt"))
        assert torch.equal(restored(clips).cosine, model(clips).cosine)


def test_phrases_follow_class_names_and_override_defaults(tiny_clip_dir):
    config = DferClipConfig(str(tiny_clip_dir), num_frames=FRAMES, class_names=("neutral", "sadness", "anger"),
                            phrases={"sadness": "a sad face"})
    assert config.class_phrases() == [DEFAULT_PHRASES["neutral"], "a sad face", DEFAULT_PHRASES["anger"]]
    assert all(name in DEFAULT_PHRASES for name in ("contempt", "anxiety", "helplessness", "disappointment"))


def test_same_seed_builds_the_same_network(tiny_clip_dir):
    first, second = (DferClip(DferClipConfig(str(tiny_clip_dir), num_frames=FRAMES, temporal_mlp_dim=128, seed=5)) for _ in range(2))
    assert all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_bad_inputs_are_rejected(model, tiny_clip_dir):
    with pytest.raises(ValueError, match="frames"):
        model(torch.rand(1, FRAMES + 1, 3, 48, 48))
    with pytest.raises(ValueError, match="batch, frames"):
        model(torch.rand(FRAMES, 3, 48, 48))
    with pytest.raises(ValueError, match="classes the network does not have"):
        DferClipConfig(str(tiny_clip_dir), phrases={"joy": "a smile"})
    with pytest.raises(ValueError, match="no descriptive phrase for class"):
        DferClipConfig(str(tiny_clip_dir), class_names=("neutral", "boredom"))
    long_phrases = {"anger": "a very angry face " * 20}
    with pytest.raises(ValueError, match="longer than"):
        DferClip(DferClipConfig(str(tiny_clip_dir), phrases=long_phrases))
    with pytest.raises(ValueError, match="divisible"):
        DferClip(DferClipConfig(str(tiny_clip_dir), temporal_heads=5))


# ---- intensities --------------------------------------------------------------------------------


def test_intensities_do_not_overflow_at_the_top_of_the_range():
    cosine = torch.tensor([[1.0, -1.0, 0.0, 0.5]])
    intensities = intensities_from_cosine(cosine, tau=0.01)
    assert intensities.dtype == torch.float64
    assert bool(torch.isfinite(intensities).all())
    assert intensities[0, 0].item() == math.exp(100.0)
    assert intensities[0, 1].item() == pytest.approx(math.exp(-100.0), rel=1e-12)
    from_numpy = intensities_from_cosine(cosine.numpy(), tau=0.01)
    assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.float64
    np.testing.assert_array_equal(from_numpy, intensities.numpy())


def test_eager_attention_computes_the_same_network(tiny_clip_dir):
    """The demo trains with eager attention (faster for a tiny CLIP on a CPU): the same function as sdpa."""
    settings = dict(clip_name_or_path=str(tiny_clip_dir), random_init=True, num_frames=4, num_context=2,
                    gate_heads=4, temporal_heads=4, temporal_mlp_dim=32)
    eager, fused = DferClip(dict(settings, attention="eager")), DferClip(settings)
    assert eager.vision_model.config._attn_implementation == "eager"
    assert fused.vision_model.config._attn_implementation == "sdpa"
    pixels = torch.randn(2, 4, 3, eager.config.image_size, eager.config.image_size)
    with torch.no_grad():
        torch.testing.assert_close(eager(pixels).cosine, fused(pixels).cosine, atol=1e-5, rtol=0)
    assert DferClipConfig.from_value(eager.config.to_dict()).attention == "eager"
    with pytest.raises(ValueError, match="attention must be sdpa or eager"):
        DferClipConfig(attention="flash")


def test_cosines_are_float32_under_bf16_autocast(model):
    """A bf16 contract runs the network in bf16, but the normalisation and Eq. 3's cosines are float32:
    the cosine matches the float64 product of the same features to float32 rounding, not bf16's 0.002."""
    model.eval()
    clips = _clips(batch=8, seed=3)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        text = model.encode_text()
        out = model(clips, text_features=text)
        unnormalised = torch.randn(3, 16, dtype=torch.bfloat16)
        from dfer_pd.stage1.modeling_dfer_clip import unit_float32

        unit = unit_float32(unnormalised)
    assert out.cosine.dtype == out.logits.dtype == out.video_features.dtype == text.dtype == torch.float32
    assert unit.dtype == torch.float32
    np.testing.assert_allclose(unit.double().norm(dim=-1).numpy(), 1.0, atol=1e-6)
    exact = out.video_features.double() @ out.text_features.double().T
    assert float((out.cosine.double() - exact).abs().max()) < 1e-6  # bf16 would leave errors near 1e-3
    bf16_product = (out.video_features.bfloat16() @ out.text_features.bfloat16().T).double()
    assert float((bf16_product - exact).abs().max()) > 1e-4  # what the old in-autocast product lost
