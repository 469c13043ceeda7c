"""Checks of output locations before any work: a clear usage error (exit 2) naming the path, not a
traceback after the model was loaded and the work done (hours later on a real model).

Writability is tried for real (an empty probe directory, removed at once): permission bits do not
tell for root, ACLs, read-only mounts or ``/proc``. Nothing is left behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from editkit.errors import UsageError


def _existing_ancestor(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (as anything: directory, file, ...)."""
    path = Path(os.path.abspath(path))
    while not os.path.lexists(path) and path != path.parent:
        path = path.parent
    return path


def check_writable_directory(directory: Path, option: str, shown: Path | None = None) -> None:
    """Raise :class:`UsageError` unless files can be created in ``directory`` or, when it does not exist
    yet, it can be created (its nearest existing ancestor is a directory in which this process can
    create entries). Tried for real with a temporary directory, removed at once: permission bits do
    not tell (root, read-only mounts, ``/proc``)."""
    shown = directory if shown is None else shown
    base = _existing_ancestor(directory)
    if not base.is_dir():
        raise UsageError(f"{option} {shown}: {base} is a file, so no directory can be made under it")
    try:
        probe = tempfile.mkdtemp(prefix=".editkit-write-check-", dir=base)
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise UsageError(f"{option} {shown}: cannot create anything in {base} ({reason})") from None
    os.rmdir(probe)


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` if it is a directory this process can create entries in, or can be created as one (a
    run's ``--out``, which may already exist); a regular file or a path under one is refused."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: this is a file, not a directory; choose a directory")
    check_writable_directory(path, option)
    return path


def check_new_directory(path: str | Path, option: str) -> None:
    """``path`` is where a new directory will be installed (written beside it, then renamed): it must not
    exist or be an empty directory, and its parent must be writable (or creatable)."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise UsageError(f"{option} {path}: exists and is not a directory; give a new directory")
        if any(path.iterdir()):
            raise UsageError(f"{option} {path}: exists and is not empty; give a new directory")
    check_writable_directory(path.parent, option, shown=path)


def check_run_directory(path: str | Path, option: str) -> None:
    """``path`` is an existing run directory that will be written to (``--resume``)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{option} {path}: no such directory (give the --out directory of the run)")
    if not path.is_dir():
        raise UsageError(f"{option} {path}: not a directory (give the --out directory of the run, not a file in it)")
    check_writable_directory(path, option)
