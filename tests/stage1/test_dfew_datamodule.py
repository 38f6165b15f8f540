"""The DFEW data module on a hand-made tree in DFEW's official layout."""

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.common.errors import UsageError
from dfer_pd.stage1.datasets.base import check_stage2_classes
from dfer_pd.stage1.datasets.dfew import (
    DfewDataModule,
    DfewLayoutError,
    dfew_records,
    four_class_records,
    read_split,
    split_file,
)
from dfer_pd.stage1.clip_assets import BUILTIN_TINY_CLIP

# clip id -> (DFEW label, frame count); labels 2 (sad) and 7 (fear) must be filtered out.
CLIPS = {
    1: (1, 20), 2: (3, 20), 3: (4, 20), 4: (5, 20), 5: (2, 20),
    6: (1, 12), 7: (3, 20), 8: (4, 20), 9: (5, 20), 10: (7, 20),
    11: (1, 20), 12: (3, 20), 13: (4, 20), 14: (5, 20), 15: (1, 20),
    16: (3, 20), 17: (4, 20), 18: (5, 20), 19: (1, 20), 20: (3, 20),
}


def write_tree(root: Path, spelling: str = "single-labeled", sixteen: bool = False) -> Path:
    for clip, (_, frames) in CLIPS.items():
        cid = f"{clip:05d}"
        folder = root / "Clip" / ("clip_224x224_16f" if sixteen else "clip_224x224") / cid
        folder.mkdir(parents=True)
        for f in range(1, frames + 1):
            # Frame f is a flat gray of level 10*f, so the frame read back is identifiable.
            name = f"{f}.jpg" if sixteen else f"{cid}_{f:05d}.jpg"
            Image.fromarray(np.full((24, 24, 3), 10 * f, np.uint8)).save(folder / name, quality=100)
    ids = sorted(CLIPS)
    for fold in range(1, 6):
        test_ids = ids[fold - 1 :: 5]
        for split, members in (("train", [i for i in ids if i not in test_ids]), ("test", test_ids)):
            path = root / "EmoLabel_DataSplit" / f"{split}({spelling})" / f"set_{fold}.csv"
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["video_name", "label"])
                writer.writerows([[f"{i:05d}", CLIPS[i][0]] for i in members])
    return root


def test_split_files_and_class_mapping(tmp_path):
    root = write_tree(tmp_path, spelling="single_labeled")
    assert split_file(root, "train", 2).parent.name == "train(single_labeled)"
    records = four_class_records(root, "test", 1, "clip_224x224")
    expected = {1: 1, 6: 1, 11: 1, 16: 0}  # happy -> happiness (1), neutral -> 0
    assert {int(r.key): r.label for r in records} == expected
    all_labels = {r.label for fold in range(1, 6) for r in four_class_records(root, "train", fold, "clip_224x224")}
    assert all_labels == set(range(len(EXPRESSIONS)))
    # DFEW ids map to EXPRESSIONS order: neutral=3, happy=1, surprise=5, angry=4.
    by_id = {int(r.key): r.label for fold in range(1, 6) for r in four_class_records(root, "test", fold, "clip_224x224")}
    assert by_id[2] == EXPRESSIONS.index("neutral") and by_id[3] == EXPRESSIONS.index("anger")
    assert by_id[4] == EXPRESSIONS.index("surprise") and by_id[1] == EXPRESSIONS.index("happiness")
    assert 5 not in by_id and 10 not in by_id  # sad and fear are not used


def test_bad_split_files_are_named(tmp_path):
    root = write_tree(tmp_path)
    with pytest.raises(DfewLayoutError, match="set_1.csv"):
        split_file(tmp_path / "nowhere", "train", 1)
    with pytest.raises(ValueError, match="fold must be 1..5"):
        split_file(root, "train", 6)
    bad = root / "bad.csv"
    bad.write_text("video_name,label\n00001,9\n")
    with pytest.raises(DfewLayoutError, match=r"bad.csv:2: label 9"):
        read_split(bad)
    bad.write_text("video_name,label\n00001,1\n00002,happy\n")
    with pytest.raises(DfewLayoutError, match=r"bad.csv:3: label 'happy' is not an integer"):
        read_split(bad)
    bad.write_text("video_name,label\n00001,1\nclip,1\n")
    with pytest.raises(DfewLayoutError, match=r"bad.csv:3: video_name 'clip' is not a clip number"):
        read_split(bad)
    bad.write_text("name,label\n00001,1\n")
    with pytest.raises(DfewLayoutError, match=r"bad.csv: missing column\(s\) \['video_name'\]"):
        read_split(bad)


def test_seven_classes_keep_every_clip_in_dfew_id_order(tmp_path):
    root = write_tree(tmp_path)
    seven = DfewDataModule(str(root), classes=7)
    assert seven.class_names == ("happiness", "sadness", "neutral", "anger", "surprise", "disgust", "fear")
    assert DfewDataModule(str(root)).class_names == EXPRESSIONS  # the paper's 4, the default
    records = dfew_records(root, "test", 1, "clip_224x224", classes=7)
    # Fold 1's test set is clips 1, 6, 11, 16: every clip is kept and its label is DFEW's id - 1.
    assert {int(r.key): seven.class_names[r.label] for r in records} == {
        1: "happiness", 6: "happiness", 11: "happiness", 16: "neutral"}
    by_id = {int(r.key): r.label for fold in range(1, 6) for r in dfew_records(root, "test", fold, "clip_224x224", 7)}
    assert by_id == {clip: label - 1 for clip, (label, _) in CLIPS.items()}  # sad (5) and fear (10) included
    four = {int(r.key): r.label for fold in range(1, 6) for r in four_class_records(root, "test", fold, "clip_224x224")}
    # The same clip has the same class name under both class sets.
    assert all(EXPRESSIONS[four[c]] == seven.class_names[by_id[c]] for c in four)
    assert check_stage2_classes(seven.class_names, "DFEW") == {"neutral": 2, "happiness": 0, "surprise": 4, "anger": 3}
    with pytest.raises(ValueError, match="classes must be 4 or 7"):
        DfewDataModule(str(root), classes=6)


def test_seven_class_datamodule_counts_every_class(tmp_path):
    root = write_tree(tmp_path)
    dm = make_datamodule(root, classes=7, num_frames=4, image_size=8)
    dm.setup("test")
    assert dm.split_counts["test"] == {"happiness": 3, "sadness": 0, "neutral": 1, "anger": 0, "surprise": 0,
                                       "disgust": 0, "fear": 0}
    assert dm.test_set[0]["label"] == 0
    # Fold 1's training set has one sad and one fear clip: too few to stratify, and the message says so.
    # A user error (one line, exit code 2 from the CLI), not scikit-learn's traceback.
    with pytest.raises(UsageError, match=r"DFEW train fold 1: cannot carve a stratified validation split .*'sadness': 1"):
        dm.setup("fit")


def make_datamodule(root, **kwargs):
    defaults = dict(root=str(root), fold=1, num_frames=16, batch_size=4, num_workers=0, val_fraction=0.25,
                    clip_name_or_path=BUILTIN_TINY_CLIP, image_size=32)
    return DfewDataModule(**{**defaults, **kwargs})


def test_datamodule_batches_short_clips_and_missing_report(tmp_path, caplog):
    root = write_tree(tmp_path)
    # Remove one training clip's frames: it must be reported by id, not silently dropped.
    for frame in (root / "Clip/clip_224x224/00002").iterdir():
        frame.unlink()
    dm = make_datamodule(root)
    with caplog.at_level(logging.WARNING):
        dm.setup("fit")
    assert "00002" in dm.skipped and "1 of" in caplog.text and "00002" in caplog.text
    n_train_fold1 = len(four_class_records(root, "train", 1, "clip_224x224"))
    assert len(dm.train_set) + len(dm.val_set) == n_train_fold1 - 1
    assert sum(dm.split_counts["val"].values()) == len(dm.val_set)
    batch = next(iter(dm.train_dataloader()))
    assert batch["pixel_values"].shape == (4, 16, 3, 32, 32)
    assert batch["pixel_values"].dtype == torch.float32
    dm.setup("test")
    keys = [r.key for r in dm.test_set.records]
    assert "00006" in keys  # a 12-frame clip still gives 16 frames
    item = dm.test_set[keys.index("00006")]
    assert item["pixel_values"].shape == (16, 3, 32, 32)
    strict = make_datamodule(root, skip_unreadable=False)
    with pytest.raises(DfewLayoutError, match="00002"):
        strict.setup("fit")


def test_sixteen_frame_folders_sort_numerically(tmp_path):
    root = write_tree(tmp_path, sixteen=True)
    dm = make_datamodule(root, frames="clip_224x224_16f", num_frames=4, image_size=24)
    dm.setup("test")
    index = [r.key for r in dm.test_set.records].index("00001")
    frames = dm.test_set[index]["pixel_values"]
    # Un-normalise the red channel: centre sampling of 20 frames into 4 segments gives frames 3, 8, 13, 18
    # (1-based 3, 8, 13, 18 -> gray 30, 80, 130, 180) only if "10.jpg" sorts after "9.jpg".
    mean, std = 0.48145466, 0.26862954
    gray = ((frames[:, 0].mean(dim=(1, 2)) * std + mean) * 255).round()
    expected = torch.tensor([30.0, 80.0, 130.0, 180.0])
    assert torch.allclose(gray, expected, atol=3), gray


def test_frame_cache_gives_the_same_batches(tmp_path):
    """frame_cache_mb (the demo's) changes where decoded frames come from, never the batches."""
    root = write_tree(tmp_path)
    batches = []
    for cache_mb in (0, 64):
        dm = make_datamodule(root, frame_cache_mb=cache_mb)
        dm.setup("fit")
        epochs = []
        for epoch in range(2):  # the second epoch reads through a warm cache
            torch.manual_seed(epoch)
            epochs.append([batch["pixel_values"] for batch in dm.train_dataloader()])
        batches.append(epochs)
    for plain, cached in zip(*batches):
        assert len(plain) == len(cached)
        for a, b in zip(plain, cached):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="frame_cache_mb must be 0"):
        make_datamodule(root, frame_cache_mb=-1)
