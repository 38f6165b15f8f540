"""Cohort manifest: the happy path and a clear error, naming file and line, for each bad input."""

from pathlib import Path

import numpy as np
import pytest

from dfer_pd.common.constants import EXPRESSIONS
from dfer_pd.stage2.cohort import CohortManifest, CohortSubject, ManifestError, read_manifest

HEADER = "subject_id,label,expression,path,sex,age"


def subject_rows(subject_id: str, label: str, expressions=EXPRESSIONS, sex="F", age="67") -> list[str]:
    return [f"{subject_id},{label},{name},videos/{subject_id}_{name}.mp4,{sex},{age}" for name in expressions]


def write_manifest(folder: Path, rows: list[str], header: str = HEADER, make_files: bool = True) -> Path:
    """Write manifest.csv (header on line 1) and an empty file for every path it names."""
    (folder / "videos").mkdir(exist_ok=True)
    if make_files:
        for row in rows:
            fields = row.split(",")
            if len(fields) > 3 and fields[3]:
                (folder / fields[3]).touch()
    path = folder / "manifest.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_happy_path(tmp_path):
    rows = subject_rows("S01", "PD") + subject_rows("S02", "hc", sex="M", age="") + subject_rows("S03", "Pd")
    manifest = read_manifest(write_manifest(tmp_path, rows))
    assert isinstance(manifest, CohortManifest) and len(manifest) == 3
    assert manifest.subject_ids == ["S01", "S02", "S03"]
    np.testing.assert_array_equal(manifest.labels, [1, 0, 1])
    assert manifest.labels.dtype == np.int64
    assert manifest.expressions == EXPRESSIONS
    assert manifest.skipped == [] and manifest.ignored_rows == {}
    first = manifest.subjects[0]
    assert first == CohortSubject(
        "S01", 1, {name: tmp_path / "videos" / f"S01_{name}.mp4" for name in EXPRESSIONS}, "F", 67.0
    )
    assert all(path.is_absolute() for path in first.videos.values())
    assert manifest.subjects[1].sex == "M" and manifest.subjects[1].age is None
    assert manifest.video_paths()[:2] == [
        ("S01", "neutral", tmp_path / "videos" / "S01_neutral.mp4"),
        ("S01", "happiness", tmp_path / "videos" / "S01_happiness.mp4"),
    ]
    assert len(manifest.video_paths()) == 12
    assert manifest.path == tmp_path / "manifest.csv"


def test_rows_in_any_order_videos_in_configured_order(tmp_path):
    rows = subject_rows("S01", "PD", expressions=("anger", "neutral", "surprise", "happiness"))
    manifest = read_manifest(write_manifest(tmp_path, rows))
    assert list(manifest.subjects[0].videos) == list(EXPRESSIONS)


def test_extra_expressions_ignored_and_counted(tmp_path):
    seven = EXPRESSIONS + ("sadness", "disgust", "fear")
    rows = subject_rows("S01", "PD", expressions=seven) + subject_rows("S02", "HC", expressions=seven)
    manifest = read_manifest(write_manifest(tmp_path, rows[:-1], make_files=True))  # S02 lacks fear
    assert manifest.ignored_rows == {"sadness": 2, "disgust": 2, "fear": 1}
    assert len(manifest) == 2


def test_ignored_rows_need_no_file(tmp_path):
    rows = subject_rows("S01", "PD") + ["S01,PD,fear,videos/missing_fear.mp4,F,67"]
    path = write_manifest(tmp_path, subject_rows("S01", "PD"))
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    assert read_manifest(path).ignored_rows == {"fear": 1}


def test_dfew_spellings_and_case_accepted(tmp_path):
    rows = subject_rows("S01", "PD", expressions=("Neutral", "HAPPY", "surprised", "angry"))
    manifest = read_manifest(write_manifest(tmp_path, rows))
    assert list(manifest.subjects[0].videos) == list(EXPRESSIONS)
    assert manifest.subjects[0].videos["anger"].name == "S01_angry.mp4"


def test_configured_subset_of_expressions(tmp_path):
    path = write_manifest(tmp_path, subject_rows("S01", "PD"))
    manifest = read_manifest(path, expressions=("happiness", "anger"))
    assert manifest.expressions == ("happiness", "anger")
    assert list(manifest.subjects[0].videos) == ["happiness", "anger"]
    assert manifest.ignored_rows == {"neutral": 1, "surprise": 1}


def test_sex_and_age_columns_optional_absolute_paths_and_folders(tmp_path):
    clip_folder = tmp_path / "frames" / "S01_neutral"
    clip_folder.mkdir(parents=True)
    (tmp_path / "videos").mkdir()
    rows = [f"S01,PD,neutral,{clip_folder}"] + [
        f"S01,PD,{name},videos/S01_{name}.mp4" for name in EXPRESSIONS[1:]
    ]
    for name in EXPRESSIONS[1:]:
        (tmp_path / "videos" / f"S01_{name}.mp4").touch()
    path = tmp_path / "m.csv"
    header = "\ufeffSubject_ID, Label ,expression,path,site"  # BOM, odd case and spaces, extra column
    path.write_text("\n".join([header, *(row + ",A" for row in rows)]) + "\n")
    subject = read_manifest(path).subjects[0]
    assert subject.videos["neutral"] == clip_folder
    assert subject.sex is None and subject.age is None


def test_blank_lines_skipped_and_line_numbers_count_them(tmp_path):
    rows = subject_rows("S01", "PD") + ["", "S02,XX,neutral,videos/a.mp4,F,1"]
    with pytest.raises(ManifestError, match="line 7: label 'XX' is not one of HC, PD"):
        read_manifest(write_manifest(tmp_path, rows))


@pytest.mark.parametrize("column", ["subject_id", "label", "expression", "path"])
def test_missing_column_named(tmp_path, column):
    header = ",".join(name for name in HEADER.split(",") if name != column)
    path = tmp_path / "m.csv"
    path.write_text(header + "\n")
    with pytest.raises(ManifestError, match=rf"m\.csv: line 1: missing column\(s\) '{column}'"):
        read_manifest(path)


def test_semicolon_separated_hint(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text(HEADER.replace(",", ";") + "\n")
    with pytest.raises(ManifestError, match="separated by ';'"):
        read_manifest(path)


def test_bad_label_names_line_and_value(tmp_path):
    rows = subject_rows("S01", "PD") + subject_rows("S02", "control")
    with pytest.raises(ManifestError, match=r"manifest\.csv: 4 problems:\n  line 6: label 'control' is not one of HC, PD\n"
                                            r"  line 7: label 'control'"):
        read_manifest(write_manifest(tmp_path, rows))


def test_every_problem_is_reported_not_just_the_first(tmp_path):
    """Two missing files, a bad label, a bad age and a duplicate row: all five, with their lines, in one error."""
    rows = (subject_rows("S01", "PD") + subject_rows("S02", "HC") + subject_rows("S03", "XX")
            + ["S01,PD,anger,videos/S01_anger.mp4,F,67"])
    rows[5] = rows[5].rsplit(",", 1)[0] + ",old"  # S02's second row: age 'old'
    path = write_manifest(tmp_path, rows)
    (tmp_path / "videos" / "S01_surprise.mp4").unlink()
    (tmp_path / "videos" / "S02_anger.mp4").unlink()
    with pytest.raises(ManifestError) as raised:
        read_manifest(path)
    problems = raised.value.problems
    assert len(problems) == 4 + 2 + 1 + 1, problems  # S03's 4 label rows, 2 missing files, the age, the repeated row
    text = str(raised.value)
    assert text.startswith(f"{path}: {len(problems)} problems:")
    for expected in ("line 4: video not found", "line 9: video not found", "line 10: label 'XX'", "line 13: label 'XX'",
                     "line 7: age 'old' is not a number",
                     "line 14: subject 'S01' has a second 'anger' video (the first is on line 5)"):
        assert expected in text, expected


def test_empty_expression(tmp_path):
    rows = subject_rows("S01", "PD") + ["S02,HC,,videos/x.mp4,F,50"]
    with pytest.raises(ManifestError, match="line 6: empty expression for subject 'S02'"):
        read_manifest(write_manifest(tmp_path, rows))


def test_duplicate_subject_expression_names_both_lines(tmp_path):
    rows = subject_rows("S01", "PD") + ["S01,PD,happiness,videos/other.mp4,F,67"]
    message = r"line 6: subject 'S01' has a second 'happiness' video \(the first is on line 3\)"
    with pytest.raises(ManifestError, match=message):
        read_manifest(write_manifest(tmp_path, rows))


def test_one_file_for_two_expressions_is_a_manifest_error(tmp_path):
    rows = subject_rows("S01", "PD")
    rows[3] = rows[3].replace("S01_anger.mp4", "S01_happiness.mp4")  # anger (line 5) points at the happiness file
    message = r"line 5: subject 'S01' gives the same file for 'anger' as for 'happiness' \(line 3\)"
    with pytest.raises(ManifestError, match=message):
        read_manifest(write_manifest(tmp_path, rows))


def test_missing_file_names_line_and_path(tmp_path):
    rows = subject_rows("S01", "PD")
    path = write_manifest(tmp_path, rows)
    (tmp_path / "videos" / "S01_surprise.mp4").unlink()
    with pytest.raises(ManifestError, match=r"line 4: video not found: .*S01_surprise\.mp4"):
        read_manifest(path)
    assert len(read_manifest(path, check_files=False)) == 1


def test_incomplete_subject_error_or_skipped(tmp_path):
    rows = subject_rows("S01", "PD") + subject_rows("S02", "HC")[:2] + subject_rows("S03", "HC")
    path = write_manifest(tmp_path, rows)
    message = r"subject 'S02' \(line\(s\) 6, 7\) has no video for surprise, anger.*skip_incomplete"
    with pytest.raises(ManifestError, match=message):
        read_manifest(path)
    manifest = read_manifest(path, skip_incomplete=True)
    assert manifest.subject_ids == ["S01", "S03"]
    assert manifest.skipped == [("S02", "no video for surprise, anger")]
    np.testing.assert_array_equal(manifest.labels, [1, 0])


def test_incomplete_error_mentions_ignored_spelling(tmp_path):
    rows = subject_rows("S01", "PD", expressions=("neutral", "joy", "surprise", "anger"))
    with pytest.raises(ManifestError, match=r"no video for happiness \(ignored rows: joy\)"):
        read_manifest(write_manifest(tmp_path, rows))


def test_all_subjects_skipped_is_an_error(tmp_path):
    path = write_manifest(tmp_path, subject_rows("S01", "PD")[:3])
    with pytest.raises(ManifestError, match="no subject has a video for every expression"):
        read_manifest(path, skip_incomplete=True)


def test_label_disagreement_names_both_lines(tmp_path):
    rows = subject_rows("S01", "PD")
    rows[2] = rows[2].replace(",PD,", ",HC,")
    with pytest.raises(ManifestError, match="line 4: subject 'S01' is labelled HC, but line 2 labels it PD"):
        read_manifest(write_manifest(tmp_path, rows))


def test_label_disagreement_on_ignored_row_is_still_an_error(tmp_path):
    rows = subject_rows("S01", "PD") + ["S01,HC,fear,videos/f.mp4,F,67"]
    with pytest.raises(ManifestError, match="line 6: subject 'S01' is labelled HC"):
        read_manifest(write_manifest(tmp_path, rows))


def test_age_and_sex_must_agree_and_parse(tmp_path):
    rows = subject_rows("S01", "PD")
    rows[1] = rows[1].replace(",67", ",seventy")
    with pytest.raises(ManifestError, match="line 3: age 'seventy' is not a number"):
        read_manifest(write_manifest(tmp_path, rows))
    rows = subject_rows("S01", "PD")
    rows[3] = rows[3].replace(",F,", ",M,")
    with pytest.raises(ManifestError, match="line 5: subject 'S01' has sex 'M', but line 2 gives 'F'"):
        read_manifest(write_manifest(tmp_path, rows))
    rows = subject_rows("S01", "PD")
    rows[2] = rows[2].replace(",F,67", ",,")  # empty values do not disagree
    assert read_manifest(write_manifest(tmp_path, rows)).subjects[0].age == 67.0


def test_wrong_field_count(tmp_path):
    rows = subject_rows("S01", "PD") + ["S02,HC,neutral"]
    with pytest.raises(ManifestError, match="line 6: 3 fields, but the header has 6"):
        read_manifest(write_manifest(tmp_path, rows, make_files=True))


def test_empty_subject_id_and_path(tmp_path):
    with pytest.raises(ManifestError, match="line 2: empty subject_id"):
        read_manifest(write_manifest(tmp_path, [",PD,neutral,videos/a.mp4,F,1"]))
    with pytest.raises(ManifestError, match="line 2: empty path for subject 'S01', 'neutral'"):
        read_manifest(write_manifest(tmp_path, ["S01,PD,neutral,,F,1"]))


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((HEADER + "\nS01,PD,neutral,videos/Jos\xe9.mp4,F,67\n").encode("latin-1"))
    with pytest.raises(ManifestError, match=r"latin1\.csv: line 2: not UTF-8 text \(byte 0xe9\)"):
        read_manifest(path)


def test_missing_empty_and_header_only_manifest(tmp_path):
    with pytest.raises(ManifestError, match=r"nope\.csv: manifest file not found"):
        read_manifest(tmp_path / "nope.csv")
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(ManifestError, match="file is empty"):
        read_manifest(empty)
    header_only = tmp_path / "header.csv"
    header_only.write_text(HEADER + "\n")
    with pytest.raises(ManifestError, match="no data rows"):
        read_manifest(header_only)


def test_manifest_error_is_a_value_error():
    assert issubclass(ManifestError, ValueError)
    with pytest.raises(ValueError, match="distinct"):
        read_manifest("unused.csv", expressions=("anger", "Anger"))
