"""What every figure shares: one colour scheme for HC, PD and the person screened, figures drawn on the Agg
canvas (no pyplot state, no display), box plots in a group's colour, and the confusion matrix of both stages.

matplotlib is imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np

from dfer_pd.common.constants import COHORT_LABELS
from dfer_pd.common.files import atomic_write

# The one colour scheme: each cohort group's colour (its boxes, medians and legend entry in every figure) and
# the colour of the person a screening report places against the cohort.
HC_COLOUR = "#4C72B0"
PD_COLOUR = "#DD8452"
PERSON_COLOUR = "#000000"
GROUP_COLOURS: dict[str, str] = dict(zip(COHORT_LABELS, (HC_COLOUR, PD_COLOUR)))
# Face colours of boxes are see-through, so the person's markers and the other group's medians stay visible.
BOX_ALPHA = 0.35


def new_figure(**kwargs):
    """A matplotlib Figure on its own Agg canvas (``kwargs`` go to ``Figure``), outside pyplot's state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure, path: str | PathLike, dpi: int = 120) -> Path:
    """``figure`` written as a PNG to ``path`` (parents made; the file replaced whole, never half-written)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as handle:
        figure.savefig(handle, format="png", dpi=dpi, bbox_inches="tight")
    return path


def group_boxes(ax, stats: list[dict], positions, group: str, width: float = 0.8) -> None:
    """Box plots of one cohort group from ``Axes.bxp`` statistics (``matplotlib.cbook.boxplot_stats`` of the
    values, or stored quantiles), box, whiskers, caps and median in the group's colour."""
    colour = GROUP_COLOURS[group]
    drawn = ax.bxp(stats, positions=positions, widths=width, patch_artist=True, showfliers=False,
                   medianprops={"color": colour, "linewidth": 2}, whiskerprops={"color": colour},
                   capprops={"color": colour}, boxprops={"edgecolor": colour})
    for box in drawn["boxes"]:
        box.set_facecolor(colour)
        box.set_alpha(BOX_ALPHA)


def group_legend_handles(prefix: str = "") -> list:
    """One legend entry per cohort group (``prefix`` before its name), in the group's colour."""
    from matplotlib.patches import Patch

    return [Patch(facecolor=c, edgecolor=c, alpha=0.6, label=f"{prefix}{g}") for g, c in GROUP_COLOURS.items()]


def text_colour(rgba: Sequence[float]) -> str:
    """Black on light cells, white on dark ones, by the cell colour's relative luminance (WCAG weights)."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # Contrast with white (1.05 / (L + 0.05)) beats contrast with black ((L + 0.05) / 0.05) below L ~ 0.18.
    return "white" if luminance < 0.179 else "black"


def confusion_figure(matrix, labels: Sequence[str], title: str, xlabel: str = "predicted", ylabel: str = "true"):
    """A matplotlib Figure: rows = true class, columns = predicted; each cell shows its count and its share of
    the row, coloured by that share on a fixed 0-1 scale (so a rare class's errors are as visible as a common one's)."""
    matrix = np.asarray(matrix, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(labels):
        raise ValueError(f"expected a square matrix with one row per label ({len(labels)}), got shape {matrix.shape}")
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = max(3.6, 0.9 * len(labels) + 1.8)
    figure = new_figure(figsize=(size + 0.9, size))
    ax = figure.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    colourbar = figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    colourbar.set_label("share of the true class")
    fontsize = 10 if len(labels) <= 4 else 8
    for (i, j), count in np.ndenumerate(matrix):
        colour = text_colour(image.cmap(image.norm(share[i, j])))
        ax.text(j, i, f"{count}\n{share[i, j]:.0%}", ha="center", va="center", color=colour, fontsize=fontsize)
    ticks = np.arange(len(labels))
    ax.set_xticks(ticks, labels, rotation=30 if max(map(len, labels)) > 6 else 0, ha="right" if max(map(len, labels)) > 6 else "center")
    ax.set_yticks(ticks, labels)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.set_title(title, fontsize=10)
    figure.tight_layout()
    return figure


def save_confusion_matrix(matrix, path: str | PathLike, labels: Sequence[str], title: str) -> Path:
    """:func:`confusion_figure` saved as a PNG."""
    return save_figure(confusion_figure(matrix, labels, title), path)
