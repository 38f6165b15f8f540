"""The four videos given to diagnose, found and checked before anything heavy is imported (a wrong path
answers at once, from the command line and the web page alike)."""

from __future__ import annotations

from pathlib import Path

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.common.video import VIDEO_SUFFIXES
from dfer_pd.stage2.cohort import EXPRESSION_ALIASES


class DiagnoseInputError(ValueError):
    """The videos given to diagnose are missing, ambiguous, or do not cover the four expressions."""


def find_expression_videos(folder: str | Path | None = None, **explicit: str | None) -> dict[str, Path]:
    """One video per expression: explicit paths win; otherwise files in `folder` named after the expression
    (`happiness.mp4`, `happy.mov`, `S001_anger.mp4` ...)."""
    videos: dict[str, Path] = {}
    if folder is not None:
        folder = Path(folder)
        if not folder.is_dir():
            raise DiagnoseInputError(f"{folder} is not a folder of expression videos")
        names = {**{e: e for e in EXPRESSIONS}, **EXPRESSION_ALIASES}
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in VIDEO_SUFFIXES:
                continue
            tokens = path.stem.lower().replace("-", "_").split("_")
            matches = {names[t] for t in tokens if t in names}
            for expression in matches:
                if expression in videos:
                    raise DiagnoseInputError(f"{folder}: two videos for {expression}: {videos[expression].name} and {path.name}")
                videos[expression] = path
    for expression, path in explicit.items():
        if path:
            videos[expression] = Path(path)
    missing = [e for e in EXPRESSIONS if e not in videos]
    if missing:
        raise DiagnoseInputError(
            f"no video for {', '.join(missing)}" + (f" in {folder}" if folder else "")
            + f": name files after the expression ({', '.join(EXPRESSIONS)}) or pass --<expression> PATH"
        )
    for expression, path in videos.items():
        if not path.is_file():
            raise DiagnoseInputError(f"{path} ({expression} video) does not exist")
    return {e: videos[e] for e in EXPRESSIONS}
