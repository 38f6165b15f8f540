"""Stage 1: the CLIP-based dynamic facial expression network (paper section 2.2, after DFER-CLIP).

Visual part (Eq. 1): the CLIP image encoder E1 turns each of the M sampled frames into a projected CLS
vector A_i; a multi-head self-attention gate E2 reweights it, f_i = A_i * sigmoid(E2(A)_i); a temporal
transformer T turns f_1..f_M into the video feature F.
Textual part (Eq. 2): per class, learnable context vectors followed by a descriptive phrase of the
expression's facial actions run through CLIP's frozen text transformer to give the text feature G_k.
Intensities (Eq. 3): I_k = exp(cos(F, G_k) / tau); the logits for training are cos(F, G_k) / tau.
The classes are the config's ``class_names`` (the paper's four by default); stage 2 picks its four by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPTextModel, PreTrainedModel, PreTrainedTokenizerBase

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.stage1.clip_assets import load_clip, load_image_normalisation, load_tokenizer

# Descriptions of what each expression does to the face, after FACS action units (AU). Keys are the
# canonical class names every dataset maps its labels to; a network uses the phrases of its classes.
DEFAULT_PHRASES: dict[str, str] = {
    # no action unit active
    "neutral": (
        "a relaxed expressionless face with level brows, smooth forehead, eyelids at rest, "
        "cheeks and lip corners at rest and lips gently closed"
    ),
    # AU6 cheek raiser, AU12 lip corner puller
    "happiness": (
        "a happy face with the cheeks raised, crow's feet wrinkles at the corners of narrowed eyes, "
        "and the lip corners pulled up and back into a smile"
    ),
    # AU1 inner brow raiser, AU2 outer brow raiser, AU5 upper lid raiser, AU26 jaw drop
    "surprise": (
        "a surprised face with the inner and outer brows raised high, horizontal wrinkles across the forehead, "
        "the upper eyelids lifted to widen the eyes, and the jaw dropped so the mouth hangs open"
    ),
    # AU4 brow lowerer, AU5 upper lid raiser, AU7 lid tightener, AU23 lip tightener
    "anger": (
        "an angry face with the brows lowered and drawn together, vertical wrinkles between the brows, "
        "a glaring stare from raised upper eyelids and tightened lower eyelids, and narrowed lips pressed tight"
    ),
    # AU1 inner brow raiser, AU4 brow lowerer, AU15 lip corner depressor
    "sadness": (
        "a sad face with the inner corners of the brows raised and drawn together, drooping upper eyelids, "
        "and the lip corners pulled down"
    ),
    # AU9 nose wrinkler, AU10 upper lip raiser, AU15/16 lip corner and lower lip depressor
    "disgust": (
        "a disgusted face with the nose wrinkled, the upper lip raised, the brows lowered "
        "and the lower lip pushed down"
    ),
    # AU1+2+4 brows raised and drawn together, AU5 upper lid raiser, AU20 lip stretcher, AU26 jaw drop
    "fear": (
        "a fearful face with the brows raised and pulled together, the upper eyelids raised to show the whites "
        "of the eyes, and the lips stretched sideways with the jaw slightly dropped"
    ),
    # AU14 one-sided dimpler
    "contempt": "a contemptuous face with one lip corner tightened and raised in a one-sided smirk",
    # AU1+4 worried brows, AU20 lip stretcher, AU24 lip pressor
    "anxiety": (
        "an anxious face with worried brows raised and drawn together, a tense stare, "
        "and the lips pressed and stretched"
    ),
    # AU1 inner brow raiser, AU15 lip corner depressor, AU43 eyes drooping
    "helplessness": (
        "a helpless face with the inner brows raised, the eyelids drooping, "
        "and the lip corners pulled down in resignation"
    ),
    # AU4 brow lowerer, AU15 lip corner depressor, AU17 chin raiser
    "disappointment": (
        "a disappointed face with the brows slightly lowered, the gaze cast down, "
        "the lip corners pulled down and the chin pushed up"
    ),
}

PLACEHOLDER_TOKEN = "X"


def _check_heads(dim: int, heads: int, what: str) -> None:
    if heads < 1 or dim % heads:
        raise ValueError(f"{what}: feature size {dim} is not divisible by {heads} attention heads")


class FrameGate(nn.Module):
    """E2 of Eq. 1: self-attention across the M frames decides how much of each frame feature passes."""

    def __init__(self, dim: int, heads: int = 8):
        super().__init__()
        _check_heads(dim, heads, "FrameGate")
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)

    def forward(self, frame_features: torch.Tensor) -> torch.Tensor:
        """(B, M, D) -> (B, M, D): f = A * sigmoid(E2(A))."""
        attended, _ = self.attention(frame_features, frame_features, frame_features, need_weights=False)
        return frame_features * torch.sigmoid(attended)


class TemporalTransformer(nn.Module):
    """T of Eq. 1: a pre-norm transformer over [CLS, f_1..f_M]; the class-token output is the video feature."""

    def __init__(
        self,
        dim: int,
        num_frames: int,
        layers: int = 1,
        heads: int = 8,
        mlp_dim: int = 1024,
        dropout: float = 0.0,
    ):
        super().__init__()
        _check_heads(dim, heads, "TemporalTransformer")
        self.num_frames = num_frames
        self.class_token = nn.Parameter(torch.empty(1, 1, dim))
        self.position_embedding = nn.Parameter(torch.empty(1, num_frames + 1, dim))
        nn.init.trunc_normal_(self.class_token, std=0.02)
        nn.init.trunc_normal_(self.position_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, mlp_dim, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, frame_features: torch.Tensor) -> torch.Tensor:
        """(B, M, D) -> (B, D)."""
        batch, frames, _ = frame_features.shape
        if frames != self.num_frames:
            raise ValueError(f"TemporalTransformer was built for {self.num_frames} frames, got {frames}")
        tokens = torch.cat([self.class_token.expand(batch, -1, -1), frame_features], dim=1)
        return self.encoder(tokens + self.position_embedding)[:, 0]


class PromptLearner(nn.Module):
    """Class-specific learnable context (CoOp): [SOS][ctx_1..ctx_n][phrase tokens .][EOT][pad].

    The prompts are tokenized as "X X ... X <phrase>." with the real tokenizer, so the end-of-text
    positions are right; the placeholder embeddings are then replaced by the context vectors.
    """

    def __init__(
        self,
        phrases: Sequence[str],
        tokenizer: PreTrainedTokenizerBase,
        token_embedding: nn.Embedding,
        context_length: int,
        num_context: int = 8,
    ):
        super().__init__()
        if num_context < 1:
            raise ValueError(f"PromptLearner needs at least one context vector, got num_context={num_context}")
        self.num_context = num_context
        placeholder = " ".join([PLACEHOLDER_TOKEN] * num_context)
        self.prompts = [f"{placeholder} {phrase.strip().rstrip('.')}." for phrase in phrases]
        input_ids = self._tokenize(self.prompts, tokenizer, context_length)

        with torch.no_grad():
            embeddings = token_embedding(input_ids.to(token_embedding.weight.device)).detach().cpu()
        # Persistent, so a checkpoint carries the exact prompts it was trained with.
        self.register_buffer("input_ids", input_ids)
        self.register_buffer("eot_positions", (input_ids == tokenizer.eos_token_id).int().argmax(dim=-1))
        self.register_buffer("token_prefix", embeddings[:, :1].clone())
        self.register_buffer("token_suffix", embeddings[:, 1 + num_context :].clone())
        self.context = nn.Parameter(torch.empty(len(phrases), num_context, embeddings.shape[-1]))
        nn.init.normal_(self.context, std=0.02)

    def _tokenize(self, prompts: list[str], tokenizer: PreTrainedTokenizerBase, context_length: int) -> torch.Tensor:
        """(K, context_length) ids; checks that the placeholders sit right after the start token."""
        too_long = [p for p in prompts if len(tokenizer(p)["input_ids"]) > context_length]
        if too_long:
            raise ValueError(
                f"prompt longer than the text model's {context_length} tokens: {too_long[0]!r}; shorten the phrase"
            )
        ids = tokenizer(prompts, padding="max_length", max_length=context_length, return_tensors="pt")["input_ids"]
        placeholder_id = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(PLACEHOLDER_TOKEN))
        if len(placeholder_id) != 1 or not bool((ids[:, 1 : 1 + self.num_context] == placeholder_id[0]).all()):
            raise ValueError(f"tokenizer does not map {PLACEHOLDER_TOKEN!r} to one token after the start token")
        if not bool((ids == tokenizer.eos_token_id).any(dim=-1).all()):
            raise ValueError("tokenized prompts carry no end-of-text token")
        return ids.long()

    def forward(self) -> torch.Tensor:
        """(K, context_length, width) prompt embeddings."""
        prefix = self.token_prefix.to(self.context.dtype)
        suffix = self.token_suffix.to(self.context.dtype)
        return torch.cat([prefix, self.context, suffix], dim=1)


class PromptTextEncoder(nn.Module):
    """CLIP's text transformer run on prompt embeddings: causal mask, final norm, EOT pooling, projection."""

    def __init__(self, text_model: CLIPTextModel, text_projection: nn.Linear):
        super().__init__()
        self.text_model = text_model
        self.text_projection = text_projection
        # transformers < 5 passes the causal mask as its own argument; 5.x builds it with masking_utils.
        self._legacy_causal_argument = "causal_attention_mask" in inspect.signature(
            text_model.encoder.forward
        ).parameters

    def _encode(self, hidden: torch.Tensor) -> torch.Tensor:
        encoder = self.text_model.encoder
        if self._legacy_causal_argument:
            length = hidden.shape[1]
            mask = torch.full((length, length), torch.finfo(hidden.dtype).min, device=hidden.device)
            mask = mask.triu(1).to(hidden.dtype)[None, None].expand(hidden.shape[0], 1, length, length)
            return encoder(inputs_embeds=hidden, causal_attention_mask=mask, return_dict=True).last_hidden_state
        from transformers.masking_utils import create_causal_mask

        mask = create_causal_mask(config=self.text_model.config, inputs_embeds=hidden, attention_mask=None, cache=None)
        return encoder(inputs_embeds=hidden, attention_mask=mask, is_causal=True).last_hidden_state

    def forward(self, prompt_embeddings: torch.Tensor, eot_positions: torch.Tensor) -> torch.Tensor:
        """(K, L, width) token embeddings, (K,) end-of-text positions -> (K, projection_dim) unnormalised."""
        hidden = self.text_model.embeddings(inputs_embeds=prompt_embeddings)
        hidden = self.text_model.final_layer_norm(self._encode(hidden))
        pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), eot_positions.to(hidden.device)]
        return self.text_projection(pooled)


def enable_activation_checkpointing(model: PreTrainedModel) -> None:
    """Recompute a transformers model's layer activations in backward (named activation_ in transformers 5.x)."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


@dataclass
class DferClipOutput:
    """cosine and logits (B, K) float32 (also under autocast); video_features (B, D) and text_features (K, D)
    L2-normalised float32."""

    cosine: torch.Tensor
    logits: torch.Tensor
    video_features: torch.Tensor
    text_features: torch.Tensor


@dataclass(frozen=True)
class DferClipConfig:
    """Everything that fixes the network, and so its scores: saved in every stage-1 checkpoint.

    ``image_size``, ``image_mean`` and ``image_std`` default to the CLIP checkpoint's own; once the
    network is built they are filled in (see :meth:`DferClip.config`), so a trained checkpoint carries
    the exact preprocessing it was trained with and nothing downstream re-declares it.

    Args:
        clip_name_or_path: CLIP to start from: a Hugging Face hub id, a local folder, or builtin:tiny-clip.
        random_init: build CLIP's architecture with random weights instead of loading its pretrained ones.
        class_names: the expression classes, in label order (linked from the dataset's classes).
        phrases: class name -> descriptive phrase of the prompt (FACS-grounded defaults for the others).
        num_frames: M, frames sampled per clip (also the dataset's).
        num_context: learnable context vectors before each class phrase in the text prompts.
        use_gate: weigh the frames with the multi-head self-attention gate before the temporal transformer.
        gate_heads: attention heads of the frame gate.
        temporal_layers: layers of the temporal transformer over the M frame features.
        temporal_heads: attention heads of the temporal transformer.
        temporal_mlp_dim: hidden width of the temporal transformer's MLP.
        temporal_dropout: dropout in the temporal transformer.
        tau: temperature: logits are cos / tau, intensities exp(cos / tau) (the paper's 0.01).
        gradient_checkpointing: recompute the vision tower's activations in the backward pass (less memory, slower).
        seed: seed of the network's random initialisation (prompts, gate, temporal transformer).
        attention: how CLIP computes attention: sdpa (PyTorch's fused kernels; GPUs, ViT-B) or eager (matmul and
            softmax: 20% faster per training step for a tiny CLIP on a CPU, whose few tokens the fused kernel handles
            badly). The same function either way, so it is not part of the scoring contract.
        image_size: input side in pixels (default: the CLIP checkpoint's).
        image_mean: per-channel normalisation mean (default: the CLIP checkpoint's).
        image_std: per-channel normalisation std (default: the CLIP checkpoint's).
    """

    clip_name_or_path: str = "openai/clip-vit-base-patch32"
    random_init: bool = False
    class_names: tuple[str, ...] = EXPRESSIONS
    phrases: dict[str, str] | None = None  # class name -> phrase; DEFAULT_PHRASES for the others
    num_frames: int = 16  # M, frames sampled per clip: the one place this number is declared
    num_context: int = 8
    use_gate: bool = True
    gate_heads: int = 8
    temporal_layers: int = 1
    temporal_heads: int = 8
    temporal_mlp_dim: int = 1024
    temporal_dropout: float = 0.0
    tau: float = 0.01
    gradient_checkpointing: bool = False
    seed: int = 0
    attention: Literal["sdpa", "eager"] = "sdpa"
    image_size: int | None = None
    image_mean: tuple[float, ...] | None = None
    image_std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if self.tau <= 0:
            raise ValueError(f"tau must be positive, got {self.tau}")
        if self.num_frames < 1:
            raise ValueError(f"num_frames must be at least 1, got {self.num_frames}")
        if self.attention not in ("sdpa", "eager"):
            raise ValueError(f"attention must be sdpa or eager, got {self.attention!r}")
        if len(set(self.class_names)) != len(self.class_names) or len(self.class_names) < 2:
            raise ValueError(f"class_names must be at least two distinct names, got {self.class_names}")
        unknown = set(self.phrases or {}) - set(self.class_names)
        if unknown:
            raise ValueError(f"phrases given for classes the network does not have: {sorted(unknown)} "
                             f"(class_names: {self.class_names})")
        missing = [c for c in self.class_names if c not in (self.phrases or {}) and c not in DEFAULT_PHRASES]
        if missing:
            raise ValueError(f"no descriptive phrase for class(es) {missing}: give them in `phrases`")
        for name in ("image_mean", "image_std"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, tuple(float(v) for v in value))

    def class_phrases(self) -> list[str]:
        """One phrase per class, in ``class_names`` order."""
        return [(self.phrases or {}).get(name, DEFAULT_PHRASES.get(name)) for name in self.class_names]

    def to_dict(self) -> dict:
        """JSON- and ``weights_only``-safe plain values (a checkpoint's ``hyper_parameters['network']``)."""
        values = asdict(self)
        for name in ("class_names", "image_mean", "image_std"):
            if values[name] is not None:
                values[name] = list(values[name])
        return values

    @classmethod
    def from_value(cls, value: DferClipConfig | Mapping | None) -> DferClipConfig:
        """A config from itself, a mapping (a checkpoint's saved dict, a YAML section) or None (defaults)."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, Mapping):
            unknown = set(value) - {f.name for f in fields(cls)}
            if unknown:
                raise ValueError(f"unknown network setting(s) {sorted(unknown)}")
            return cls(**value)
        raise TypeError(f"expected a DferClipConfig or a mapping, got {type(value).__name__}")


class DferClip(nn.Module):
    """The expression network: cos(F, G_k) for the K classes of its config, and logits cos / tau."""

    def __init__(self, config: DferClipConfig | Mapping | None = None):
        super().__init__()
        config = DferClipConfig.from_value(config)
        self.class_names = config.class_names
        self.phrases = config.class_phrases()
        self.num_frames = config.num_frames
        self.tau = config.tau

        clip = load_clip(config.clip_name_or_path, random_init=config.random_init, seed=config.seed)
        clip.set_attn_implementation(config.attention)
        tokenizer = load_tokenizer(config.clip_name_or_path)
        if config.image_size is None or config.image_mean is None or config.image_std is None:
            mean, std, size = load_image_normalisation(config.clip_name_or_path)
            config = replace(config, image_size=config.image_size or size, image_mean=config.image_mean or mean,
                             image_std=config.image_std or std)
        self.config = config
        self.embed_dim = dim = int(clip.config.projection_dim)

        # E1: vision tower + projection, fine-tuned.
        self.vision_model = clip.vision_model
        self.visual_projection = clip.visual_projection
        if config.gradient_checkpointing:
            enable_activation_checkpointing(self.vision_model)
        # Frozen text side (CLIP's logit_scale is not used: the scale is 1 / tau).
        self.text_encoder = PromptTextEncoder(clip.text_model, clip.text_projection)
        self.text_encoder.requires_grad_(False)

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.prompt_learner = PromptLearner(
                self.phrases,
                tokenizer,
                clip.text_model.embeddings.token_embedding,
                context_length=int(clip.config.text_config.max_position_embeddings),
                num_context=config.num_context,
            )
            self.frame_gate = FrameGate(dim, config.gate_heads) if config.use_gate else nn.Identity()
            self.temporal = TemporalTransformer(
                dim, config.num_frames, config.temporal_layers, config.temporal_heads,
                config.temporal_mlp_dim, config.temporal_dropout,
            )

    def encode_frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, D): A_i, the projected CLS vector of each frame."""
        pooled = self.vision_model(pixel_values=pixel_values, return_dict=True).pooler_output
        return self.visual_projection(pooled)

    def encode_video(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, M, 3, H, W) -> (B, D) L2-normalised video feature F."""
        if pixel_values.ndim != 5:
            raise ValueError(f"pixel_values must be (batch, frames, 3, H, W), got shape {tuple(pixel_values.shape)}")
        batch, frames = pixel_values.shape[:2]
        if frames != self.num_frames:
            raise ValueError(f"DferClip was built for {self.num_frames} frames per clip, got {frames}")
        frame_features = self.encode_frames(pixel_values.flatten(0, 1)).view(batch, frames, -1)
        video = self.temporal(self.frame_gate(frame_features))
        return unit_float32(video)

    def encode_text(self) -> torch.Tensor:
        """(K, D) L2-normalised text features G, one per class in class_names order."""
        features = self.text_encoder(self.prompt_learner(), self.prompt_learner.eot_positions)
        return unit_float32(features)

    def forward(self, pixel_values: torch.Tensor, text_features: torch.Tensor | None = None) -> DferClipOutput:
        """``text_features``: G from :meth:`encode_text`, passed by inference, where the prompts no longer
        change, so the frozen text transformer runs once per checkpoint instead of on every batch."""
        video = self.encode_video(pixel_values)
        text = self.encode_text() if text_features is None else text_features.to(video.device)
        video, text = unit_float32(video), unit_float32(text)
        with torch.autocast(device_type=video.device.type, enabled=False):
            cosine = video @ text.T  # float32 whatever the precision the network ran in (bf16 steps are 0.002 near 0.3)
        return DferClipOutput(cosine=cosine, logits=cosine / self.tau, video_features=video, text_features=text)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters by learning-rate group: image encoder, temporal (gate + transformer), prompt."""
        modules = {
            "image_encoder": (self.vision_model, self.visual_projection),
            "temporal": (self.frame_gate, self.temporal),
            "prompt": (self.prompt_learner,),
        }
        return {
            group: [p for module in members for p in module.parameters() if p.requires_grad]
            for group, members in modules.items()
        }


def unit_float32(features: torch.Tensor) -> torch.Tensor:
    """L2-normalised float32 rows, computed outside any autocast region: under a bf16 or fp16 contract the
    network runs in that precision, but the normalisation and the cosines of Eq. 3 do not."""
    with torch.autocast(device_type=features.device.type, enabled=False):
        return F.normalize(features.float(), dim=-1)


def intensities_from_cosine(cosine: torch.Tensor | np.ndarray, tau: float) -> torch.Tensor | np.ndarray:
    """Eq. 3, I = exp(cos / tau), in float64: at tau = 0.01, exp(100) is beyond float32's range.

    The one place Eq. 3 is written; everything downstream (stage 2, reports) calls it.
    """
    if isinstance(cosine, torch.Tensor):
        return torch.exp(cosine.to(torch.float64) / tau)
    with np.errstate(over="ignore"):
        return np.exp(np.asarray(cosine, dtype=np.float64) / tau)


def log_intensities_from_cosine(cosine: torch.Tensor | np.ndarray, tau: float) -> torch.Tensor | np.ndarray:
    """log of Eq. 3, cos / tau: the scale reports and plots show (it never overflows)."""
    if isinstance(cosine, torch.Tensor):
        return cosine.to(torch.float64) / tau
    return np.asarray(cosine, dtype=np.float64) / tau
