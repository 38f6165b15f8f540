"""Confusion matrices that read at their saved size: a title, and every number legible on its cell (WCAG AA)."""

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba

from dfer_pd.common.plots import confusion_figure, save_confusion_matrix, text_colour
from dfer_pd.stage2.plots import plot_confusion_matrix


def luminance(rgba) -> float:
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a, b) -> float:
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_text_colour_follows_the_cell():
    assert text_colour((0.03, 0.19, 0.42, 1.0)) == "white"  # Blues' darkest
    assert text_colour((0.97, 0.98, 1.0, 1.0)) == "black"  # Blues' lightest


@pytest.mark.parametrize("matrix", [
    np.array([[48, 2], [5, 45]]),
    np.array([[46, 45], [44, 47]]),  # every count above max/2: the old rule put white text on every cell
    np.array([[0, 0], [0, 9]]),
    np.arange(49).reshape(7, 7) % 11,
])
def test_every_number_is_legible_on_its_cell(matrix):
    labels = [f"c{i}" for i in range(len(matrix))]
    figure = confusion_figure(matrix, labels, "a title")
    FigureCanvasAgg(figure).draw()
    ax = figure.axes[0]
    image = ax.images[0]
    texts = [t for t in ax.texts]
    assert len(texts) == matrix.size and ax.get_title() == "a title"
    for text in texts:
        j, i = (int(round(v)) for v in text.get_position())
        cell = image.cmap(image.norm(image.get_array()[i, j]))
        assert contrast(to_rgba(text.get_color()), cell) >= 4.5, (i, j, text.get_text(), text.get_color())
        count, share = text.get_text().split("\n")
        assert int(count) == matrix[i, j] and share.endswith("%")


def test_stage2_confusion_matrix_has_a_title(tmp_path):
    path = plot_confusion_matrix(np.array([[8, 2], [1, 9]]), tmp_path / "cm.png")
    assert path.stat().st_size > 5_000
    figure = confusion_figure(np.array([[8, 2], [1, 9]]), ["HC", "PD"], "x")
    assert figure.axes[0].get_xlabel() == "predicted" and figure.axes[0].get_ylabel() == "true"
    with pytest.raises(ValueError, match="square matrix"):
        save_confusion_matrix(np.zeros((2, 3)), tmp_path / "bad.png", ["a", "b"], "t")
