"""MDS-UPDRS 3.2 and Hoehn and Yahr in the cohort manifest: read per subject, every bad value refused with its line."""

import numpy as np
import pytest

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.stage2.cohort import ManifestError, read_manifest
from dfer_pd.stage2.features import CohortFileError, CohortIntensities

HEADER = "subject_id,label,expression,path,sex,age,updrs_3_2,hoehn_yahr"


def rows(subject: str, label: str, score: str, stage: str = "") -> list[str]:
    return [f"{subject},{label},{e},videos/{subject}_{e}.mp4,F,60,{score},{stage}" for e in EXPRESSIONS]


def write(folder, lines):
    (folder / "videos").mkdir(exist_ok=True)
    for line in lines:
        (folder / line.split(",")[3]).touch()
    path = folder / "manifest.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    return path


def test_scores_are_read_per_subject_and_unknown_is_nan(tmp_path):
    manifest = read_manifest(write(tmp_path, rows("S1", "PD", "3", "2.5") + rows("S2", "HC", "0") + rows("S3", "PD", "")))
    np.testing.assert_array_equal(manifest.updrs_3_2, [3.0, 0.0, np.nan])
    np.testing.assert_array_equal(manifest.hoehn_yahr, [2.5, np.nan, np.nan])
    assert manifest.subjects[0].updrs_3_2 == 3 and manifest.subjects[2].updrs_3_2 is None


def test_a_manifest_without_the_columns_reads_as_before(tmp_path):
    path = tmp_path / "manifest.csv"
    (tmp_path / "v").mkdir()
    lines = []
    for e in EXPRESSIONS:
        (tmp_path / "v" / f"{e}.mp4").touch()
        lines.append(f"S1,PD,{e},v/{e}.mp4")
    path.write_text("subject_id,label,expression,path\n" + "\n".join(lines) + "\n")
    assert np.isnan(read_manifest(path).updrs_3_2).all()


def test_bad_scores_are_refused_with_every_line_named(tmp_path):
    lines = rows("S1", "PD", "5") + rows("S2", "PD", "two") + rows("S3", "HC", "1.5") + rows("S4", "PD", "-1")
    lines += rows("S5", "PD", "2", "7") + rows("S6", "PD", "2", "1.25")
    conflicting = rows("S7", "PD", "2")
    conflicting[2] = conflicting[2].replace(",2,", ",3,")
    lines += conflicting
    with pytest.raises(ManifestError) as caught:
        read_manifest(write(tmp_path, lines))
    problems = caught.value.problems
    text = str(caught.value)
    for subject, first_line, value in (("S1", 2, "'5'"), ("S2", 6, "'two'"), ("S3", 10, "'1.5'"), ("S4", 14, "'-1'")):
        for line in range(first_line, first_line + 4):
            assert any(f"line {line}: updrs_3_2 {value}" in p for p in problems), (subject, line)
    for line in range(18, 22):
        assert any(f"line {line}: hoehn_yahr '7'" in p for p in problems)
    for line in range(22, 26):
        assert any(f"line {line}: hoehn_yahr '1.25'" in p for p in problems)
    assert "line 28: subject 'S7' has updrs_3_2 3, but line 26 gives 2" in text
    assert "an integer 0-4" in text


def test_cohort_intensities_carry_the_scores_through_npz(tmp_path):
    data = CohortIntensities(["a", "b", "c"], [1, 0, 1], np.zeros((3, 4, 4)), tau=0.1,
                             updrs_3_2=np.array([3.0, 0.0, np.nan]), hoehn_yahr=np.array([2.0, np.nan, 1.5]))
    loaded = CohortIntensities.load(data.save(tmp_path / "x.npz"))
    np.testing.assert_array_equal(loaded.updrs_3_2, [3.0, 0.0, np.nan])
    np.testing.assert_array_equal(loaded.subset(np.array([2, 0])).updrs_3_2, [np.nan, 3.0])
    np.testing.assert_array_equal(loaded.hoehn_yahr, [2.0, np.nan, 1.5])
    assert CohortIntensities.load(CohortIntensities(["a"], [1], np.zeros((1, 4, 4)), tau=0.1).save(tmp_path / "y.npz")).updrs_3_2 is None
    with pytest.raises(CohortFileError, match="updrs_3_2"):
        CohortIntensities(["a"], [1], np.zeros((1, 4, 4)), tau=0.1, updrs_3_2=np.array([2.5]))
