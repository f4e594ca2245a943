"""Files a command writes: checked before any work is recorded (a path that cannot be
written is one line, not a failed run), and kept under the folder they belong to."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from engine.core.typed import ConfigError


def inside(directory: str | Path, path: str | Path) -> Path:
    """``path`` resolved, when it lies under ``directory``; else a :class:`ConfigError` (a
    name that would write outside the folder it belongs to)."""
    root = Path(directory).resolve()
    target = Path(path).resolve()
    if target != root and root not in target.parents:
        raise ConfigError(f"{path} would be written outside {directory}")
    return target


def check_writable(path: str | Path, flag: str) -> Path:
    """``path`` when a file can be written there (its folder is made if missing); else a
    :class:`ConfigError` naming ``flag``. An existing file is opened for appending and left
    as it was; a new one is created and removed again, so the check is the real thing."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise ConfigError(f"{flag} {path} is a folder, not a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            with open(target, "a"):
                pass
        else:
            with open(target, "x"):
                pass
            os.unlink(target)
    except OSError as exc:
        raise ConfigError(f"{flag} {path} cannot be written ({exc.strerror or exc})") from None
    return target


def check_folder(path: str | Path, flag: str) -> Path:
    """``path`` when it is (or can be made as) a folder that files can be written in; else a
    :class:`ConfigError` naming ``flag``. Nothing is made: a file is created and removed in
    the nearest folder that exists."""
    target = Path(path).expanduser()
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{flag} {path} is a file, not a folder")
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"{flag} {path} cannot be made: {existing} is a file")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as exc:
        raise ConfigError(f"{flag} {path} cannot be written ({exc.strerror or exc})") from None
    return target
