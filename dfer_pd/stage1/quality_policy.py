"""What makes a video unusable for scoring, as one settings object (no heavy imports: parsers read it)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QualityPolicy:
    """The limits a video must meet before its scores count, in cohort extraction and in diagnose alike.

    Args:
        min_decoded_share: a truncated video of which less than this share of the frames decodes is unusable.
    """

    min_decoded_share: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 <= self.min_decoded_share <= 1.0:
            raise ValueError(f"min_decoded_share must be in [0, 1], got {self.min_decoded_share}")
