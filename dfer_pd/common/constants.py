"""Names shared by every stage. The class order is fixed here and used everywhere."""

# Order of the four expression classes: logits, intensities, cohort videos and Eq. 4 all use it.
EXPRESSIONS: tuple[str, ...] = ("neutral", "happiness", "surprise", "anger")
NUM_EXPRESSIONS = len(EXPRESSIONS)

# DFEW's official single-label ids (EmoLabel_DataSplit/*.csv, column `label`).
DFEW_LABEL_NAMES: dict[int, str] = {
    1: "happy",
    2: "sad",
    3: "neutral",
    4: "angry",
    5: "surprise",
    6: "disgust",
    7: "fear",
}
# DFEW id -> index into EXPRESSIONS; the other three DFEW classes are not used.
DFEW_ID_TO_CLASS: dict[int, int] = {3: 0, 1: 1, 5: 2, 4: 3}

# Cohort labels: PD is the positive class.
COHORT_LABELS: tuple[str, ...] = ("HC", "PD")
