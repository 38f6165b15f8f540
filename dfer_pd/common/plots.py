"""One confusion-matrix figure for both stages: colour = share of the true class, text that stays readable."""

from __future__ import annotations

from collections.abc import Sequence
from os import PathLike
from pathlib import Path

import numpy as np


def text_colour(rgba: Sequence[float]) -> str:
    """Black on light cells, white on dark ones, by the cell colour's relative luminance (WCAG weights)."""
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    luminance = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # Contrast with white (1.05 / (L + 0.05)) beats contrast with black ((L + 0.05) / 0.05) below L ~ 0.18.
    return "white" if luminance < 0.179 else "black"


def confusion_figure(matrix, labels: Sequence[str], title: str, xlabel: str = "predicted", ylabel: str = "true"):
    """A matplotlib Figure: rows = true class, columns = predicted; each cell shows its count and its share of
    the row, coloured by that share on a fixed 0-1 scale (so a rare class's errors are as visible as a common one's)."""
    from matplotlib.figure import Figure

    matrix = np.asarray(matrix, dtype=np.int64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] != len(labels):
        raise ValueError(f"expected a square matrix with one row per label ({len(labels)}), got shape {matrix.shape}")
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape), where=rows > 0)
    size = max(3.6, 0.9 * len(labels) + 1.8)
    figure = Figure(figsize=(size + 0.9, size))
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
    """:func:`confusion_figure` saved as a PNG (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = confusion_figure(matrix, labels, title)
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=120, bbox_inches="tight")
    return path
