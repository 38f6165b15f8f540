"""MAFW's single-expression set in its official released layout: eleven classes, five folds.

MAFW (Liu et al., "MAFW: A Large-scale, Multi-modal, Compound Affective Database for Dynamic Facial
Expression Recognition in the Wild", ACM MM 2022; https://github.com/MAFW-database/MAFW) has 10,045 clips;
its single-expression set, 9,172 clips in 11 classes, is evaluated by 5-fold cross-validation. The
release (its README's content preview: ``data/`` with ``clips`` and ``frames``, ``Train & Test Set/`` with
``single`` and ``compound``), as read by MAE-DFER (``preprocess/mafw.py``,
https://github.com/sunlicai/MAE-DFER) and listed by DFER-CLIP (``annotation/MAFW_set_*``,
https://github.com/zengqunzhao/DFER-CLIP), holds:

- videos ``data/clips/<5-digit id>.mp4`` and frame folders ``data/frames/<5-digit id>/``;
- the folds ``Train & Test Set/single/no_caption/set_{1..5}/{train,test}.txt``: no header, one clip a
  line, its file name and its label separated by a space, e.g. ``00025.mp4 anger`` (some copies name the
  folder ``Train_Test_Set``);
- labels anger, disgust, fear, happiness, neutral, sadness, surprise, contempt, anxiety, helplessness,
  disappointment: the paper's order (its Table 3), kept as ``class_names``.

``clips`` chooses the folder a clip is read from, relative to the root: ``data/frames`` (default),
``data/clips`` (the videos), or a folder of face crops laid out the same way (DFER-CLIP reads
``data/faces/<id>/``). In each, a clip is a folder ``<id>/`` of frames or a video ``<id>.<suffix>``.
"""

from __future__ import annotations

from pathlib import Path

from dfer_pd.common.video import VIDEO_SUFFIXES
from dfer_pd.stage1.datasets.base import ClipDataModule, ClipLayoutError, ClipRecord, Split

MAFW_CLASSES: tuple[str, ...] = (
    "anger", "disgust", "fear", "happiness", "neutral", "sadness", "surprise",
    "contempt", "anxiety", "helplessness", "disappointment",
)
SPLIT_DIRS: tuple[str, ...] = ("Train & Test Set", "Train_Test_Set")
SINGLE_SET = Path("single") / "no_caption"


class MafwLayoutError(ClipLayoutError):
    """The MAFW root does not have the official layout."""


def split_file(root: Path, split: Split, fold: int) -> Path:
    """``Train & Test Set/single/no_caption/set_<fold>/<split>.txt`` (or under ``Train_Test_Set``)."""
    if fold not in range(1, 6):
        raise ValueError(f"MAFW fold must be 1..5, got {fold}")
    relative = SINGLE_SET / f"set_{fold}" / f"{split}.txt"
    for folder in SPLIT_DIRS:
        path = Path(root) / folder / relative
        if path.is_file():
            return path
    raise MafwLayoutError(f"{Path(root) / SPLIT_DIRS[0] / relative} not found under MAFW root {root} "
                          f"(also looked in {SPLIT_DIRS[1]}/)")


def read_split(path: Path) -> list[tuple[str, str]]:
    """(5-digit clip id, class name) for each line of a fold file."""
    rows = []
    with open(path, encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise MafwLayoutError(f"{path}:{line_number}: expected '<id>.mp4 <label>', got {line.strip()!r}")
            name, label = fields[0], fields[1].lower()
            clip_id = Path(name).stem
            if not clip_id.isdigit():
                raise MafwLayoutError(f"{path}:{line_number}: clip {name!r} is not a numbered MAFW clip (e.g. 00025.mp4)")
            if label not in MAFW_CLASSES:
                raise MafwLayoutError(f"{path}:{line_number}: label {fields[1]!r} is not one of {', '.join(MAFW_CLASSES)}")
            rows.append((clip_id, label))
    return rows


def clip_path(root: Path, clip_id: str, clips: str = "data/frames") -> Path:
    """A clip's frame folder ``<clips>/<id>/``, else its video ``<clips>/<id>.<suffix>``."""
    folder = Path(root) / clips
    frames = folder / clip_id
    if frames.is_dir():
        return frames
    for suffix in VIDEO_SUFFIXES:
        video = folder / f"{clip_id}{suffix}"
        if video.is_file():
            return video
    return frames  # missing: reported with the other unreadable clips


def mafw_records(root: Path, split: Split, fold: int, clips: str = "data/frames") -> list[ClipRecord]:
    """The fold's clips, keyed by id, labels indexing MAFW_CLASSES."""
    return [
        ClipRecord(key=clip_id, path=clip_path(root, clip_id, clips), label=MAFW_CLASSES.index(label))
        for clip_id, label in read_split(split_file(root, split, fold))
    ]


class MafwDataModule(ClipDataModule):
    """MAFW single-expression fold ``fold`` (1..5): its training list minus a seeded, stratified validation split.

    Args:
        root: the MAFW root (holding ``data/`` and ``Train & Test Set/``).
        fold: the official fold, 1..5.
        clips: the folder clips are read from, relative to the root: ``data/frames``, ``data/clips``, ...
    """

    name = "MAFW"
    layout_error = MafwLayoutError

    def __init__(self, root: str, fold: int = 1, clips: str = "data/frames", **kwargs) -> None:
        if fold not in range(1, 6):
            raise ValueError(f"MAFW fold must be 1..5, got {fold}")
        super().__init__(root, **kwargs)
        self._set_class_names(MAFW_CLASSES)

    def describe(self, split: str) -> str:
        return f"MAFW {split} fold {self.hparams.fold}"

    def split_records(self, split: Split) -> list[ClipRecord]:
        hp = self.hparams
        return mafw_records(Path(hp.root), split, hp.fold, hp.clips)
