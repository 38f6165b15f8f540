"""The synthetic face renderer: stand-in faces for DFEW and for a PD cohort.

DFEW is licensed and PD cohorts are confidential, so demos and tests run on procedurally rendered
faces instead. The renderer draws a cartoon face (outline, hair, eyes with lids, brows, nose, mouth)
whose geometry follows continuous expression parameters loosely grounded in FACS action units:

- happiness (AU6+AU12): mouth corners up and wider, teeth, cheeks up, eyes narrowed from below;
- surprise (AU1+AU2+AU5+AU26): brows up, eyes wide, jaw dropped;
- anger (AU4+AU5+AU7+AU23): brows down and drawn together, glare, lips pressed thin;
- neutral: relaxed face.

Identity (face shape, skin tone, feature sizes), lighting, background, head motion and pixel noise vary
per clip, so only the face's *shape* tells the class. Everything is seeded. The writers that use it:
:mod:`dfer_pd.synthetic.dfew` (DFEW's layout) and :mod:`dfer_pd.synthetic.cohort` (a PD cohort);
:mod:`dfer_pd.synthetic.encode` writes the videos.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw

from dfer_pd.common.constants import EXPRESSIONS


# Supersampling factor: shapes are drawn at this multiple of the output size, then box-filtered.
_SUPERSAMPLE = 2


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
        brow_raise=0.07, brow_inner_drop=-0.02, eye_open=0.9, lower_lid_raise=-0.15, mouth_open=0.24,
        mouth_width=-0.28, teeth=0.25,
    ),
    "anger": ExpressionParams(
        brow_raise=-0.04, brow_inner_drop=0.12, brow_squeeze=0.06, eye_open=-0.3, lower_lid_raise=0.4,
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


_DELTA_VECTORS: dict[str, np.ndarray] = {
    name: np.array([getattr(delta, f.name) for f in fields(delta)]) for name, delta in EXPRESSION_DELTAS.items()
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
    # Elementwise float64, in the order of summing ``EXPRESSION_DELTAS[name].scaled(weight)``: same values.
    total = np.zeros(len(_DELTA_VECTORS["neutral"]))
    for name, weight in zip(names, weights):
        total = total + float(weight) * _DELTA_VECTORS[name]
    return ExpressionParams(*total.tolist())


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


def _constant(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


@lru_cache(maxsize=None)
def _unit_circle(n: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return _constant(np.cos(a)), _constant(np.sin(a))


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 32) -> np.ndarray:
    cos, sin = _unit_circle(n)
    points = np.empty((n, 2))
    points[:, 0] = cx + rx * cos
    points[:, 1] = cy + ry * sin
    return points


def _lerp_color(a: Sequence[float], b: Sequence[float], t: float) -> tuple[int, int, int]:
    t = min(max(float(t), 0.0), 1.0)
    return tuple(int(round((1 - t) * x + t * y)) for x, y in zip(a, b))  # type: ignore[return-value]


class _Canvas:
    """PIL drawing in face coordinates: points pass through the head pose, then to supersampled pixels.

    One canvas unit is half the image's width; the canvas origin is the image centre.
    """

    def __init__(self, image: Image.Image, pose: HeadPose, origin: tuple[float, float]):
        self.draw = ImageDraw.Draw(image)
        self.half = image.width / 2
        self.centre = np.array([image.width / 2, image.height / 2])
        theta = math.radians(pose.roll_degrees)
        c, s = math.cos(theta), math.sin(theta)
        self.scale = pose.scale
        self.matrix = pose.scale * np.array([[c, -s], [s, c]])
        self._matrix_t = self.matrix.T
        self.offset = np.array([origin[0] + pose.dx, origin[1] + pose.dy])

    def _pixels(self, points: np.ndarray) -> list[float]:
        """Flat ``[x0, y0, x1, y1, ...]``, which PIL draws exactly as a list of pairs."""
        xy = (points @ self._matrix_t + self.offset) * self.half + self.centre
        return xy.ravel().tolist()

    def polygon(self, points: np.ndarray, color: Sequence[int]) -> None:
        self.draw.polygon(self._pixels(points), fill=tuple(int(c) for c in color))

    def line(self, points: np.ndarray, color: Sequence[int], width: float) -> None:
        pixels = max(1, int(round(width * self.half * self.scale)))
        self.draw.line(self._pixels(points), fill=tuple(int(c) for c in color), width=pixels, joint="curve")


@lru_cache(maxsize=8)
def _background(identity: FaceIdentity, width: int, height: int) -> Image.Image:
    """Vertical gradient between two colours with a few large shapes; fixed for a recording (cached: copy it)."""
    ramp = np.linspace(0.0, 1.0, height)[:, None, None]
    top, bottom = np.array(identity.background_top), np.array(identity.background_bottom)
    pixels = np.broadcast_to((1 - ramp) * top + ramp * bottom, (height, width, 3))
    image = Image.fromarray(np.ascontiguousarray(pixels).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    half = width / 2
    for cx, cy, rx, ry, *rgb in identity.background_blobs:
        box = [(cx - rx) * half + width / 2, (cy - ry) * half + height / 2,
               (cx + rx) * half + width / 2, (cy + ry) * half + height / 2]
        draw.ellipse(box, fill=tuple(int(c) for c in rgb))
    return image


@lru_cache(maxsize=8)
def _lighting(identity: FaceIdentity, width: int, height: int) -> np.ndarray:
    """Per-pixel gain ``(H, W, 3)``: a directional gradient across the frame, overall gain and colour cast."""
    xs = np.linspace(-1.0, 1.0, width, dtype=np.float32)
    ys = np.linspace(-1.0, 1.0, height, dtype=np.float32) * np.float32(height / width)
    lx, ly = identity.light_direction
    light = 1.0 + identity.light_strength * (lx * xs[None, :] + ly * ys[:, None])
    gain = identity.brightness * np.asarray(identity.white_balance, dtype=np.float32)
    return (light[:, :, None] * gain).astype(np.float32)


# Fixed sample positions along the drawn curves, computed once rather than per frame.
_OUTLINE_COS, _OUTLINE_SIN = _unit_circle(48)
_OUTLINE_LOWER = _constant(np.clip(_OUTLINE_SIN, 0.0, None))
_EYE_X = _constant(np.linspace(-1.0, 1.0, 17))
_EYE_BULGE = _constant(np.sqrt(np.clip(1 - _EYE_X**2, 0, 1)))
_BROW_T = _constant(np.linspace(0, 1, 9)[:, None])
_BROW_ARCH = _constant(np.sin(np.pi * _BROW_T[:, 0]))
_BROW_TAPER = _constant(1.0 - 0.45 * _BROW_T)
_MOUTH_X = _constant(np.linspace(-1.0, 1.0, 25))
_MOUTH_X2 = _constant(_MOUTH_X**2)
_MOUTH_SHAPE = _constant(np.sqrt(np.clip(1 - _MOUTH_X**2, 0, 1)))


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
    x, y, lower = _OUTLINE_COS, _OUTLINE_SIN, _OUTLINE_LOWER
    jaw = h + max(p.mouth_open, 0.0) * 0.6
    outline = np.stack([w * x * (1 - identity.chin_taper * lower**2), np.where(y > 0, jaw, h) * y], axis=1)
    # Rounded shading: the rim of the face a little darker than its middle, and shadowed eye sockets,
    # so the face has the light-dark layout of real faces that face detectors look for (without it
    # dlib's HOG detector missed about one phone-like frame in five).
    canvas.polygon(outline, _lerp_color(skin, (0, 0, 0), 0.12))
    canvas.polygon(outline * 0.93 + [0.0, 0.02], _lerp_color(skin, (0, 0, 0), 0.06))
    canvas.polygon(outline * 0.86 + [0.0, 0.03], skin)
    for side in (-1.0, 1.0):
        socket = _ellipse(side * identity.eye_spacing, identity.eye_y - 0.01, identity.eye_half_width * 1.5,
                          identity.eye_upper * 2.4, 24)
        canvas.polygon(socket, _lerp_color(skin, (0, 0, 0), 0.15))


def _draw_eyes(canvas: _Canvas, identity: FaceIdentity, p: ExpressionParams) -> None:
    """Almond eyes whose lids follow eye_open and lower_lid_raise; cheeks and folds for smiles."""
    skin = identity.skin
    ew = identity.eye_half_width
    upper = identity.eye_upper * max(1.0 + p.eye_open, 0.08)
    lower = identity.eye_lower * max(1.0 - p.lower_lid_raise, 0.1)
    blush = _lerp_color(skin, (215, 90, 95), 0.45 * p.cheek_raise)
    fold = _lerp_color(skin, (50, 25, 20), 0.7 * max(p.cheek_raise, 0.0))
    x, bulge = _EYE_X, _EYE_BULGE
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
        t = _BROW_T
        arch_height = 0.035 * (1 + 2 * max(p.brow_raise, 0.0) / 0.07)  # raised brows arch more
        arch = np.stack([np.zeros(9), -arch_height * _BROW_ARCH], 1)
        centre = inner + (outer - inner) * t + arch
        taper = thick * _BROW_TAPER
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
    x, shape = _MOUTH_X, _MOUTH_SHAPE
    xs = half * x
    centre = identity.mouth_y - corner * _MOUTH_X2 - p.upper_lip_raise * 0.5 * shape
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
    size: int | tuple[int, int],
    rng: np.random.Generator,
    pose: HeadPose | None = None,
    expression_names: Sequence[str] = EXPRESSIONS,
) -> np.ndarray:
    """Render one RGB frame of ``identity`` showing the given expression, uint8 ``(H, W, 3)``.

    ``size`` is the side of a square frame, or ``(width, height)``: a phone-like frame in which the
    face (placed by ``pose``, in units of half the frame's width) is one part of the picture.
    ``expression_weights[k]`` is the amplitude of ``expression_names[k]`` (EXPRESSIONS order by
    default, neutral implied). ``rng`` only draws the sensor noise, so a fixed identity, expression and
    pose differ between calls only by noise.
    """
    width, height = (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
    if min(width, height) < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    params = expression_params(expression_weights, expression_names)
    pose = pose or HeadPose()
    image = _background(identity, width * _SUPERSAMPLE, height * _SUPERSAMPLE).copy()
    canvas = _Canvas(image, pose, origin=(0.0, 0.08))
    for draw_part in (_draw_head, _draw_brows, _draw_eyes, _draw_nose, _draw_mouth):
        draw_part(canvas, identity, params)
    pixels = np.asarray(image.reduce(_SUPERSAMPLE), dtype=np.float32) * _lighting(identity, width, height)
    noise = rng.standard_normal(size=pixels.shape, dtype=np.float32)
    noise *= np.float32(identity.noise_std)
    pixels += noise
    np.rint(pixels, out=pixels)
    return np.clip(pixels, 0, 255, out=pixels).astype(np.uint8)


def sample_phone_motion(rng: np.random.Generator, num_frames: int, scale: float = 0.55,
                        aspect: float = 0.75) -> list[HeadPose]:
    """A hand-held phone recording: the face drifts about a frame ``aspect`` (height / width) times as tall as wide.

    A random resting place (within an eighth of the frame from the centre), a slow wander of up to
    a tenth of the frame, breathing-like changes of size (+-2-8%) and head tilts of a few degrees,
    all smooth in time; positions are in units of half the frame's width, the face's size is ``scale``
    times the renderer's full-frame face.
    """
    t = np.arange(num_frames, dtype=np.float64) / max(num_frames - 1, 1)
    base = np.array([rng.uniform(-0.25, 0.25), rng.uniform(-0.12, 0.08) * aspect, 0.0, rng.normal(0.0, 3.0)])
    sway = np.array([rng.uniform(0.05, 0.2), rng.uniform(0.03, 0.12) * aspect, rng.uniform(0.02, 0.08),
                     rng.uniform(2.0, 6.0)])
    freq = rng.uniform(0.2, 0.8, size=4)
    phase = rng.uniform(0, 2 * np.pi, size=4)
    motion = base + sway * np.sin(2 * np.pi * freq * t[:, None] + phase)
    # The renderer puts the face 0.08 below the origin at scale 1; keep it where the motion says.
    shift = -0.08 * (1 - scale)
    return [HeadPose(dx=float(m[0]), dy=float(m[1] + shift), scale=float(scale * np.exp(m[2])),
                     roll_degrees=float(m[3])) for m in motion]


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


def slow_drift(
    rng: np.random.Generator, times: np.ndarray, ceiling: float, count: int, max_rate: float
) -> np.ndarray:
    """Faint amplitudes ``(len(times), count)`` below ``ceiling``, oscillating at most ``max_rate`` cycles
    per unit of ``times``: no face is perfectly still."""
    level = rng.uniform(0.0, ceiling, size=count)
    wave = np.sin(2 * np.pi * rng.uniform(0.2 * max_rate, max_rate) * times[:, None] + rng.uniform(0, 2 * np.pi))
    return level * (0.5 + 0.5 * wave)
