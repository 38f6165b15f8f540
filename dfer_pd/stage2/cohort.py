"""The PD cohort manifest: one CSV row per (subject, expression) video.

Columns (header names are case-insensitive; other columns are ignored)::

    subject_id,label,expression,path,sex,age
    S001,PD,neutral,videos/S001_neutral.mp4,F,67
    S001,PD,happiness,videos/S001_happiness.mp4,F,67
    ...

``subject_id``, ``label``, ``expression`` and ``path`` are required; ``sex``, ``age``, ``updrs_3_2``
(MDS-UPDRS part III item 3.2, facial expression: an integer 0 normal to 4 severe) and ``hoehn_yahr`` (Hoehn and
Yahr stage 0-5 in half steps) may be left out or empty (unknown). ``label`` is ``PD`` or ``HC`` (any case; PD is the positive class, 1).
``path`` is a video file or a frame folder, relative to the manifest's folder unless absolute.
``expression`` names the asked expression; DFEW spellings (``happy``, ``angry``, ``surprised``)
are accepted. Rows whose expression is not one of the configured expressions (a cohort recorded
with seven, of which the model uses four) are ignored and counted in
:attr:`CohortManifest.ignored_rows`; their label still has to agree with the subject's other rows.

Errors name the manifest and the CSV line number (the header is line 1).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from dfer_pd.common.constants import COHORT_LABELS, EXPRESSIONS

REQUIRED_COLUMNS: tuple[str, ...] = ("subject_id", "label", "expression", "path")
OPTIONAL_COLUMNS: tuple[str, ...] = ("sex", "age", "updrs_3_2", "hoehn_yahr")
UPDRS_3_2_SCORES: tuple[int, ...] = (0, 1, 2, 3, 4)
"""MDS-UPDRS item 3.2 (facial expression): 0 normal, 1 slight, 2 mild, 3 moderate, 4 severe."""
EXPRESSION_ALIASES: dict[str, str] = {"happy": "happiness", "angry": "anger", "surprised": "surprise"}


def require_cohort_inputs(manifest: str | None, checkpoint: str | None, command: str = "train-pd") -> None:
    """The manifest and the stage-1 checkpoint a cohort is scored with, both existing files; otherwise one
    UsageError naming the flag. Light: commands call it before torch is imported, so a wrong path answers at once."""
    from dfer_pd.common.errors import require_file

    alternative = "" if command == "extract" else " (or --intensities FILE.npz saved by extract or train-pd)"
    require_file(manifest, "--cohort.manifest",
                 f"the cohort manifest CSV (subject_id,label,expression,path[,sex,age]){alternative}")
    require_file(checkpoint, "--extraction.checkpoint",
                 f"a stage-1 checkpoint written by `dfer-pd train-dfer` (<run>/checkpoints/best.ckpt){alternative}")


class ManifestError(ValueError):
    """A cohort manifest that cannot be used; the message names the file, the line and the problem.

    ``problems`` lists every problem found (a manifest is checked to the end, not to its first error).
    """

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or [message]


def _all_problems(path: Path, problems: list[str]) -> ManifestError:
    """One error listing every problem, each with its line (one problem reads as before)."""
    if len(problems) == 1:
        return ManifestError(problems[0], problems)
    prefix = f"{path}: "
    listed = "\n".join(f"  {p[len(prefix):] if p.startswith(prefix) else p}" for p in problems)
    return ManifestError(f"{path}: {len(problems)} problems:\n{listed}", problems)


@dataclass(frozen=True)
class CohortSubject:
    """One participant: label (1 = PD, 0 = HC) and one video per configured expression."""

    subject_id: str
    label: int
    videos: dict[str, Path]
    sex: str | None = None
    age: float | None = None
    lines: dict[str, int] = field(default_factory=dict, compare=False)  # manifest line of each video
    updrs_3_2: int | None = None  # MDS-UPDRS item 3.2, None when not known
    hoehn_yahr: float | None = None

    def line(self, expression: str) -> int | None:
        """The manifest line that lists this subject's ``expression`` video (None when not known)."""
        return self.lines.get(expression)


@dataclass
class CohortManifest:
    """The subjects of a manifest that have every configured expression, in file order."""

    path: Path
    expressions: tuple[str, ...]
    subjects: list[CohortSubject]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (subject_id, reason)
    ignored_rows: dict[str, int] = field(default_factory=dict)  # expression -> rows ignored
    problems: list[str] = field(default_factory=list)  # read with lenient=True: what must still be fixed

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def labels(self) -> np.ndarray:
        return np.array([subject.label for subject in self.subjects], dtype=np.int64)

    @property
    def subject_ids(self) -> list[str]:
        return [subject.subject_id for subject in self.subjects]

    @property
    def updrs_3_2(self) -> np.ndarray:
        """Each subject's MDS-UPDRS item 3.2 score as float, NaN where the manifest gives none."""
        return np.array([np.nan if s.updrs_3_2 is None else s.updrs_3_2 for s in self.subjects], dtype=np.float64)

    @property
    def hoehn_yahr(self) -> np.ndarray:
        """Each subject's Hoehn and Yahr stage, NaN where the manifest gives none."""
        return np.array([np.nan if s.hoehn_yahr is None else s.hoehn_yahr for s in self.subjects], dtype=np.float64)

    def video_paths(self) -> list[tuple[str, str, Path]]:
        """Every (subject_id, expression, path), subjects in file order, expressions in config order."""
        return [
            (subject.subject_id, expression, subject.videos[expression])
            for subject in self.subjects
            for expression in self.expressions
        ]


@dataclass
class _SubjectRows:
    """What the rows of one subject said so far, with the line each value came from."""

    label: int | None  # None until a row gives a valid label
    label_line: int
    lines: list[int] = field(default_factory=list)
    videos: dict[str, tuple[Path, int]] = field(default_factory=dict)
    ignored: set[str] = field(default_factory=set)
    sex: tuple[str, int] | None = None
    age: tuple[float, int] | None = None
    updrs_3_2: tuple[int, int] | None = None
    hoehn_yahr: tuple[float, int] | None = None


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise ManifestError(f"{path}: manifest file not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise ManifestError(
            f"{path}: line {line}: not UTF-8 text (byte 0x{data[error.start]:02x}); "
            "save the manifest as UTF-8"
        ) from error


def _expression_name(value: str) -> str:
    name = value.strip().lower()
    return EXPRESSION_ALIASES.get(name, name)


def _check_expressions(expressions: Sequence[str]) -> tuple[str, ...]:
    names = tuple(_expression_name(str(name)) for name in expressions)
    if not names or any(not name for name in names) or len(set(names)) != len(names):
        raise ValueError(f"expressions must be distinct non-empty names, got {tuple(expressions)!r}")
    return names


def _header(path: Path, reader) -> list[str]:
    try:
        header = next(reader)
    except StopIteration:
        raise ManifestError(f"{path}: file is empty (no header line)") from None
    names = [name.strip().lower() for name in header]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    if missing:
        hint = " (is it separated by ';'? use commas)" if len(names) == 1 and ";" in names[0] else ""
        raise ManifestError(
            f"{path}: line 1: missing column(s) {', '.join(repr(m) for m in missing)}; "
            f"found {names}{hint}"
        )
    repeated = sorted(name for name, count in Counter(names).items() if count > 1 and name)
    if repeated:
        raise ManifestError(f"{path}: line 1: repeated column(s) {repeated}")
    return names


def _parse_label(where: str, value: str) -> int:
    label = value.strip().upper()
    if label not in COHORT_LABELS:
        raise ManifestError(f"{where}: label {value!r} is not one of {', '.join(COHORT_LABELS)}")
    return COHORT_LABELS.index(label)


def _parse_age(where: str, value: str) -> float | None:
    if not value.strip():
        return None
    try:
        age = float(value)
    except ValueError:
        raise ManifestError(f"{where}: age {value!r} is not a number") from None
    if not math.isfinite(age) or age < 0:
        raise ManifestError(f"{where}: age {value!r} is not a valid age")
    return age


def _parse_updrs_3_2(where: str, value: str) -> int | None:
    text = value.strip()
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        number = math.nan
    if not math.isfinite(number) or number != int(number) or int(number) not in UPDRS_3_2_SCORES:
        raise ManifestError(f"{where}: updrs_3_2 {value!r} is not an MDS-UPDRS 3.2 score (an integer 0-4; empty if unknown)")
    return int(number)


def _parse_hoehn_yahr(where: str, value: str) -> float | None:
    text = value.strip()
    if not text:
        return None
    try:
        stage = float(text)
    except ValueError:
        stage = math.nan
    if not math.isfinite(stage) or not 0 <= stage <= 5 or stage * 2 != int(stage * 2):
        raise ManifestError(f"{where}: hoehn_yahr {value!r} is not a Hoehn and Yahr stage (0-5 in half steps; empty if unknown)")
    return stage


def _video_path(base: Path, value: str) -> Path:
    path = Path(value.strip()).expanduser()
    return Path(os.path.normpath(path if path.is_absolute() else base / path))


def _same_or_error(where: str, subject_id: str, name: str, held, value, line: int):
    """Keep a per-subject value; rows that give a different one are an error."""
    if value is None:
        return held
    if held is None:
        return value, line
    if held[0] != value:
        raise ManifestError(
            f"{where}: subject {subject_id!r} has {name} {value!r}, "
            f"but line {held[1]} gives {held[0]!r}"
        )
    return held


def read_manifest(
    path: str | Path,
    expressions: Sequence[str] = EXPRESSIONS,
    skip_incomplete: bool = False,
    check_files: bool = True,
    lenient: bool = False,
) -> CohortManifest:
    """Read and validate a cohort manifest.

    Every subject needs exactly one row per configured expression. A subject lacking one is an
    error, or with ``skip_incomplete=True`` is left out and listed in ``skipped``.
    ``check_files`` checks that each used video file or frame folder exists. With ``lenient`` the
    problems are returned in ``problems`` (not raised) with the subjects whose videos all exist, so that
    extraction can check those videos and report both kinds of problem in one list.
    """
    path = Path(path)
    expressions = _check_expressions(expressions)
    reader = csv.reader(io.StringIO(_read_text(path), newline=""))
    columns = _header(path, reader)
    base = path.parent.absolute()
    subjects: dict[str, _SubjectRows] = {}
    ignored: Counter[str] = Counter()

    problems: list[str] = []  # every problem, in file order; reported together at the end

    def checked(function, *args):
        """``function(*args)``, or None with its ManifestError added to ``problems``."""
        try:
            return function(*args)
        except ManifestError as error:
            problems.append(str(error))
            return None

    for fields in reader:
        line = reader.line_num
        where = f"{path}: line {line}"
        if not any(value.strip() for value in fields):
            continue  # blank line
        if len(fields) != len(columns):
            problems.append(f"{where}: {len(fields)} fields, but the header has {len(columns)}")
            continue
        row = dict(zip(columns, fields))
        subject_id = row["subject_id"].strip()
        if not subject_id:
            problems.append(f"{where}: empty subject_id")
            continue
        label = checked(_parse_label, where, row["label"])
        expression = _expression_name(row["expression"])
        if not expression:
            problems.append(f"{where}: empty expression for subject {subject_id!r}")

        rows = subjects.setdefault(subject_id, _SubjectRows(label=label, label_line=line))
        rows.lines.append(line)
        if label is not None and rows.label is None:
            rows.label, rows.label_line = label, line
        elif label is not None and label != rows.label:
            problems.append(
                f"{where}: subject {subject_id!r} is labelled {COHORT_LABELS[label]}, "
                f"but line {rows.label_line} labels it {COHORT_LABELS[rows.label]}"
            )
        sex = row.get("sex", "").strip() or None
        rows.sex = checked(_same_or_error, where, subject_id, "sex", rows.sex, sex, line) or rows.sex
        age = checked(_parse_age, where, row.get("age", ""))
        rows.age = checked(_same_or_error, where, subject_id, "age", rows.age, age, line) or rows.age
        score = checked(_parse_updrs_3_2, where, row.get("updrs_3_2", ""))
        rows.updrs_3_2 = checked(_same_or_error, where, subject_id, "updrs_3_2", rows.updrs_3_2, score, line) or rows.updrs_3_2
        stage = checked(_parse_hoehn_yahr, where, row.get("hoehn_yahr", ""))
        rows.hoehn_yahr = (checked(_same_or_error, where, subject_id, "hoehn_yahr", rows.hoehn_yahr, stage, line)
                           or rows.hoehn_yahr)

        if not expression:
            continue
        if expression not in expressions:
            ignored[expression] += 1
            rows.ignored.add(expression)
            continue
        if expression in rows.videos:
            problems.append(
                f"{where}: subject {subject_id!r} has a second {expression!r} video "
                f"(the first is on line {rows.videos[expression][1]})"
            )
            continue
        if not row["path"].strip():
            problems.append(f"{where}: empty path for subject {subject_id!r}, {expression!r}")
            continue
        video = _video_path(base, row["path"])
        if check_files and not video.exists():
            problems.append(f"{where}: video not found: {video}")
        same = [(name, at) for name, (other, at) in rows.videos.items() if other == video]
        if same:
            problems.append(f"{where}: subject {subject_id!r} gives the same file for {expression!r} as for "
                            f"{same[0][0]!r} (line {same[0][1]}); each expression needs its own recording")
        rows.videos[expression] = (video, line)  # kept even when missing: one problem, not a second "no video"

    if not subjects and not problems:
        raise ManifestError(f"{path}: no data rows")
    complete: list[CohortSubject] = []
    skipped: list[tuple[str, str]] = []
    for subject_id, rows in subjects.items():
        missing = [name for name in expressions if name not in rows.videos]
        if missing:
            reason = f"no video for {', '.join(missing)}"
            if not skip_incomplete:
                hint = f" (ignored rows: {', '.join(sorted(rows.ignored))})" if rows.ignored else ""
                lines = ", ".join(str(n) for n in rows.lines)
                problems.append(
                    f"{path}: subject {subject_id!r} (line(s) {lines}) has {reason}{hint}; "
                    "add the rows, or skip such subjects (--cohort.skip_incomplete true)"
                )
            else:
                skipped.append((subject_id, reason))
            continue
        if rows.label is None:
            continue  # its label problem is listed
        complete.append(
            CohortSubject(
                subject_id=subject_id,
                label=rows.label,
                videos={name: rows.videos[name][0] for name in expressions},
                sex=rows.sex[0] if rows.sex else None,
                age=rows.age[0] if rows.age else None,
                lines={name: rows.videos[name][1] for name in expressions},
                updrs_3_2=rows.updrs_3_2[0] if rows.updrs_3_2 else None,
                hoehn_yahr=rows.hoehn_yahr[0] if rows.hoehn_yahr else None,
            )
        )
    if problems and not (lenient and complete):
        raise _all_problems(path, problems)
    if lenient and check_files:
        complete = [s for s in complete if all(video.exists() for video in s.videos.values())]
        if problems and not complete:
            raise _all_problems(path, problems)
    if not complete:
        raise ManifestError(
            f"{path}: no subject has a video for every expression {', '.join(expressions)} "
            f"({len(skipped)} skipped)"
        )
    return CohortManifest(
        path=path.absolute(),
        expressions=expressions,
        subjects=complete,
        skipped=skipped,
        ignored_rows=dict(ignored),
        problems=problems,
    )
