"""Helpers shared by the tests (importable as ``helpers``: pytest puts this folder on the path with conftest.py):
a tiny stage-1 checkpoint, and videos whose frames carry their number."""


def save_stage1_checkpoint(path, seed: int = 0, **overrides):
    """A Lightning-format checkpoint of an untrained tiny DferClipModule (what `train-dfer` writes, minus training)."""
    from pathlib import Path

    import lightning
    import torch

    from dfer_pd.stage1.clip_assets import BUILTIN_TINY_CLIP
    from dfer_pd.stage1.module import DferClipModule

    network = dict(clip_name_or_path=BUILTIN_TINY_CLIP, random_init=True, num_frames=4, num_context=2,
                   gate_heads=4, temporal_heads=4, temporal_mlp_dim=64, seed=seed)
    network.update(overrides)
    module = DferClipModule(network=network)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                "pytorch-lightning_version": lightning.__version__}, path)
    return path


# --------------------------------------------------------------------------- numbered videos

# Frames carry their number as three horizontal bands (base-8 digits, most significant on top, gray level
# 15 + 30 * digit: codec noise of a few levels cannot change a digit), read in the right half, and a white
# block in the top-left corner, so both the frame and its orientation can be checked after decoding.
FRAME_HEIGHT, FRAME_WIDTH = 48, 64


def numbered_frame(number: int, height: int = FRAME_HEIGHT, width: int = FRAME_WIDTH):
    """One RGB uint8 frame (height, width, 3) carrying ``number`` (0..511)."""
    import numpy as np

    frame = np.zeros((height, width, 3), np.uint8)
    digits = [(number // 64) % 8, (number // 8) % 8, number % 8]
    for rows, digit in zip(np.array_split(np.arange(height), 3), digits):
        frame[rows] = 15 + 30 * digit
    frame[: height // 4, : width // 4] = 255  # orientation mark
    return frame


def frame_numbers(frames) -> list[int]:
    """The number each decoded frame of ``frames`` (T, H, W, 3) carries (:func:`numbered_frame`)."""
    import numpy as np

    numbers = []
    for frame in frames:
        height, width = frame.shape[:2]
        digits = []
        for rows in np.array_split(np.arange(height), 3):
            band = frame[rows[0] + len(rows) // 4 : rows[-1] + 1 - len(rows) // 4, width // 2 + 1 :]
            digits.append(int(np.clip(round((band.mean() - 15) / 30), 0, 7)))
        numbers.append(digits[0] * 64 + digits[1] * 8 + digits[2])
    return numbers


def require_encoder(codec: str, pix_fmt: str | None = None) -> None:
    """Skip (with the reason) when this PyAV build cannot write the case; never fake it."""
    import av
    import pytest

    try:
        encoder = av.Codec(codec, "w")
    except Exception:
        pytest.skip(f"this PyAV build has no {codec} encoder")
    formats = {f.name for f in encoder.video_formats or []}
    if pix_fmt and formats and pix_fmt not in formats:
        pytest.skip(f"this PyAV build's {codec} cannot write {pix_fmt} (has {sorted(formats)})")


def write_video(
    path,
    num_frames: int,
    codec: str = "libx264",
    pix_fmt: str | None = None,
    height: int = FRAME_HEIGHT,
    width: int = FRAME_WIDTH,
    rate: int = 25,
    options: dict | None = None,
    container_options: dict | None = None,
    rotation: int | None = None,
    pts_ms: list[int] | None = None,
    keyint: int | None = None,
):
    """Numbered frames ``0..num_frames-1`` (:func:`numbered_frame`) in ``path``, written with PyAV.

    ``pix_fmt`` defaults to yuvj420p for mjpeg and yuv420p otherwise; ``pts_ms`` gives millisecond timestamps
    (variable frame rate); ``keyint`` fixes x264's keyframe interval (it otherwise adds keyframes at every
    "scene cut"); ``rotation`` writes a display matrix (counter-clockwise degrees, as phones record)."""
    from fractions import Fraction
    from pathlib import Path

    import av

    pix_fmt = pix_fmt or ("yuvj420p" if codec == "mjpeg" else "yuv420p")
    require_encoder(codec, pix_fmt)
    options = dict(options or {})
    if keyint:
        options["x264-params"] = f"keyint={keyint}:min-keyint={keyint}:scenecut=0"
    if codec == "libx265":
        options.setdefault("x265-params", "log-level=error")
    with av.open(str(path), "w", options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate, options=options)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if pts_ms is not None:
            stream.codec_context.time_base = stream.time_base = Fraction(1, 1000)
        if rotation is not None:
            stream.set_display_rotation(rotation)
        for number in range(num_frames):
            frame = av.VideoFrame.from_ndarray(numbered_frame(number, height, width), format="rgb24")
            if pts_ms is not None:
                frame.pts, frame.time_base = pts_ms[number], Fraction(1, 1000)
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return Path(path)



def offline_run_records(run_dir) -> list:
    """Every record of an offline W&B run (``offline-run-*/run-<id>.wandb``) as wandb's own protobuf ``Record``.

    The file is W&B's 7-byte header then a LevelDB-style log: 32 KiB blocks of chunks, each with a 7-byte header
    (crc32, length, kind: 1 full, 2 first, 3 middle, 4 last); a block's tail under 7 bytes is padding.
    """
    from pathlib import Path

    from wandb.proto import wandb_internal_pb2

    (path,) = list(Path(run_dir).glob("*.wandb"))
    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B run file"
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:
            position += left
            continue
        length, kind = int.from_bytes(data[position + 4:position + 6], "little"), data[position + 6]
        chunk = data[position + 7:position + 7 + length]
        position += 7 + length
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4) and pending:
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def offline_run_contents(run_dir) -> dict:
    """What a researcher sees of an offline run: its name and job type, every logged history key, the summary."""
    import json

    contents = {"name": None, "job_type": None, "history": {}, "summary": {}}
    for record in offline_run_records(run_dir):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            contents["name"], contents["job_type"] = record.run.display_name, record.run.job_type
        elif kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                if not key.startswith("_"):
                    contents["history"][key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in record.summary.update:
                contents["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
    return contents


# --------------------------------------------------------------------------- screening models

def with_cv_figures(model):
    """The model as `train-pd` saves it: its CV summary (accuracy, ROC AUC with intervals) and platt calibration."""
    import dataclasses

    import numpy as np
    import pandas as pd

    from dfer_pd.stage2.screening_model import calibration_from_cv

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 200)
    predictions = pd.DataFrame({"subject_id": [f"S{i}" for i in range(200)], "label": labels,
                                "p_pd": np.clip(labels * 0.6 + rng.uniform(0, 0.4, 200), 0, 1)})
    calibrator, report = calibration_from_cv(predictions, "platt")
    summary = {"cv/accuracy_mean": 0.81, "cv/accuracy_ci_low": 0.7, "cv/accuracy_ci_high": 0.9, "cv/roc_auc_mean": 0.88,
               "cv/roc_auc_ci_low": 0.8, "cv/roc_auc_ci_high": 0.95, "cv/repeats": 10, "cv/n_splits": 5}
    return dataclasses.replace(model, calibration=calibrator, calibration_report=report, cv_summary=summary)
