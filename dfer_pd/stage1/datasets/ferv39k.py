"""FERV39k in its official released layout: seven classes, one official train/test split.

FERV39k (Wang et al., "FERV39k: A Large-Scale Multi-Scene Dataset for Facial Expression Recognition in
Videos", CVPR 2022; https://github.com/wangyanckxx/FERV39k) has 38,935 clips from 22 scenes, 31,088 for
training and 7,847 for testing. The release, as read by MAE-DFER (``preprocess/ferv39k.py``,
https://github.com/sunlicai/MAE-DFER) and listed by DFER-CLIP (``annotation/FERV39K_*.txt``,
https://github.com/zengqunzhao/DFER-CLIP), holds:

- face-cropped frames ``2_ClipsforFaceCrop/<Scene>/<Emotion>/<4-digit clip>/*.jpg``
  (some unzipped copies nest it once more: ``2_ClipsforFaceCrop/2_ClipsforFaceCrop/...``, also read);
- the all-scenes split ``4_setups/All_scenes/train_All.csv`` and ``test_All.csv``: no header, one clip a
  line, its path under the frame folder and its label separated by a space, e.g. ``Action/Sad/0010 Sad``;
- labels Happy, Sad, Neutral, Angry, Surprise, Disgust, Fear.

``class_names`` follow the index order DFER-CLIP and MAE-DFER use for FERV39k (and DFEW): happiness,
sadness, neutral, anger, surprise, disgust, fear. FERV39k has no folds and no validation split: the
validation split is carved from ``train_All.csv``; ``test_All.csv`` is the test set.
"""

from __future__ import annotations

from pathlib import Path

from dfer_pd.stage1.datasets.base import ClipDataModule, ClipLayoutError, ClipRecord, Split

# Label words of the split files -> canonical class names, in DFER-CLIP's and MAE-DFER's index order.
FERV39K_LABELS: dict[str, str] = {
    "Happy": "happiness", "Sad": "sadness", "Neutral": "neutral", "Angry": "anger",
    "Surprise": "surprise", "Disgust": "disgust", "Fear": "fear",
}
FERV39K_CLASSES: tuple[str, ...] = tuple(FERV39K_LABELS.values())
FACE_FRAMES = "2_ClipsforFaceCrop"
SETUP_DIR = Path("4_setups") / "All_scenes"


class Ferv39kLayoutError(ClipLayoutError):
    """The FERV39k root does not have the official layout."""


def setup_file(root: Path, split: Split) -> Path:
    """``4_setups/All_scenes/{train,test}_All.csv``."""
    path = Path(root) / SETUP_DIR / f"{split}_All.csv"
    if not path.is_file():
        raise Ferv39kLayoutError(f"{path} not found under FERV39k root {root} (expected {SETUP_DIR}/{split}_All.csv)")
    return path


def read_setup(path: Path) -> list[tuple[str, str]]:
    """(clip path relative to the frame folder, canonical class name) for each line of a split file."""
    by_word = {word.lower(): name for word, name in FERV39K_LABELS.items()}
    rows = []
    with open(path, encoding="utf-8-sig") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if line_number == 1 and len(fields) <= 2 and "/" not in fields[0] and fields[-1].lower() not in by_word:
                continue  # a header line ("video label"), which some re-saved copies add
            if len(fields) != 2:
                raise Ferv39kLayoutError(f"{path}:{line_number}: expected '<Scene>/<Emotion>/<clip> <Label>', got {line.strip()!r}")
            clip, word = fields
            clip = clip.replace("\\", "/").strip("/")
            if len(clip.split("/")) != 3 or ".." in clip.split("/"):
                raise Ferv39kLayoutError(f"{path}:{line_number}: clip {clip!r} is not '<Scene>/<Emotion>/<clip>'")
            if word.lower() not in by_word:
                raise Ferv39kLayoutError(f"{path}:{line_number}: label {word!r} is not one of {', '.join(FERV39K_LABELS)}")
            rows.append((clip, by_word[word.lower()]))
    return rows


def frames_root(root: Path, frames: str = FACE_FRAMES) -> Path:
    """The frame folder; a copy unzipped into a folder of the same name is looked into."""
    folder = Path(root) / frames
    nested = folder / Path(frames).name
    return nested if nested.is_dir() else folder


def ferv39k_records(root: Path, split: Split, frames: str = FACE_FRAMES) -> list[ClipRecord]:
    """The split's clips, keyed by their path (``Action/Sad/0010``), labels indexing FERV39K_CLASSES."""
    folder = frames_root(root, frames)
    return [
        ClipRecord(key=clip, path=folder / clip, label=FERV39K_CLASSES.index(name))
        for clip, name in read_setup(setup_file(root, split))
    ]


class Ferv39kDataModule(ClipDataModule):
    """FERV39k: ``train_All.csv`` minus a seeded, stratified validation split; ``test_All.csv`` for testing.

    Args:
        root: the FERV39k root (holding ``2_ClipsforFaceCrop/`` and ``4_setups/``).
        frame_dir: the frame folder under the root, ``2_ClipsforFaceCrop`` (face crops) by default.
    """

    name = "FERV39k"
    layout_error = Ferv39kLayoutError

    def __init__(self, root: str, frame_dir: str = FACE_FRAMES, **kwargs) -> None:
        super().__init__(root, **kwargs)
        self._set_class_names(FERV39K_CLASSES)

    def split_records(self, split: Split) -> list[ClipRecord]:
        return ferv39k_records(Path(self.hparams.root), split, self.hparams.frame_dir)
