"""`dfer-pd train-dfer --help` from a cache: Lightning's parser needs Lightning itself (seconds to import).

The text is rebuilt whenever anything it depends on changes: the project's source files (size and
modification time), the versions of the libraries whose signatures it shows, and the terminal width.
It lives in ``$DFER_PD_CACHE_DIR``, else ``$XDG_CACHE_HOME/dfer-pd``, else ``~/.cache/dfer-pd``; a cache
that cannot be written only costs the speed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import dfer_pd
from dfer_pd.common.machine import user_cache_dir

# Libraries whose classes' signatures and docstrings appear in the help text.
LIBRARIES = ("lightning", "jsonargparse", "torch", "transformers", "docstring-parser", "typeshed-client")


def help_key(command: str, package: Path | None = None) -> str:
    """Hash of what the help text depends on (source files, library versions, terminal width)."""
    package = package or Path(dfer_pd.__file__).resolve().parent
    stamp = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        info = path.stat()
        stamp.update(f"{path.relative_to(package)}:{info.st_size}:{info.st_mtime_ns};".encode())
    versions = {}
    for library in LIBRARIES:
        try:
            versions[library] = metadata.version(library)
        except metadata.PackageNotFoundError:
            versions[library] = None
    payload = {"command": command, "version": dfer_pd.__version__, "libraries": versions,
               "sources": stamp.hexdigest(), "columns": shutil.get_terminal_size().columns}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def cached_help(command: str, build: Callable[[], str]) -> str:
    """The help text of ``command``: from the cache when it is current, else ``build()`` (and stored)."""
    path = user_cache_dir() / f"help-{command}-{help_key(command)}.txt"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        pass
    text = build()
    try:
        from dfer_pd.common.files import atomic_write

        path.parent.mkdir(parents=True, exist_ok=True)
        for stale in path.parent.glob(f"help-{command}-*.txt"):
            stale.unlink(missing_ok=True)
        with atomic_write(path, "w") as handle:
            handle.write(text)
    except OSError:
        pass
    return text
