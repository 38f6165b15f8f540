"""The out-of-distribution check: label-blind, its threshold keeping the stated share of each group, the moved
video named, weak expression never a reason, and the swapped-file rule that never punishes hypomimia."""

import numpy as np
import pytest

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.stage2.typicality import (
    SWAPPED_FILE_PROBABILITY,
    TypicalityModel,
    conformal_threshold,
    fit_typicality,
    gate_refusals,
    swapped_files,
)


def cohort(n_per_group: int, rng, dims: int = 8, separation: float = 1.0):
    """(N, 4, dims) features: HC around one centre, PD around a second, per video, with spread 1."""
    centres = rng.normal(size=(2, len(EXPRESSIONS), dims)) * 3
    centres[1] = centres[0] + separation * (centres[1] - centres[0]) / 3
    labels = np.repeat([0, 1], n_per_group)
    return centres[labels] + rng.normal(size=(len(labels), len(EXPRESSIONS), dims)), labels, centres


def test_the_threshold_refuses_about_the_target_share_of_new_subjects_of_either_group():
    rng = np.random.default_rng(0)
    features, labels, centres = cohort(100, rng)
    model = fit_typicality(features, labels, target_share=0.05)
    assert all(g["refused"] <= 0.05 * g["n"] for g in model.held_out.values())
    new = centres[np.repeat([0, 1], 500)] + rng.normal(size=(1000, len(EXPRESSIONS), features.shape[-1]))
    refused = np.array([model.check(x).atypical for x in new])
    assert refused[:500].mean() < 0.12 and refused[500:].mean() < 0.12  # about 5%, never a whole group


def test_a_moved_video_is_named_and_the_label_is_never_used():
    rng = np.random.default_rng(1)
    features, labels, centres = cohort(60, rng)
    model = fit_typicality(features, labels)
    person = centres[1] + rng.normal(size=centres[1].shape)
    assert not model.check(person).atypical
    moved = person.copy()
    moved[2] = -moved[2]  # the surprise video points the other way
    check = model.check(moved)
    assert check.atypical and check.atypical_videos == ["surprise"] and "surprise" in check.reason()
    shuffled = fit_typicality(features, rng.permutation(labels))
    assert shuffled.check(moved).scores == check.scores  # neighbours come from both groups: scores ignore labels


def test_between_the_groups_is_typical_weak_expression_is_not_a_fault():
    """A subject halfway between the HC and PD groups (milder or stronger expression than either) is typical."""
    rng = np.random.default_rng(2)
    features, labels, centres = cohort(80, rng, separation=2.0)
    model = fit_typicality(features, labels)
    between = (centres[0] + centres[1]) / 2 + 0.5 * rng.normal(size=centres[0].shape)
    assert not model.check(between).atypical


def test_conformal_threshold_keeps_each_groups_share():
    scores = np.concatenate([np.arange(1, 101), np.arange(1, 11) * 100.0])
    labels = np.repeat([0, 1], [100, 10])
    # HC: rank ceil(101 * 0.95) = 96 -> 96; PD (10 subjects) too few for 5%: its largest score.
    assert conformal_threshold(scores, labels, 0.05) == 1000.0
    assert conformal_threshold(scores[:100].tolist() + [1.0] * 10, labels, 0.05) == 96.0


def test_the_model_saves_as_numbers_and_checks_the_same_after_loading():
    rng = np.random.default_rng(3)
    features, labels, _ = cohort(20, rng)
    model = fit_typicality(features, labels)
    loaded = TypicalityModel.from_dict(model.to_dict(), model.reference.astype(np.float32))
    person = rng.normal(size=features.shape[1:])
    assert loaded.check(person).scores == pytest.approx(model.check(person).scores, rel=1e-5)
    with pytest.raises(ValueError, match="at least 2 subjects per group"):
        fit_typicality(features[:5], np.zeros(5, int))


def cosines_showing(winners, strength: float = 0.3, tau: float = 0.05) -> np.ndarray:
    """(4, 4) cosines whose video j shows expression ``winners[j]`` (None: nothing stands out)."""
    cosine = np.full((4, 4), 0.2)
    for video, winner in enumerate(winners):
        if winner is not None:
            cosine[video, EXPRESSIONS.index(winner)] += strength
    return cosine


def test_a_swapped_file_is_refused_and_hypomimia_never_is():
    tau = 0.05
    assert not swapped_files(cosines_showing(EXPRESSIONS), tau).any()  # each video shows its expression
    hypomimic = cosines_showing(["neutral"] * 4)  # every video reads as neutral: the disease's signal
    assert not swapped_files(hypomimic, tau).any()
    assert not swapped_files(cosines_showing([None] * 4), tau).any()
    # The happiness and anger files given under each other's names: both refused.
    swapped = cosines_showing(["neutral", "anger", "surprise", "happiness"])
    assert swapped_files(swapped, tau).tolist() == [False, True, False, True]
    # A stage 1 that reads every video as happiness (untrained, or biased) refuses nothing.
    assert not swapped_files(cosines_showing(["happiness"] * 4), tau).any()
    # Not confident enough: kept.
    weak = cosines_showing(["neutral", "anger", "surprise", "happiness"], strength=0.05)
    assert np.exp(0.05 / tau) / (np.exp(0.05 / tau) + 3) < SWAPPED_FILE_PROBABILITY
    assert not swapped_files(weak, tau).any()


def test_gate_refusals_count_both_rules_per_group_with_intervals():
    rng = np.random.default_rng(4)
    features, labels, _ = cohort(10, rng)
    model = fit_typicality(features, labels)
    cosine = np.stack([cosines_showing(EXPRESSIONS)] * 20)
    cosine[0] = cosines_showing(["neutral", "anger", "surprise", "happiness"])  # one HC subject swapped two files
    report = gate_refusals(model, cosine, labels, 0.05)
    assert report["HC"]["swapped_file"] == 1 and report["PD"]["swapped_file"] == 0
    assert report["HC"]["refused"] >= 1 and report["HC"]["interval"][0] < report["HC"]["share"] < report["HC"]["interval"][1]
