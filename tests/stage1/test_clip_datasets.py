"""Stage-1 clip datasets besides DFEW (FERV39k, MAFW), the shared base, and stage 2's class check.

Each dataset is read from a small tree this file writes in the dataset's official released layout.
"""

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.stage1.clip_assets import BUILTIN_TINY_CLIP
from dfer_pd.stage1.datasets.base import (
    CANONICAL_CLASSES,
    ClipDataModule,
    ClipLayoutError,
    ClipRecord,
    check_stage2_classes,
)
from dfer_pd.stage1.datasets.dfew import DfewDataModule
from dfer_pd.stage1.datasets.ferv39k import (
    FERV39K_CLASSES,
    FERV39K_LABELS,
    Ferv39kDataModule,
    Ferv39kLayoutError,
    ferv39k_records,
    read_setup,
)
from dfer_pd.stage1.datasets.mafw import MAFW_CLASSES, MafwDataModule, MafwLayoutError, mafw_records, read_split

CLIPS_PER_CLASS = 4


def write_frames(folder: Path, count: int = 3, suffix: str = ".png", level: int = 0) -> None:
    """A tiny clip: `count` flat 8x8 frames."""
    folder.mkdir(parents=True)
    for f in range(1, count + 1):
        Image.fromarray(np.full((8, 8, 3), (level + 20 * f) % 256, np.uint8)).save(folder / f"{f:02d}{suffix}")


def small_datamodule(cls, root, **kwargs):
    defaults = dict(root=str(root), num_frames=4, batch_size=4, num_workers=0, val_fraction=0.34,
                    clip_name_or_path=BUILTIN_TINY_CLIP, image_size=8)
    return cls(**{**defaults, **kwargs})


# --------------------------------------------------------------------------- FERV39k


def write_ferv39k(root: Path, nested: bool = False, header: bool = False) -> Path:
    """2_ClipsforFaceCrop/<Scene>/<Emotion>/<clip>/ and 4_setups/All_scenes/{train,test}_All.csv."""
    frames = root / "2_ClipsforFaceCrop" / ("2_ClipsforFaceCrop" if nested else "")
    lines = {"train": ["video label"] if header else [], "test": ["video label"] if header else []}
    for c, word in enumerate(FERV39K_LABELS):
        for j in range(CLIPS_PER_CLASS):
            scene = ("Action", "DailyLife")[j % 2]
            clip = f"{scene}/{word}/{j:04d}"
            write_frames(frames / clip, suffix=".jpg", level=c)
            lines["test" if j == 0 else "train"].append(f"{clip} {word}")
    setups = root / "4_setups" / "All_scenes"
    setups.mkdir(parents=True)
    for split, rows in lines.items():
        (setups / f"{split}_All.csv").write_text("\n".join(rows) + "\n")
    return root


def test_ferv39k_official_layout_and_labels(tmp_path):
    root = write_ferv39k(tmp_path)
    records = ferv39k_records(root, "train", "2_ClipsforFaceCrop")
    assert len(records) == 7 * (CLIPS_PER_CLASS - 1)
    by_key = {r.key: r for r in records}
    sad = by_key["DailyLife/Sad/0001"]
    assert FERV39K_CLASSES[sad.label] == "sadness" and sad.path == root / "2_ClipsforFaceCrop/DailyLife/Sad/0001"
    assert FERV39K_CLASSES[by_key["DailyLife/Angry/0003"].label] == "anger"
    assert FERV39K_CLASSES[by_key["Action/Happy/0002"].label] == "happiness"
    # Every record's label names the emotion folder its clip sits in.
    names = {"Happy": "happiness", "Sad": "sadness", "Neutral": "neutral", "Angry": "anger",
             "Surprise": "surprise", "Disgust": "disgust", "Fear": "fear"}
    assert all(FERV39K_CLASSES[r.label] == names[r.key.split("/")[1]] for r in records)
    # A copy unzipped into 2_ClipsforFaceCrop/2_ClipsforFaceCrop/ and a header line are read the same way.
    other = write_ferv39k(tmp_path / "nested", nested=True, header=True)
    nested = ferv39k_records(other, "test", "2_ClipsforFaceCrop")
    assert [r.key for r in nested] == [f"{('Action', 'DailyLife')[0]}/{w}/0000" for w in FERV39K_LABELS]
    assert all(r.path.is_dir() for r in nested)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("Action/Happy/0001 Joy", r"label 'Joy' is not one of Happy"),
        ("Action/Happy/0001", r"expected '<Scene>/<Emotion>/<clip> <Label>'"),
        ("Action/Happy/0001 Happy extra", r"expected '<Scene>/<Emotion>/<clip> <Label>'"),
        ("Happy_0001 Happy", r"clip 'Happy_0001' is not '<Scene>/<Emotion>/<clip>'"),
    ],
)
def test_ferv39k_bad_lines_name_file_and_line(tmp_path, line, problem):
    path = tmp_path / "train_All.csv"
    path.write_text(f"Action/Sad/0000 Sad\n{line}\n")
    with pytest.raises(Ferv39kLayoutError, match=rf"train_All.csv:2: {problem}"):
        read_setup(path)


def test_ferv39k_datamodule_counts_missing_clips(tmp_path, caplog):
    root = write_ferv39k(tmp_path)
    for frame in (root / "2_ClipsforFaceCrop/Action/Fear/0002").iterdir():
        frame.unlink()
    dm = small_datamodule(Ferv39kDataModule, root)
    assert dm.class_names == FERV39K_CLASSES  # known before setup
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert list(dm.skipped) == ["Action/Fear/0002"]
    assert "FERV39k train: 1 of 21 clips missing or unreadable" in caplog.text
    assert len(dm.train_set) + len(dm.val_set) == 20
    assert list(dm.split_counts["train"]) == list(FERV39K_CLASSES)
    assert sum(dm.split_counts["val"].values()) == len(dm.val_set) and dm.split_counts["val"]["fear"] >= 1
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixel_values"].shape == (4, 4, 3, 8, 8) and batch["pixel_values"].dtype == torch.float32
    dm.setup("test")
    assert sorted(r.key.split("/")[1] for r in dm.test_set.records) == sorted(FERV39K_LABELS)
    with pytest.raises(Ferv39kLayoutError, match="Action/Fear/0002"):
        small_datamodule(Ferv39kDataModule, root, skip_unreadable=False).setup("fit")
    with pytest.raises(Ferv39kLayoutError, match=r"4_setups/All_scenes/train_All.csv not found"):
        small_datamodule(Ferv39kDataModule, tmp_path / "empty").setup("fit")


# --------------------------------------------------------------------------- MAFW


def write_mafw(root: Path, split_dir: str = "Train & Test Set") -> Path:
    """data/frames/<id>/ and <split_dir>/single/no_caption/set_{1..5}/{train,test}.txt."""
    ids = {}
    for c, name in enumerate(MAFW_CLASSES):
        for j in range(CLIPS_PER_CLASS):
            clip_id = f"{100 * (c + 1) + j:05d}"
            ids[clip_id] = (name, j)
            write_frames(root / "data" / "frames" / clip_id, level=c)
    for fold in range(1, 6):
        folder = root / split_dir / "single" / "no_caption" / f"set_{fold}"
        folder.mkdir(parents=True)
        test = [i for i, (_, j) in ids.items() if j == (fold - 1) % CLIPS_PER_CLASS]
        train = [i for i in ids if i not in test]
        for split, members in (("train", train), ("test", test)):
            (folder / f"{split}.txt").write_text("".join(f"{i}.mp4 {ids[i][0]}\n" for i in members))
    return root


def test_mafw_official_layout_and_labels(tmp_path):
    root = write_mafw(tmp_path)
    records = mafw_records(root, "test", 2)
    assert [r.key for r in records] == [f"{100 * (c + 1) + 1:05d}" for c in range(11)]
    assert [MAFW_CLASSES[r.label] for r in records] == list(MAFW_CLASSES)
    assert records[0].path == root / "data" / "frames" / "00101"
    train = mafw_records(root, "train", 2)
    assert len(train) == 33 and not {r.key for r in train} & {r.key for r in records}
    # A copy with Train_Test_Set/, and clips read as videos from data/clips/ when asked.
    other = write_mafw(tmp_path / "other", split_dir="Train_Test_Set")
    (other / "data" / "clips").mkdir()
    (other / "data" / "clips" / "00100.mp4").write_bytes(b"")
    first = mafw_records(other, "test", 1, clips="data/clips")[0]
    assert first.key == "00100" and first.path == other / "data" / "clips" / "00100.mp4"
    with pytest.raises(ValueError, match="fold must be 1..5"):
        mafw_records(root, "train", 6)
    with pytest.raises(MafwLayoutError, match=r"Train & Test Set/single/no_caption/set_1/train.txt not found"):
        mafw_records(tmp_path / "empty", "train", 1)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("00002.mp4 joy", r"label 'joy' is not one of anger"),
        ("00002.mp4", r"expected '<id>.mp4 <label>'"),
        ("clip.mp4 anger", r"clip 'clip.mp4' is not a numbered MAFW clip"),
    ],
)
def test_mafw_bad_lines_name_file_and_line(tmp_path, line, problem):
    path = tmp_path / "train.txt"
    path.write_text(f"00001.mp4 anger\n\n{line}\n")
    with pytest.raises(MafwLayoutError, match=rf"train.txt:3: {problem}"):
        read_split(path)


def test_mafw_datamodule_eleven_classes_and_unreadable_clip(tmp_path, caplog):
    root = write_mafw(tmp_path)
    # One clip of fold 3's training list is an empty video, another has no frames at all.
    (root / "data/frames/00501").rename(root / "data/frames/old")
    (root / "data/frames/00501.mp4").write_bytes(b"")
    for frame in (root / "data/frames/00700").iterdir():
        frame.unlink()
    dm = small_datamodule(MafwDataModule, root, fold=3)
    assert dm.class_names == MAFW_CLASSES and len(dm.class_names) == 11
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert sorted(dm.skipped) == ["00501", "00700"] and "MAFW train fold 3: 2 of 33" in caplog.text
    assert sum(dm.split_counts["train"].values()) + sum(dm.split_counts["val"].values()) == 31
    item = dm.val_set[0]
    assert item["pixel_values"].shape == (4, 3, 8, 8) and 0 <= item["label"] < 11
    dm.setup("test")
    assert dm.split_counts["test"] == dict.fromkeys(MAFW_CLASSES, 1)


# --------------------------------------------------------------------------- shared base and stage 2


class TinyFolderDataModule(ClipDataModule):
    """A dataset is one subclass: `class_names` plus `split_records`. This one has no anger."""

    name = "tiny-folders"

    def __init__(self, root: str, classes: tuple[str, ...] = ("neutral", "happiness", "surprise", "sadness"), **kwargs):
        super().__init__(root, **kwargs)
        self._set_class_names(classes)

    def split_records(self, split):
        folders = sorted((Path(self.hparams.root) / split).iterdir())
        return [ClipRecord(f.name, f, int(f.name.split("_")[0])) for f in folders]


def write_tiny(root: Path, per_class: int = 3, overlap: bool = False) -> Path:
    for c in range(4):
        for j in range(per_class):
            write_frames(root / "train" / f"{c}_{j}", count=2)
        write_frames(root / "test" / f"{c}_{0 if overlap else 9}", count=2)
    return root


def test_base_split_is_seeded_and_stratified_and_test_stays_unseen(tmp_path):
    root = write_tiny(tmp_path / "a", per_class=5)
    splits = []
    for seed in (0, 0, 1):
        dm = small_datamodule(TinyFolderDataModule, root, val_fraction=0.2, split_seed=seed)
        dm.setup("fit")
        splits.append(sorted(r.key for r in dm.val_set.records))
        assert dm.split_counts["val"] == dict.fromkeys(dm.class_names, 1)
    assert splits[0] == splits[1] and splits[0] != splits[2]
    assert dm.hparams.root == str(root) and dm.hparams.split_seed == 1  # the subclass's arguments are saved too
    leaky = small_datamodule(TinyFolderDataModule, write_tiny(tmp_path / "b", overlap=True))
    with pytest.raises(ClipLayoutError, match="4 clip.s. are also in the test split"):
        leaky.setup("fit")
    with pytest.raises(ValueError, match="class names must be at least two distinct names"):
        TinyFolderDataModule(str(root), classes=("neutral", "happy"))
    with pytest.raises(ValueError, match="val_fraction"):
        small_datamodule(TinyFolderDataModule, root, val_fraction=0.0)


def test_stage2_classes_are_found_by_name(tmp_path):
    dfew4 = DfewDataModule(str(tmp_path), classes=4)
    assert check_stage2_classes(dfew4.class_names, "DFEW") == {"neutral": 0, "happiness": 1, "surprise": 2, "anger": 3}
    dfew7 = DfewDataModule(str(tmp_path), classes=7)
    assert check_stage2_classes(dfew7.class_names, "DFEW") == {"neutral": 2, "happiness": 0, "surprise": 4, "anger": 3}
    ferv = small_datamodule(Ferv39kDataModule, tmp_path)
    indices = check_stage2_classes(ferv.class_names, "FERV39k")
    assert [ferv.class_names[i] for i in indices.values()] == list(EXPRESSIONS)
    mafw = small_datamodule(MafwDataModule, tmp_path)
    assert check_stage2_classes(mafw.class_names, "MAFW") == {"neutral": 4, "happiness": 3, "surprise": 6, "anger": 0}
    assert set(CANONICAL_CLASSES) == set(MAFW_CLASSES)
    no_anger = TinyFolderDataModule(str(tmp_path))
    with pytest.raises(ValueError, match=r"tiny-folders has no class 'anger': stage 2 needs neutral, happiness, "
                                         r"surprise, anger \(its classes: neutral, happiness, surprise, sadness\)"):
        check_stage2_classes(no_anger.class_names, no_anger.name)
    with pytest.raises(ValueError, match=r"no class 'surprise', 'anger'"):
        check_stage2_classes(("neutral", "happiness", "sadness"), "a checkpoint")
