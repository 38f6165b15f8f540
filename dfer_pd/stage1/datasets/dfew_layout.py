"""DFEW's on-disk layout and label ids, apart from the reader so the synthetic writer (and `dfer-pd synth
--help`) can use them without importing Lightning. The reader, :mod:`dfer_pd.stage1.datasets.dfew`, owns
and re-exports them."""

from __future__ import annotations

from dfer_pd.common.constants import EXPRESSIONS

# The release's folders, relative to the DFEW root (the synthetic writer imports these too).
CLIP_DIR = "Clip"
VIDEOS_DIR = "original"
SPLIT_ROOT = "EmoLabel_DataSplit"
SPLIT_DIR = "{split}(single-labeled)"
NUM_FOLDS = 5

# DFEW's label ids -> canonical class names.
DFEW_LABELS: dict[int, str] = {
    1: "happiness", 2: "sadness", 3: "neutral", 4: "anger", 5: "surprise", 6: "disgust", 7: "fear",
}
DFEW_CLASSES: dict[int, tuple[str, ...]] = {
    4: EXPRESSIONS,  # the paper's subset, in stage 2's order
    7: tuple(DFEW_LABELS[i] for i in sorted(DFEW_LABELS)),  # DFEW's id order, as DFER-CLIP
}
