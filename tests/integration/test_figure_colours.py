"""Every figure that shows the cohort's groups draws HC, PD and the screened person in the one colour scheme of
dfer_pd/common/plots.py: each figure is rendered and its boxes, lines, markers and legend entries read back."""

from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import PathPatch

from dfer_pd.common.constants import COHORT_LABELS, EXPRESSIONS
from dfer_pd.common.plots import GROUP_COLOURS, PERSON_COLOUR, group_boxes
from dfer_pd.screening.diagnose import Diagnosis
from dfer_pd.screening.report import plot_against_cohort
from dfer_pd.stage2.kinematics import NUM_KINEMATIC_FEATURES
from dfer_pd.stage2.plots import plot_intensity_boxplots, plot_kinematics

SCHEME = {g: to_hex(c) for g, c in GROUP_COLOURS.items()}
PERSON = to_hex(PERSON_COLOUR)
QUANTILES = (5, 25, 50, 75, 95)


@pytest.fixture
def saved_figures(monkeypatch):
    """The figures saved while the test runs, as they were when written."""
    figures, savefig = [], Figure.savefig

    def recording_savefig(self, *args, **kwargs):
        figures.append(self)
        return savefig(self, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", recording_savefig)
    return figures


def group_of(label: str) -> str | None:
    """The cohort group a legend label names ("HC", "cohort PD", ...), or None."""
    words = label.split()
    return next((g for g in COHORT_LABELS if g in words), None)


def check_scheme(figure: Figure, person: bool = False) -> None:
    legends = list(figure.legends) + [ax.get_legend() for ax in figure.axes if ax.get_legend()]
    named = {}
    for legend in legends:
        for handle, text in zip(legend.legend_handles, legend.get_texts()):
            colour = to_hex(handle.get_facecolor() if not isinstance(handle, Line2D) else handle.get_color())
            named[text.get_text()] = colour
    groups = {group_of(label): colour for label, colour in named.items() if group_of(label)}
    assert groups == SCHEME, named  # both groups in the legend, each in its scheme colour
    boxes = {to_hex(p.get_facecolor()) for ax in figure.axes for p in ax.patches if isinstance(p, PathPatch)}
    assert boxes == set(SCHEME.values()), boxes  # every box in a group's colour, both groups drawn
    lines = {to_hex(line.get_color()) for ax in figure.axes for line in ax.lines}
    assert lines <= set(SCHEME.values()) | {PERSON, "#000000"}, lines  # whiskers, caps, medians
    if person:
        assert named["this person"] == PERSON
        markers = [c for ax in figure.axes for c in ax.collections]
        assert markers and all({to_hex(f) for f in c.get_facecolor()} == {PERSON} for c in markers)


def cohort(rng, shape):
    labels = np.arange(12) % 2
    values = rng.lognormal(size=(12, *shape)) * (1.0 + labels.reshape(-1, *[1] * len(shape)))
    return values, labels


def test_intensity_boxplots_use_the_scheme(tmp_path, saved_figures):
    intensities, labels = cohort(np.random.default_rng(0), (4, 4))
    plot_intensity_boxplots(intensities, labels, tmp_path / "fig4.png")
    assert len(saved_figures) == 1
    check_scheme(saved_figures[0])


@pytest.mark.parametrize("stat", ["amplitude", "peak_speed", "time_to_peak"])
def test_kinematics_figure_uses_the_scheme(tmp_path, saved_figures, stat):
    kinematics, labels = cohort(np.random.default_rng(1), (4, NUM_KINEMATIC_FEATURES))
    path = plot_kinematics(kinematics, labels, tmp_path / "kinematics.png", stat=stat)
    assert path.stat().st_size > 5_000 and len(saved_figures) == 1
    check_scheme(saved_figures[0])
    with pytest.raises(ValueError, match="stat must be one of"):
        plot_kinematics(kinematics, labels, tmp_path / "bad.png", stat="speed")


def test_report_figure_uses_the_scheme_for_cohort_and_person(tmp_path, saved_figures):
    rng = np.random.default_rng(2)
    reference = {}
    for g, group in enumerate(COHORT_LABELS):
        log_intensity = rng.normal(g, 1.0, size=(20, 4, 4))
        kinematics = rng.lognormal(-g, 0.5, size=(20, 4, NUM_KINEMATIC_FEATURES))
        reference[group] = {"log_intensity": np.percentile(log_intensity, QUANTILES, axis=0).tolist(),
                            "kinematics": np.percentile(kinematics, QUANTILES, axis=0).tolist()}
    result = Diagnosis(p_pd=0.7, threshold=0.5, cosine=rng.uniform(-0.2, 0.3, size=(4, 4)),
                       contract=SimpleNamespace(tau=0.1), quality={e: {"flags": []} for e in EXPRESSIONS}, videos={},
                       seconds=1.0, kinematics=rng.lognormal(size=(4, NUM_KINEMATIC_FEATURES)))
    plot_against_cohort(result, SimpleNamespace(reference=reference), tmp_path / "report.png")
    assert len(saved_figures) == 1
    check_scheme(saved_figures[0], person=True)


def test_group_boxes_draw_box_whiskers_and_median_in_the_groups_colour():
    from dfer_pd.common.plots import new_figure

    ax = new_figure().add_subplot()
    stats = [{"whislo": 0.0, "q1": 1.0, "med": m, "q3": 3.0, "whishi": 4.0, "fliers": []} for m in (2.0, 2.5)]
    group_boxes(ax, stats, [0, 3], "PD")
    assert {to_hex(line.get_color()) for line in ax.lines} == {SCHEME["PD"]}
    medians = [line for line in ax.lines if list(line.get_ydata()) in ([2.0, 2.0], [2.5, 2.5])]
    assert len(medians) == 2 and all(line.get_linewidth() == 2 for line in medians)
    assert {to_hex(p.get_facecolor()) for p in ax.patches} == {SCHEME["PD"]}
