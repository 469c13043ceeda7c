"""Checking an output directory option (``--out``) before any work is done.

A run writes its results only at the end (hours later on a real model), so an output path that
cannot hold a directory — a regular file, a path under a file, ``/proc/...``, a read-only
directory — must be refused up front (exit 2, naming the path), not found by a traceback at the end.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from editkit.errors import UsageError


def check_output_dir(path: str | Path, option: str = "--out") -> Path:
    """``path`` if it is a directory editkit can create entries in, or can be created as one.

    The check creates and removes one empty probe directory in ``path`` (or, when ``path`` does not
    exist yet, in its nearest existing ancestor), so it answers for this process's actual rights
    (root, ACLs, read-only mounts) rather than the mode bits. Nothing is left behind.
    Raises :class:`UsageError` naming ``option`` and the path.
    """
    path = Path(path)
    if path.exists():
        if not path.is_dir():
            raise UsageError(f"{option} {path}: this is a file, not a directory; choose a directory")
        where = path
    else:
        where = next((p for p in path.absolute().parents if p.exists()), Path("/"))
        if not where.is_dir():
            raise UsageError(f"{option} {path}: {where} is a file, so no directory can be made under it")
    try:
        probe = tempfile.mkdtemp(prefix=".editkit-write-check-", dir=where)
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise UsageError(f"{option} {path}: cannot create anything in {where} ({reason})") from None
    os.rmdir(probe)
    return path
