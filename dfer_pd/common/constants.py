"""Names shared by every stage. The class order is fixed here and used everywhere."""

# Order of the four expression classes: logits, intensities, cohort videos and Eq. 4 all use it.
EXPRESSIONS: tuple[str, ...] = ("neutral", "happiness", "surprise", "anger")
NUM_EXPRESSIONS = len(EXPRESSIONS)

# Cohort labels: PD is the positive class.
COHORT_LABELS: tuple[str, ...] = ("HC", "PD")
