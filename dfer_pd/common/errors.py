"""Errors that mean "the user asked for something that cannot be done as given"; the CLI turns them into one
message and exit code 2 (see :data:`dfer_pd.cli.USER_ERRORS` for the project's other such errors)."""

from __future__ import annotations


class UsageError(ValueError):
    """A missing or contradictory option; the message names the flag and says what to give instead."""


def require_file(path: str | None, flag: str, what: str) -> str:
    """``path`` if it names an existing file; otherwise a UsageError naming ``flag`` and what it should be."""
    from pathlib import Path

    if not path:
        raise UsageError(f"{flag} is required: give {what}")
    if not Path(path).is_file():
        hint = " (it is a folder)" if Path(path).is_dir() else ""
        raise UsageError(f"{flag} {path}: file not found{hint}; give {what}")
    return path


def require_dir(path: str | None, flag: str, what: str) -> str:
    """``path`` if it names an existing folder; otherwise a UsageError naming ``flag`` and what it should be."""
    from pathlib import Path

    if not path:
        raise UsageError(f"{flag} is required: give {what}")
    if not Path(path).is_dir():
        hint = " (it is a file)" if Path(path).is_file() else ""
        raise UsageError(f"{flag} {path}: folder not found{hint}; give {what}")
    return path
