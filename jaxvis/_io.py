"""Files written so that a kill leaves the old file or the new one, never half of one, and folders
checked to be folders."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def folder(path, what: str, create: bool = True) -> Path:
    """``path`` as a folder, created with its parents if ``create``; a ``ValueError`` names
    ``what`` when ``path`` is not a path, or when it (or a parent) is a file."""
    if not isinstance(path, (str, os.PathLike)):
        raise ValueError(f"{what} must be a path (str or os.PathLike), got {type(path).__name__} {path!r}")
    path = Path(path)
    for p in (path, *path.parents):
        if p.exists() and not p.is_dir():
            raise ValueError(f"{what} must be a folder, but {p} is a file")
    if create:
        path.mkdir(parents=True, exist_ok=True)
    return path


def write_atomically(path, write: Callable[[BinaryIO], object]) -> None:
    """``write(file)`` into a temporary file beside ``path``, flushed to disk, then renamed to ``path``."""
    path = Path(path)
    folder(path.parent, f"the folder of {path.name}")
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def write_text_atomically(path, text: str) -> None:
    write_atomically(path, lambda f: f.write(text.encode()))


def read_result(path, settings: dict):
    """The result a finished run recorded at ``path`` with :func:`record_result`, or None
    if there is none. A result recorded with other ``settings`` is a ``ValueError``: a
    workdir's finished run is reused only for the settings that made it."""
    path = Path(path)
    if not path.is_file():
        return None
    try:
        done = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is damaged ({err}); delete it to run again") from err
    if not isinstance(done, dict) or "settings" not in done or "result" not in done:
        raise ValueError(f"{path} does not record its settings (an older jaxvis wrote it); delete it to run again")
    wanted = json.loads(json.dumps(settings))
    if done["settings"] != wanted:
        changed = sorted(k for k in wanted.keys() | done["settings"].keys() if wanted.get(k) != done["settings"].get(k))
        raise ValueError(f"{path.parent} holds a finished run with other settings ({', '.join(changed)}); use another "
                         "workdir, or the same settings")
    return done["result"]


def record_result(path, settings: dict, result) -> None:
    """Record a finished run's ``result`` with the ``settings`` that made it (atomically)."""
    write_text_atomically(path, json.dumps({"settings": settings, "result": result}, indent=2) + "\n")
