"""Short videos of real faces from photographs that installed packages ship (scikit-image's astronaut,
matplotlib's Grace Hopper), animated by warping: input unlike a synthetic cohort, to check the gate before a
verdict (tests, benchmarks/bench_typicality.py) without any download."""

from __future__ import annotations

from pathlib import Path

import numpy as np

PHOTOS: tuple[str, ...] = ("astronaut", "hopper")
MOTIONS: tuple[str, ...] = ("nod", "turn", "zoom", "tilt")


def photo(name: str = "astronaut") -> np.ndarray:
    """An RGB uint8 photograph of a real face: ``astronaut`` (scikit-image) or ``hopper`` (matplotlib)."""
    if name == "astronaut":
        try:
            from skimage import data
        except ImportError as err:
            raise ImportError("the astronaut photograph comes with scikit-image (pip install scikit-image); "
                              "'hopper' comes with matplotlib") from err
        return data.astronaut()
    if name == "hopper":
        import matplotlib.cbook
        from PIL import Image

        return np.asarray(Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB"))
    raise ValueError(f"no photograph named {name!r}; one of {PHOTOS}")


def photo_video(path: str | Path, name: str = "astronaut", motion: str = "nod", num_frames: int = 10,
                size: int = 32, fps: float = 5) -> Path:
    """A ``size``-pixel square video framing the photograph's face (1.5 face sides), moved by ``motion``:
    ``nod`` (up and down), ``turn`` (side to side), ``zoom`` (closer and back) or ``tilt`` (roll)."""
    import cv2

    from dfer_pd.faces.tracking import DlibHogFaceDetector
    from dfer_pd.synthetic.encode import encode_mp4

    if motion not in MOTIONS:
        raise ValueError(f"motion must be one of {MOTIONS}, got {motion!r}")
    image = photo(name)
    x0, y0, x1, y1 = DlibHogFaceDetector().detect(image)[0, :4]
    side, cx, cy = 1.5 * max(x1 - x0, y1 - y0), (x0 + x1) / 2, (y0 + y1) / 2
    frames = []
    for t in np.linspace(0, 2 * np.pi, num_frames, endpoint=False):
        wave = float(np.sin(t))
        angle, scale, dx, dy = {"nod": (0, 1, 0, 0.06 * wave), "turn": (0, 1, 0.06 * wave, 0),
                                "zoom": (0, 1 + 0.08 * wave, 0, 0), "tilt": (8 * wave, 1, 0, 0)}[motion]
        matrix = cv2.getRotationMatrix2D((float(cx), float(cy)), angle, scale * size / side)
        matrix[:, 2] += [size / 2 - cx + dx * size, size / 2 - cy + dy * size]
        frames.append(cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT))
    return encode_mp4(path, np.stack(frames), fps=fps)
