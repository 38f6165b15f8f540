"""A synthetic face-video world: stand-ins for DFEW and for a PD cohort, written in the real layouts.

DFEW is licensed and PD cohorts are confidential, so demos and tests run on procedurally rendered
faces instead. The renderer draws a cartoon face (outline, hair, eyes with lids, brows, nose, mouth)
whose geometry follows continuous expression parameters loosely grounded in FACS action units:

- happiness (AU6+AU12): mouth corners up and wider, teeth, cheeks up, eyes narrowed from below;
- surprise (AU1+AU2+AU5+AU26): brows up, eyes wide, jaw dropped;
- anger (AU4+AU5+AU7+AU23): brows down and drawn together, glare, lips pressed thin;
- neutral: relaxed face.

Identity (face shape, skin tone, feature sizes), lighting, background, head motion and pixel noise vary
per clip, so only the face's *shape* tells the class. Everything is seeded: the same arguments give
byte-identical files (JPEG through PIL, H.264 through PyAV with one encoder thread).

Two writers use the renderer:

- :func:`make_dfew_tree` writes ``Clip/clip_224x224/<id>/<id>_<frame>.jpg`` and
  ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv`` like DFEW;
- :func:`make_pd_cohort` writes ``<subject>/<expression>.mp4`` per subject, ``manifest.csv`` and the
  hidden ``ground_truth.csv`` (PD subjects have hypomimia: lower amplitude, slower onset).
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from dfer_pd.common.constants import COHORT_LABELS, DFEW_ID_TO_CLASS, DFEW_LABEL_NAMES, EXPRESSIONS

__all__ = [
    "ExpressionParams",
    "FaceIdentity",
    "HeadPose",
    "EXPRESSION_DELTAS",
    "DFEW_SPLIT_DIRS",
    "sample_identity",
    "expression_params",
    "sample_head_motion",
    "render_face",
    "expression_profile",
    "sample_subject_latents",
    "rgb_to_yuv420p",
    "encode_mp4",
    "make_dfew_tree",
    "make_pd_cohort",
]

# Supersampling factor: shapes are drawn at this multiple of the output size, then box-filtered.
_SUPERSAMPLE = 2
# Folder names of DFEW's single-label split files, relative to the dataset root.
DFEW_SPLIT_DIRS: dict[str, str] = {
    "train": "EmoLabel_DataSplit/train(single-labeled)",
    "test": "EmoLabel_DataSplit/test(single-labeled)",
}
DFEW_FRAMES_DIR = "Clip/clip_224x224"
DFEW_VIDEOS_DIR = "Clip/original"
NUM_DFEW_FOLDS = 5
# Clips shorter than this many frames exercise the loaders' "repeat the last frame" path (M = 16).
_SHORT_CLIP_FRAMES = 16
# DFEW classes outside the four used ones; rendered with their own faces so a filter must drop them.
_OTHER_DFEW_IDS: tuple[int, ...] = tuple(i for i in sorted(DFEW_LABEL_NAMES) if i not in DFEW_ID_TO_CLASS)
_CLASS_TO_DFEW_ID: dict[int, int] = {c: i for i, c in DFEW_ID_TO_CLASS.items()}
# DFEW's own names for the four used classes map to EXPRESSIONS by class index.
_DFEW_NAME_TO_EXPRESSION: dict[str, str] = {
    DFEW_LABEL_NAMES[i]: EXPRESSIONS[c] for i, c in DFEW_ID_TO_CLASS.items()
}


# --------------------------------------------------------------------------------------------------
# Expression parameters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExpressionParams:
    """Continuous facial geometry offsets from a relaxed face (lengths in canvas half-widths).

    A relaxed face is all zeros. Multiplicative quantities (eye opening, mouth width) are stored as
    offsets from 1 so that expressions add linearly.
    """

    brow_raise: float = 0.0  # whole brow moves up (+) or down (-)
    brow_inner_drop: float = 0.0  # inner brow end moves down (+, anger's V) or up (-, sadness)
    brow_squeeze: float = 0.0  # inner brow ends move toward the midline
    eye_open: float = 0.0  # upper-lid aperture, relative change
    lower_lid_raise: float = 0.0  # fraction of the lower aperture covered by a raised lower lid
    cheek_raise: float = 0.0  # cheeks lift and nasolabial folds darken (0..1)
    mouth_corner: float = 0.0  # mouth corners move up (+) or down (-)
    mouth_open: float = 0.0  # jaw drop: height of the open mouth
    mouth_width: float = 0.0  # mouth width, relative change
    lip_press: float = 0.0  # lips thinned and pressed together (0..1)
    teeth: float = 0.0  # visibility of the upper teeth in an open mouth (0..1)
    upper_lip_raise: float = 0.0  # upper lip lifts (disgust)
    nose_wrinkle: float = 0.0  # darkness of wrinkles on the nose bridge and between the brows (0..1)

    def __add__(self, other: ExpressionParams) -> ExpressionParams:
        return ExpressionParams(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def scaled(self, weight: float) -> ExpressionParams:
        return ExpressionParams(*(weight * getattr(self, f.name) for f in fields(self)))


# Apex geometry of each expression relative to a relaxed face. The four used classes come first;
# DFEW's other classes (sad, disgust, fear) have their own plausible faces.
EXPRESSION_DELTAS: dict[str, ExpressionParams] = {
    "neutral": ExpressionParams(),
    "happiness": ExpressionParams(
        eye_open=-0.35, lower_lid_raise=0.55, cheek_raise=1.0, mouth_corner=0.13, mouth_open=0.07,
        mouth_width=0.3, teeth=1.0, brow_raise=0.01,
    ),
    "surprise": ExpressionParams(
        brow_raise=0.13, brow_inner_drop=-0.02, eye_open=0.9, lower_lid_raise=-0.15, mouth_open=0.24,
        mouth_width=-0.28, teeth=0.25,
    ),
    "anger": ExpressionParams(
        brow_raise=-0.09, brow_inner_drop=0.13, brow_squeeze=0.06, eye_open=-0.3, lower_lid_raise=0.4,
        mouth_corner=-0.04, mouth_width=-0.15, lip_press=0.9, nose_wrinkle=0.9,
    ),
    "sad": ExpressionParams(
        brow_inner_drop=-0.08, brow_squeeze=0.02, eye_open=-0.3, mouth_corner=-0.08, mouth_width=-0.05,
        lip_press=0.3,
    ),
    "disgust": ExpressionParams(
        brow_raise=-0.03, brow_inner_drop=0.04, eye_open=-0.3, lower_lid_raise=0.4, cheek_raise=0.5,
        mouth_corner=-0.04, mouth_open=0.03, upper_lip_raise=0.05, teeth=0.6, nose_wrinkle=1.0,
    ),
    "fear": ExpressionParams(
        brow_raise=0.07, brow_inner_drop=-0.05, brow_squeeze=0.03, eye_open=0.7, mouth_corner=-0.03,
        mouth_open=0.1, mouth_width=0.25, teeth=0.7,
    ),
}


def expression_params(
    weights: Sequence[float] | np.ndarray, names: Sequence[str] = EXPRESSIONS
) -> ExpressionParams:
    """Blend per-expression amplitudes into one set of geometry offsets.

    ``weights[k]`` is the amplitude (0 = relaxed, 1 = full apex) of ``names[k]``; with the default
    names this is EXPRESSIONS order. Neutral has no geometry of its own, so its weight is implied by
    the others being small. ``names`` may also use DFEW's other classes (``"sad"``, ``"disgust"``,
    ``"fear"``).
    """
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape != (len(names),):
        raise ValueError(
            f"expression weights must have shape ({len(names)},) for {tuple(names)}, got {weights.shape}"
        )
    unknown = [n for n in names if n not in EXPRESSION_DELTAS]
    if unknown:
        raise ValueError(f"unknown expression names {unknown}; known: {sorted(EXPRESSION_DELTAS)}")
    total = ExpressionParams()
    for name, weight in zip(names, weights):
        total = total + EXPRESSION_DELTAS[name].scaled(float(weight))
    return total


# --------------------------------------------------------------------------------------------------
# Identity, pose and motion
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaceIdentity:
    """Who is filmed and how: face geometry, colours, background and lighting of one recording.

    Lengths are in canvas half-widths (the canvas spans -1..1 in x and y, y pointing down); colours
    are RGB in 0..255.
    """

    face_half_width: float
    face_half_height: float
    chin_taper: float  # 0 = elliptic jaw, >0 = narrower chin
    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    hair_height: float  # how far the hair reaches above the forehead
    lip: tuple[float, float, float]
    iris: tuple[float, float, float]
    clothes: tuple[float, float, float]
    eye_spacing: float  # eye centre distance from the midline
    eye_y: float  # eye centre height relative to the face centre
    eye_half_width: float
    eye_upper: float  # upper aperture height at rest
    eye_lower: float  # lower aperture height at rest
    brow_gap: float  # brow height above the eye centre
    brow_thickness: float
    nose_length: float
    nose_width: float
    mouth_y: float
    mouth_half_width: float
    lip_thickness: float
    resting_corner: float  # individual resting mouth-corner height
    background_top: tuple[float, float, float]
    background_bottom: tuple[float, float, float]
    background_blobs: tuple[tuple[float, ...], ...]  # (cx, cy, rx, ry, r, g, b) large background shapes
    light_direction: tuple[float, float]
    light_strength: float
    brightness: float
    white_balance: tuple[float, float, float]
    noise_std: float


def _uniform_color(
    rng: np.random.Generator, low: Sequence[float], high: Sequence[float]
) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(low, high))  # type: ignore[return-value]


def sample_identity(rng: np.random.Generator) -> FaceIdentity:
    """Draw a random person and recording setting."""
    face_half_width = rng.uniform(0.56, 0.68)
    face_half_height = min(face_half_width * rng.uniform(1.15, 1.35), 0.84)
    tone = rng.uniform(0.0, 1.0)  # dark to light skin
    skin = np.array([95, 60, 40]) * (1 - tone) + np.array([245, 205, 180]) * tone
    skin = skin * rng.uniform(0.93, 1.07, size=3)
    hair_shade = rng.uniform(0.0, 1.0)
    hair = np.array([25, 20, 18]) * (1 - hair_shade) + np.array([190, 150, 90]) * hair_shade
    if rng.random() < 0.15:  # grey hair
        hair = np.full(3, rng.uniform(140, 210))
    eye_half_width = face_half_width * rng.uniform(0.19, 0.24)
    blobs = tuple(
        (
            float(rng.uniform(-1.2, 1.2)), float(rng.uniform(-1.2, 1.2)),
            float(rng.uniform(0.2, 0.7)), float(rng.uniform(0.2, 0.7)),
            *(float(c) for c in rng.uniform(20, 235, size=3)),
        )
        for _ in range(int(rng.integers(0, 4)))
    )
    angle = rng.uniform(0, 2 * np.pi)
    return FaceIdentity(
        face_half_width=float(face_half_width),
        face_half_height=float(face_half_height),
        chin_taper=float(rng.uniform(0.0, 0.25)),
        skin=tuple(float(c) for c in np.clip(skin, 0, 255)),  # type: ignore[arg-type]
        hair=tuple(float(c) for c in hair),  # type: ignore[arg-type]
        hair_height=float(rng.uniform(0.05, 0.2)),
        lip=_uniform_color(rng, (150, 50, 55), (205, 105, 110)),
        iris=_uniform_color(rng, (30, 25, 15), (110, 140, 150)),
        clothes=_uniform_color(rng, (20, 20, 20), (235, 235, 235)),
        eye_spacing=float(face_half_width * rng.uniform(0.38, 0.46)),
        eye_y=float(-face_half_height * rng.uniform(0.12, 0.2)),
        eye_half_width=float(eye_half_width),
        eye_upper=float(eye_half_width * rng.uniform(0.42, 0.55)),
        eye_lower=float(eye_half_width * rng.uniform(0.3, 0.4)),
        brow_gap=float(face_half_height * rng.uniform(0.2, 0.27)),
        brow_thickness=float(rng.uniform(0.065, 0.095)),
        nose_length=float(face_half_height * rng.uniform(0.28, 0.38)),
        nose_width=float(face_half_width * rng.uniform(0.16, 0.24)),
        mouth_y=float(face_half_height * rng.uniform(0.44, 0.52)),
        mouth_half_width=float(face_half_width * rng.uniform(0.3, 0.38)),
        lip_thickness=float(rng.uniform(0.035, 0.055)),
        resting_corner=float(rng.uniform(-0.015, 0.015)),
        background_top=_uniform_color(rng, (10, 10, 10), (245, 245, 245)),
        background_bottom=_uniform_color(rng, (10, 10, 10), (245, 245, 245)),
        background_blobs=blobs,
        light_direction=(float(np.cos(angle)), float(np.sin(angle))),
        light_strength=float(rng.uniform(0.0, 0.35)),
        brightness=float(rng.uniform(0.75, 1.15)),
        white_balance=tuple(float(v) for v in rng.uniform(0.88, 1.12, size=3)),  # type: ignore[arg-type]
        noise_std=float(rng.uniform(1.5, 6.0)),
    )


@dataclass(frozen=True)
class HeadPose:
    """Rigid head placement on the canvas: shift (canvas half-widths), scale and in-plane roll (degrees)."""

    dx: float = 0.0
    dy: float = 0.0
    scale: float = 1.0
    roll_degrees: float = 0.0


def sample_head_motion(rng: np.random.Generator, num_frames: int, amplitude: float = 1.0) -> list[HeadPose]:
    """Smooth small head motion over a clip: a random offset plus slow sinusoidal sway per axis."""
    t = np.arange(num_frames, dtype=np.float64) / max(num_frames - 1, 1)
    # Columns: dx, dy, log-scale, roll; base spread then sway spread.
    base = rng.normal(0.0, [0.05, 0.04, 0.04, 4.0])
    sway = rng.normal(0.0, [0.025, 0.02, 0.02, 3.0])
    freq = rng.uniform(0.3, 1.5, size=4)
    phase = rng.uniform(0, 2 * np.pi, size=4)
    motion = amplitude * (base + sway * np.sin(2 * np.pi * freq * t[:, None] + phase))
    return [
        HeadPose(dx=float(m[0]), dy=float(m[1]), scale=float(np.exp(m[2])), roll_degrees=float(m[3]))
        for m in motion
    ]


# --------------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------------


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 32) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(a), cy + ry * np.sin(a)], axis=1)


def _lerp_color(a: Sequence[float], b: Sequence[float], t: float) -> tuple[int, int, int]:
    t = float(np.clip(t, 0.0, 1.0))
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a, b))  # type: ignore[return-value]


class _Canvas:
    """PIL drawing in face coordinates: points pass through the head pose, then to supersampled pixels."""

    def __init__(self, image: Image.Image, pose: HeadPose, origin: tuple[float, float]):
        self.draw = ImageDraw.Draw(image)
        self.half = image.width / 2
        theta = math.radians(pose.roll_degrees)
        c, s = math.cos(theta), math.sin(theta)
        self.scale = pose.scale
        self.matrix = pose.scale * np.array([[c, -s], [s, c]])
        self.offset = np.array([origin[0] + pose.dx, origin[1] + pose.dy])

    def _pixels(self, points: np.ndarray) -> list[tuple[float, float]]:
        xy = (points @ self.matrix.T + self.offset + 1.0) * self.half
        return [tuple(p) for p in xy.tolist()]

    def polygon(self, points: np.ndarray, color: Sequence[int]) -> None:
        self.draw.polygon(self._pixels(points), fill=tuple(int(c) for c in color))

    def line(self, points: np.ndarray, color: Sequence[int], width: float) -> None:
        pixels = max(1, int(round(width * self.half * self.scale)))
        self.draw.line(self._pixels(points), fill=tuple(int(c) for c in color), width=pixels, joint="curve")


def _background(identity: FaceIdentity, size: int) -> Image.Image:
    """Vertical gradient between two colours with a few large shapes; fixed for a recording."""
    ramp = np.linspace(0.0, 1.0, size)[:, None, None]
    top, bottom = np.array(identity.background_top), np.array(identity.background_bottom)
    pixels = np.broadcast_to((1 - ramp) * top + ramp * bottom, (size, size, 3))
    image = Image.fromarray(np.ascontiguousarray(pixels).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    half = size / 2
    for cx, cy, rx, ry, *rgb in identity.background_blobs:
        box = [(cx - rx + 1) * half, (cy - ry + 1) * half, (cx + rx + 1) * half, (cy + ry + 1) * half]
        draw.ellipse(box, fill=tuple(int(c) for c in rgb))
    return image


def _draw_head(canvas: _Canvas, identity: FaceIdentity, p: ExpressionParams) -> None:
    """Shoulders, neck, hair, ears and face outline; the jaw drops with the mouth."""
    w, h = identity.face_half_width, identity.face_half_height
    skin, shade = identity.skin, _lerp_color(identity.skin, (0, 0, 0), 0.25)
    canvas.polygon(_ellipse(0.0, h + 0.55, w * 1.9, 0.45), identity.clothes)
    neck = np.array([[-0.45 * w, 0.3 * h], [0.45 * w, 0.3 * h], [0.5 * w, h + 0.3], [-0.5 * w, h + 0.3]])
    canvas.polygon(neck, shade)
    hair_half_height = h * 0.85 + identity.hair_height / 2
    canvas.polygon(_ellipse(0.0, -0.2 * h - identity.hair_height / 2, w * 1.1, hair_half_height), identity.hair)
    for side in (-1.0, 1.0):
        canvas.polygon(_ellipse(side * w * 0.97, identity.eye_y + 0.06, 0.1, 0.16, 16), shade)
    # Face outline: an ellipse whose lower half narrows toward the chin and stretches with the jaw.
    a = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    x, y = np.cos(a), np.sin(a)
    lower = np.clip(y, 0.0, None)
    jaw = h + max(p.mouth_open, 0.0) * 0.6
    outline = np.stack([w * x * (1 - identity.chin_taper * lower**2), np.where(y > 0, jaw, h) * y], axis=1)
    canvas.polygon(outline, skin)


def _draw_eyes(canvas: _Canvas, identity: FaceIdentity, p: ExpressionParams) -> None:
    """Almond eyes whose lids follow eye_open and lower_lid_raise; cheeks and folds for smiles."""
    skin = identity.skin
    ew = identity.eye_half_width
    upper = identity.eye_upper * max(1.0 + p.eye_open, 0.08)
    lower = identity.eye_lower * max(1.0 - p.lower_lid_raise, 0.1)
    blush = _lerp_color(skin, (215, 90, 95), 0.45 * p.cheek_raise)
    fold = _lerp_color(skin, (50, 25, 20), 0.7 * max(p.cheek_raise, 0.0))
    x = np.linspace(-1.0, 1.0, 17)
    bulge = np.sqrt(np.clip(1 - x**2, 0, 1))
    for side in (-1.0, 1.0):
        ex, ey = side * identity.eye_spacing, identity.eye_y
        # Cheek: lifts and reddens with cheek_raise.
        cheek_y = ey + identity.eye_lower + 0.16 - 0.07 * p.cheek_raise
        canvas.polygon(_ellipse(ex + side * 0.02, cheek_y, ew * 1.1, 0.08, 20), blush)
        # Nasolabial fold: from the nose wing toward the mouth corner.
        top = np.array([side * identity.nose_width * 1.1, ey + identity.nose_length * 0.95 + 0.12])
        corner_x = side * identity.mouth_half_width * (1 + 0.8 * p.mouth_width) * 1.1
        corner = np.array([corner_x, identity.mouth_y + 0.04])
        mid = (top + corner) / 2 + np.array([side * 0.05, 0.0])
        canvas.line(np.stack([top, mid, corner]), fold, 0.02)
        xs = ex + ew * x
        upper_lid = ey - upper * bulge
        lower_lid = ey + lower * bulge
        sclera = np.concatenate([np.stack([xs, upper_lid], 1), np.stack([xs, lower_lid], 1)[::-1]])
        canvas.polygon(sclera, (245, 245, 240))
        # Iris and pupil clipped to the lids (clamping y between the lid curves at each x).
        for radius, color in ((0.5 * ew, identity.iris), (0.22 * ew, (10, 10, 10))):
            ring = _ellipse(ex, ey + 0.1 * ew, radius, radius, 24)
            t = np.clip((ring[:, 0] - ex) / ew, -1, 1)
            b = np.sqrt(np.clip(1 - t**2, 0, 1))
            ring[:, 1] = np.clip(ring[:, 1], ey - upper * b, ey + lower * b)
            canvas.polygon(ring, color)
        canvas.line(np.stack([xs, upper_lid], 1), (25, 15, 15), 0.03)
        canvas.line(np.stack([xs, lower_lid], 1), _lerp_color(skin, (0, 0, 0), 0.35), 0.012)


def _draw_brows(canvas: _Canvas, identity: FaceIdentity, p: ExpressionParams) -> None:
    """Thick brows: raised, dropped at the inner end (V shape) and drawn together per the parameters."""
    # The darker of hair and skin, darkened further, so brows stand out on every skin tone.
    brow_color = _lerp_color(min(identity.hair, identity.skin, key=sum), (0, 0, 0), 0.55)
    length = identity.eye_half_width * 1.35
    thick = identity.brow_thickness
    for side in (-1.0, 1.0):
        base_y = identity.eye_y - identity.brow_gap - p.brow_raise
        inner_x = side * (identity.eye_spacing - length * 0.95 - p.brow_squeeze)
        inner = np.array([inner_x, base_y + p.brow_inner_drop])
        outer = np.array([side * (identity.eye_spacing + length * 0.9), base_y + 0.02])
        t = np.linspace(0, 1, 9)[:, None]
        arch_height = 0.035 * (1 + 2 * max(p.brow_raise, 0.0) / 0.13)  # raised brows arch more
        arch = np.stack([np.zeros(9), -arch_height * np.sin(np.pi * t[:, 0])], 1)
        centre = inner + (outer - inner) * t + arch
        taper = thick * (1.0 - 0.45 * t)
        brow = np.concatenate([centre - np.hstack([np.zeros_like(taper), taper / 2]),
                               (centre + np.hstack([np.zeros_like(taper), taper / 2]))[::-1]])
        canvas.polygon(brow, brow_color)
    # Glabella furrows between the brows and nose-bridge wrinkles.
    crease = _lerp_color(identity.skin, (40, 20, 15), 0.8 * max(p.nose_wrinkle, 0.0))
    gy = identity.eye_y - identity.brow_gap * 0.6
    for side in (-1.0, 1.0):
        canvas.line(np.array([[side * 0.035, gy - 0.07], [side * 0.025, gy + 0.02]]), crease, 0.018)
    for k in range(2):
        y = identity.eye_y + 0.01 + 0.035 * k
        half = identity.nose_width * 0.6
        canvas.line(np.array([[-half, y], [half, y + 0.01]]), crease, 0.012)


def _draw_nose(canvas: _Canvas, identity: FaceIdentity, p: ExpressionParams) -> None:
    shade = _lerp_color(identity.skin, (0, 0, 0), 0.3)
    top = identity.eye_y + 0.02
    tip = identity.eye_y + identity.nose_length - 0.3 * p.upper_lip_raise
    nw = identity.nose_width
    canvas.line(np.array([[0.015, top], [0.03, tip - 0.03], [0.0, tip]]), shade, 0.018)
    canvas.polygon(np.array([[-nw, tip + 0.02], [0.0, tip + 0.05], [nw, tip + 0.02], [0.0, tip - 0.04]]), shade)
    for side in (-1.0, 1.0):
        canvas.polygon(_ellipse(side * nw * 0.45, tip + 0.03, nw * 0.28, 0.018, 12), (35, 20, 20))


def _draw_mouth(canvas: _Canvas, identity: FaceIdentity, p: ExpressionParams) -> None:
    """Lips around a centre line that bends up at the corners; the jaw opens a dark gap with teeth."""
    half = identity.mouth_half_width * max(1.0 + p.mouth_width, 0.4)
    corner = p.mouth_corner + identity.resting_corner
    opening = max(p.mouth_open, 0.0)
    lip = identity.lip_thickness * max(1.0 - 0.8 * p.lip_press, 0.15)
    x = np.linspace(-1.0, 1.0, 25)
    shape = np.sqrt(np.clip(1 - x**2, 0, 1))
    xs = half * x
    centre = identity.mouth_y - corner * x**2 - p.upper_lip_raise * 0.5 * shape
    inner_upper = centre - 0.25 * opening * shape - p.upper_lip_raise * shape
    inner_lower = centre + 0.75 * opening * shape
    outer_upper = inner_upper - lip * (0.3 + 0.7 * shape)
    outer_lower = inner_lower + 1.2 * lip * (0.3 + 0.7 * shape)
    lips = np.concatenate([np.stack([xs, outer_upper], 1), np.stack([xs, outer_lower], 1)[::-1]])
    canvas.polygon(lips, identity.lip)
    gap = np.concatenate([np.stack([xs, inner_upper], 1), np.stack([xs, inner_lower], 1)[::-1]])
    canvas.polygon(gap, (45, 12, 18))
    if p.teeth > 0 and opening + p.upper_lip_raise > 0.005:
        teeth_lower = np.minimum(inner_upper + (0.06 * p.teeth + 0.2 * opening) * shape, inner_lower)
        teeth = np.concatenate([np.stack([xs, inner_upper], 1), np.stack([xs, teeth_lower], 1)[::-1]])
        canvas.polygon(teeth, _lerp_color(identity.lip, (250, 250, 245), 0.35 + 0.65 * p.teeth))
    canvas.line(np.stack([xs, centre], 1), (60, 20, 25), 0.012)


def render_face(
    identity: FaceIdentity,
    expression_weights: Sequence[float] | np.ndarray,
    size: int,
    rng: np.random.Generator,
    pose: HeadPose | None = None,
    expression_names: Sequence[str] = EXPRESSIONS,
) -> np.ndarray:
    """Render one RGB frame ``(size, size, 3)`` uint8 of ``identity`` showing the given expression.

    ``expression_weights[k]`` is the amplitude of ``expression_names[k]`` (EXPRESSIONS order by
    default, neutral implied). ``rng`` only draws the sensor noise, so a fixed identity, expression and
    pose differ between calls only by noise.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    params = expression_params(expression_weights, expression_names)
    pose = pose or HeadPose()
    big = size * _SUPERSAMPLE
    image = _background(identity, big)
    canvas = _Canvas(image, pose, origin=(0.0, 0.08))
    for draw_part in (_draw_head, _draw_brows, _draw_eyes, _draw_nose, _draw_mouth):
        draw_part(canvas, identity, params)
    pixels = np.asarray(image.reduce(_SUPERSAMPLE), dtype=np.float32)
    # Lighting: a directional gradient across the frame, overall gain and colour cast.
    coords = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    lx, ly = identity.light_direction
    light = 1.0 + identity.light_strength * (lx * coords[None, :] + ly * coords[:, None])
    gain = identity.brightness * np.asarray(identity.white_balance, dtype=np.float32)
    pixels = pixels * light[:, :, None] * gain
    pixels += rng.normal(0.0, identity.noise_std, size=pixels.shape).astype(np.float32)
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------------
# Temporal profiles
# --------------------------------------------------------------------------------------------------


def _smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def expression_profile(
    times: np.ndarray,
    start: float,
    onset: float,
    release_start: float = math.inf,
    release: float = 1.0,
    residual: float = 0.0,
) -> np.ndarray:
    """Amplitude in 0..1 over ``times``: rest, smooth onset of length ``onset``, hold, then release.

    After ``release_start`` the amplitude falls over ``release`` to ``residual`` (0 = back to rest).
    """
    times = np.asarray(times, dtype=np.float64)
    rise = _smoothstep((times - start) / max(onset, 1e-6))
    fall = 1.0 - (1.0 - residual) * _smoothstep((times - release_start) / max(release, 1e-6))
    return rise * fall


# --------------------------------------------------------------------------------------------------
# Video writing
# --------------------------------------------------------------------------------------------------


def rgb_to_yuv420p(frames: np.ndarray) -> np.ndarray:
    """RGB uint8 ``(T, H, W, 3)`` to planar BT.601 limited-range 4:2:0, ``(T, H * 3 // 2, W)`` uint8.

    Done in numpy rather than by FFmpeg's scaler inside the encoder, so the samples handed to x264
    are fixed by the frames alone. Chroma is the mean of each 2x2 block; decoders' default BT.601
    conversion inverts it.
    """
    rgb = frames.astype(np.float32)
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = 16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0
    cb = 128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0
    cr = 128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0
    t, h, w = y.shape
    chroma = [c.reshape(t, h // 2, 2, w // 2, 2).mean(axis=(2, 4)).reshape(t, -1) for c in (cb, cr)]
    packed = np.concatenate([y.reshape(t, -1), *chroma], axis=1).reshape(t, h * 3 // 2, w)
    return np.clip(np.rint(packed), 0, 255).astype(np.uint8)


def encode_mp4(path: str | Path, frames: np.ndarray | Sequence[np.ndarray], fps: float) -> Path:
    """Encode RGB uint8 frames ``(T, H, W, 3)`` as H.264/yuv420p MP4 (QP 18), byte-for-byte repeatably.

    H.264 with 4:2:0 chroma needs even width and height.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise ValueError(
            f"{path}: frames must be a non-empty uint8 array (T, H, W, 3), got {frames.dtype} {frames.shape}"
        )
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"{path}: H.264 yuv420p needs even frame sizes, got {width}x{height}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w", format="mp4") as container:
        # Constant QP and one thread keep the bytes repeatable. CRF's macroblock-tree rate control
        # gave different bytes for the same frames after PyAV had decoded a video in the process.
        options = {"qp": "18", "preset": "fast", "threads": "1"}
        stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001), options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        for planes in rgb_to_yuv420p(frames):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(planes, format="yuv420p")))
        container.mux(stream.encode(None))
    return path


# --------------------------------------------------------------------------------------------------
# DFEW stand-in
# --------------------------------------------------------------------------------------------------


def _dfew_label_plan(num_clips: int, other_class_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """DFEW ids per clip: balanced over the four used classes plus a share of sad/disgust/fear."""
    num_other = int(round(num_clips * other_class_fraction))
    used = [_CLASS_TO_DFEW_ID[k % len(EXPRESSIONS)] for k in range(num_clips - num_other)]
    other = [_OTHER_DFEW_IDS[k % len(_OTHER_DFEW_IDS)] for k in range(num_other)]
    return rng.permutation(np.array(used + other, dtype=np.int64))


def _dfew_folds(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Test fold (0..4) per clip, stratified by label: the five test sets partition the clips."""
    folds = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        folds[members] = (offset + np.arange(len(members))) % NUM_DFEW_FOLDS
        offset += len(members)  # continue the round-robin so small classes do not all land in fold 1
    return folds


def _slow_drift(
    rng: np.random.Generator, times: np.ndarray, ceiling: float, count: int, max_rate: float
) -> np.ndarray:
    """Faint amplitudes ``(len(times), count)`` below ``ceiling``, oscillating at most ``max_rate`` cycles
    per unit of ``times``: no face is perfectly still."""
    level = rng.uniform(0.0, ceiling, size=count)
    wave = np.sin(2 * np.pi * rng.uniform(0.2 * max_rate, max_rate) * times[:, None] + rng.uniform(0, 2 * np.pi))
    return level * (0.5 + 0.5 * wave)


def _dfew_clip_weights(
    label: int, num_frames: int, rng: np.random.Generator
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Per-frame expression weights of one clip: onset, apex, maybe offset of its labelled expression."""
    names: tuple[str, ...] = EXPRESSIONS + ("sad", "disgust", "fear")
    t = np.arange(num_frames) / max(num_frames - 1, 1)
    weights = np.zeros((num_frames, len(names)))
    # A little leakage of other expressions, as in real footage.
    weights[:, 1:] = _slow_drift(rng, t, 0.08, len(names) - 1, max_rate=1.0)
    name = DFEW_LABEL_NAMES[label]
    name = _DFEW_NAME_TO_EXPRESSION.get(name, name)
    if name != "neutral":
        amplitude = rng.uniform(0.6, 1.0)
        start = rng.uniform(0.0, 0.2)
        onset = rng.uniform(0.08, 0.25)
        has_offset = rng.random() < 0.5
        release_start = rng.uniform(0.75, 0.9) if has_offset else math.inf
        release, residual = rng.uniform(0.1, 0.25), rng.uniform(0.3, 0.6)
        profile = expression_profile(t, start, onset, release_start, release, residual)
        weights[:, names.index(name)] = amplitude * profile
    return weights, names


def _dfew_clip_lengths(
    num_clips: int, min_frames: int, max_frames: int, short_clip_fraction: float, rng: np.random.Generator
) -> np.ndarray:
    num_short = int(round(num_clips * short_clip_fraction))
    if short_clip_fraction > 0 and num_clips >= 1:
        num_short = max(num_short, 1)
    if num_short and min_frames >= _SHORT_CLIP_FRAMES:
        raise ValueError(
            f"short_clip_fraction={short_clip_fraction} asks for clips under {_SHORT_CLIP_FRAMES} frames "
            f"but min_frames={min_frames}"
        )
    short = rng.integers(min_frames, min(max_frames, _SHORT_CLIP_FRAMES - 1) + 1, size=num_short)
    long_low = max(min_frames, _SHORT_CLIP_FRAMES) if max_frames >= _SHORT_CLIP_FRAMES else min_frames
    regular = rng.integers(long_low, max_frames + 1, size=num_clips - num_short)
    return rng.permutation(np.concatenate([short, regular]))


def make_dfew_tree(
    root: str | Path,
    num_clips: int = 120,
    min_frames: int = 8,
    max_frames: int = 40,
    size: int = 64,
    seed: int = 0,
    other_class_fraction: float = 0.1,
    short_clip_fraction: float = 0.05,
    write_mp4: bool = False,
) -> Path:
    """Write a synthetic DFEW in DFEW's on-disk layout and return ``root``.

    Args:
        root: output folder (created; existing synthetic files are overwritten).
        num_clips: number of single-labelled clips (at least 5, one per fold).
        min_frames: fewest frames in a clip.
        max_frames: most frames in a clip.
        size: frame side in pixels (the folder keeps DFEW's name ``clip_224x224``).
        seed: random seed; the same seed and arguments give byte-identical files.
        other_class_fraction: share of clips labelled sad/disgust/fear (DFEW ids 2, 6, 7), which a
            four-class loader must drop; the rest is balanced over neutral, happy, surprise, angry.
        short_clip_fraction: share of clips shorter than 16 frames (at least one when > 0).
        write_mp4: also write ``Clip/original/<id>.mp4`` (H.264, 25 fps; needs an even ``size``).

    Layout: ``Clip/clip_224x224/<5-digit id>/<id>_<5-digit frame>.jpg`` (frames from 00001),
    ``EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv`` with ``video_name,label``
    (DFEW ids 1..7); the five test sets partition the clips and train set k is the rest. Also
    ``synthetic_info.json`` with the arguments and label counts.
    """
    if num_clips < NUM_DFEW_FOLDS:
        raise ValueError(f"num_clips must be at least {NUM_DFEW_FOLDS} (one per fold), got {num_clips}")
    if not 1 <= min_frames <= max_frames:
        raise ValueError(f"need 1 <= min_frames <= max_frames, got {min_frames} and {max_frames}")
    if not 0.0 <= other_class_fraction < 1.0 or not 0.0 <= short_clip_fraction <= 1.0:
        raise ValueError(
            f"need 0 <= other_class_fraction < 1 and 0 <= short_clip_fraction <= 1, "
            f"got {other_class_fraction} and {short_clip_fraction}"
        )
    if write_mp4 and size % 2:
        raise ValueError(f"write_mp4 needs an even size for H.264 yuv420p, got {size}")
    root = Path(root)
    plan_seed, *clip_seeds = np.random.SeedSequence(seed).spawn(num_clips + 1)
    plan_rng = np.random.default_rng(plan_seed)
    labels = _dfew_label_plan(num_clips, other_class_fraction, plan_rng)
    lengths = _dfew_clip_lengths(num_clips, min_frames, max_frames, short_clip_fraction, plan_rng)
    folds = _dfew_folds(labels, plan_rng)
    video_names = [f"{i + 1:05d}" for i in range(num_clips)]

    for name, label, num_frames, clip_seed in zip(video_names, labels, lengths, clip_seeds):
        rng = np.random.default_rng(clip_seed)
        identity = sample_identity(rng)
        weights, names = _dfew_clip_weights(int(label), int(num_frames), rng)
        poses = sample_head_motion(rng, int(num_frames))
        frames = [render_face(identity, w, size, rng, pose, names) for w, pose in zip(weights, poses)]
        clip_dir = root / DFEW_FRAMES_DIR / name
        clip_dir.mkdir(parents=True, exist_ok=True)
        for index, frame in enumerate(frames, start=1):
            Image.fromarray(frame).save(clip_dir / f"{name}_{index:05d}.jpg", quality=90)
        if write_mp4:
            encode_mp4(root / DFEW_VIDEOS_DIR / f"{name}.mp4", np.stack(frames), fps=25)

    for split, directory in DFEW_SPLIT_DIRS.items():
        (root / directory).mkdir(parents=True, exist_ok=True)
        for fold in range(NUM_DFEW_FOLDS):
            keep = folds == fold if split == "test" else folds != fold
            with open(root / directory / f"set_{fold + 1}.csv", "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["video_name", "label"])
                writer.writerows([video_names[i], int(labels[i])] for i in np.flatnonzero(keep))

    info = {
        "generator": "dfer_pd.synthetic.render.make_dfew_tree",
        "seed": seed, "num_clips": num_clips, "min_frames": min_frames, "max_frames": max_frames,
        "size": size, "other_class_fraction": other_class_fraction,
        "short_clip_fraction": short_clip_fraction, "write_mp4": write_mp4,
        "label_counts": {str(k): int((labels == k).sum()) for k in sorted(DFEW_LABEL_NAMES)},
        "num_short_clips": int((lengths < _SHORT_CLIP_FRAMES).sum()),
        "num_frames_total": int(lengths.sum()),
    }
    (root / "synthetic_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return root


# --------------------------------------------------------------------------------------------------
# PD cohort stand-in
# --------------------------------------------------------------------------------------------------

# Hypomimia model: PD amplitude = HC amplitude * (1 - AMPLITUDE_LOSS * effect * severity) and
# onset time = HC onset * (1 + ONSET_SLOWING * effect * severity).
AMPLITUDE_LOSS = 0.6
ONSET_SLOWING = 1.5


def sample_subject_latents(
    rng: np.random.Generator, is_pd: np.ndarray, effect_size: float = 1.0
) -> dict[str, np.ndarray]:
    """Per-subject facial latents: expressivity (apex amplitude), onset seconds and PD severity.

    Every subject draws its healthy expressivity (about 0.9), healthy onset (about 0.5 s) and a
    severity in [0.5, 1] from the same distributions whatever its label; only PD subjects then lose
    amplitude and slow down, in proportion to ``effect_size * severity``. With ``effect_size=0`` the
    two groups are therefore identically distributed. HC severity is reported as 0.
    """
    if effect_size < 0:
        raise ValueError(f"effect_size must be >= 0, got {effect_size}")
    is_pd = np.asarray(is_pd, dtype=bool)
    n = len(is_pd)
    healthy_expressivity = np.clip(rng.normal(0.9, 0.07, size=n), 0.65, 1.0)
    healthy_onset = np.clip(rng.normal(0.5, 0.1, size=n), 0.25, 0.8)
    severity = rng.uniform(0.5, 1.0, size=n) * is_pd
    expressivity = np.clip(healthy_expressivity * (1 - AMPLITUDE_LOSS * effect_size * severity), 0.0, 1.0)
    onset = healthy_onset * (1 + ONSET_SLOWING * effect_size * severity)
    return {"expressivity": expressivity, "onset_seconds": onset, "severity": severity}


def _cohort_video_weights(
    expression: str,
    expressivity: float,
    onset_seconds: float,
    fps: float,
    num_frames: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Per-frame EXPRESSIONS weights of one task video: rest, onset, hold and release of ``expression``."""
    times = np.arange(num_frames) / fps
    duration = num_frames / fps
    weights = np.zeros((num_frames, len(EXPRESSIONS)))
    # Small relaxed drift of every expression; the asked one is added on top.
    weights[:, 1:] = _slow_drift(rng, times, 0.06, len(EXPRESSIONS) - 1, max_rate=0.4)
    if expression != "neutral":
        amplitude = np.clip(expressivity * rng.uniform(0.9, 1.1), 0.0, 1.0)
        onset = onset_seconds * rng.uniform(0.85, 1.15)
        start = rng.uniform(0.05, 0.15) * duration
        release_start = max(start + onset, duration - rng.uniform(0.15, 0.25) * duration)
        profile = expression_profile(times, start, onset, release_start, 0.8 * onset)
        weights[:, EXPRESSIONS.index(expression)] += amplitude * profile
    return weights


def make_pd_cohort(
    root: str | Path,
    num_subjects: int = 40,
    pd_fraction: float = 0.5,
    effect_size: float = 1.0,
    fps: float = 10,
    seconds: float = 4.0,
    size: int = 64,
    seed: int = 0,
    expressions: Sequence[str] = EXPRESSIONS,
) -> Path:
    """Write a synthetic PD/HC cohort of expression-task videos and return the manifest path.

    Args:
        root: output folder (created; existing synthetic files are overwritten).
        num_subjects: number of subjects ``S001``, ``S002``, ...
        pd_fraction: share of PD subjects; ``round(num_subjects * pd_fraction)`` of them, moved to
            keep both labels present when 0 < pd_fraction < 1.
        effect_size: hypomimia strength. PD apex amplitude = healthy amplitude * (1 - 0.6 * effect *
            severity) and onset time = healthy onset * (1 + 1.5 * effect * severity), severity per
            subject in [0.5, 1]. 0 makes PD and HC faces identically distributed.
        fps: frame rate of the videos.
        seconds: length of each video.
        size: frame side in pixels (even, for H.264 yuv420p).
        seed: random seed; the same seed and arguments give byte-identical files.
        expressions: the asked expressions, one video each (names from EXPRESSIONS).

    Layout: ``<subject>/<expression>.mp4``; ``manifest.csv`` with columns
    ``subject_id,label,expression,path,sex,age`` (label PD/HC, path relative to the manifest's
    folder); ``ground_truth.csv`` with ``subject_id,label,expressivity,onset_seconds,severity``;
    ``synthetic_info.json`` with the arguments.
    """
    if num_subjects < 1:
        raise ValueError(f"num_subjects must be at least 1, got {num_subjects}")
    if not 0.0 <= pd_fraction <= 1.0:
        raise ValueError(f"pd_fraction must lie in [0, 1], got {pd_fraction}")
    if size % 2 or size < 8:
        raise ValueError(f"size must be even (H.264 yuv420p) and at least 8, got {size}")
    unknown = [e for e in expressions if e not in EXPRESSIONS]
    if unknown or not expressions:
        raise ValueError(f"expressions must be a non-empty subset of {EXPRESSIONS}, got {tuple(expressions)}")
    num_frames = int(round(fps * seconds))
    if num_frames < 2:
        raise ValueError(f"fps * seconds must give at least 2 frames, got fps={fps}, seconds={seconds}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)

    num_pd = int(round(num_subjects * pd_fraction))
    if 0.0 < pd_fraction < 1.0 and num_subjects >= 2:
        num_pd = min(max(num_pd, 1), num_subjects - 1)
    plan_seed, *subject_seeds = np.random.SeedSequence(seed).spawn(num_subjects + 1)
    plan_rng = np.random.default_rng(plan_seed)
    is_pd = plan_rng.permutation(np.arange(num_subjects) < num_pd)
    latents = sample_subject_latents(plan_rng, is_pd, effect_size)
    sexes = plan_rng.choice(["M", "F"], size=num_subjects)
    ages = np.clip(np.rint(plan_rng.normal(66, 8, size=num_subjects)), 45, 90).astype(int)
    subject_ids = [f"S{i + 1:03d}" for i in range(num_subjects)]

    manifest_rows, truth_rows = [], []
    for i, (subject, subject_seed) in enumerate(zip(subject_ids, subject_seeds)):
        rng = np.random.default_rng(subject_seed)
        identity = sample_identity(rng)
        label = COHORT_LABELS[int(is_pd[i])]
        for expression in expressions:
            weights = _cohort_video_weights(
                expression, latents["expressivity"][i], latents["onset_seconds"][i], fps, num_frames, rng
            )
            poses = sample_head_motion(rng, num_frames, amplitude=0.6)
            frames = np.stack([render_face(identity, w, size, rng, pose) for w, pose in zip(weights, poses)])
            relative = f"{subject}/{expression}.mp4"
            encode_mp4(root / relative, frames, fps)
            manifest_rows.append([subject, label, expression, relative, sexes[i], int(ages[i])])
        truth_rows.append([
            subject, label, f"{latents['expressivity'][i]:.6f}", f"{latents['onset_seconds'][i]:.6f}",
            f"{latents['severity'][i]:.6f}",
        ])

    manifest = root / "manifest.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject_id", "label", "expression", "path", "sex", "age"])
        writer.writerows(manifest_rows)
    with open(root / "ground_truth.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject_id", "label", "expressivity", "onset_seconds", "severity"])
        writer.writerows(truth_rows)
    info = {
        "generator": "dfer_pd.synthetic.render.make_pd_cohort",
        "seed": seed, "num_subjects": num_subjects, "pd_fraction": pd_fraction, "effect_size": effect_size,
        "fps": fps, "seconds": seconds, "size": size, "expressions": list(expressions),
        "num_pd": int(is_pd.sum()), "num_hc": int((~is_pd).sum()), "frames_per_video": num_frames,
        "amplitude_loss": AMPLITUDE_LOSS, "onset_slowing": ONSET_SLOWING,
    }
    (root / "synthetic_info.json").write_text(json.dumps(info, indent=2) + "\n")
    return manifest
