"""Atomic writes: a temporary file (or directory) beside the target, filled, then renamed into place.

The temporary file or directory is created with the ordinary mode (``0o666`` / ``0o777`` less the
process's umask, e.g. 0644 / 0755 under umask 022), so what is installed has the mode a plain
``open(path, "w")`` or ``mkdir`` would give it (``tempfile.mkstemp`` would make it private, 0600).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_TMP = ".tmp-"
_OLD = ".old-"


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; a crash never leaves a partial ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _fresh(path.parent, f".{path.name}.", ".tmp", _new_file)
    mode = stat.S_IMODE(tmp_path.stat().st_mode)  # 0o666 less the umask
    try:
        write(tmp_path)
        if stat.S_IMODE(tmp_path.stat().st_mode) != mode:  # a writer that replaced the file (safetensors: 0600)
            os.chmod(tmp_path, mode)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | Path, data: Any) -> Path:
    return write_atomic(path, lambda p: p.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n"))


def write_safetensors_atomic(path: str | Path, tensors: dict, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    return write_atomic(path, lambda p: save_file(tensors, str(p), metadata=metadata))


def write_directory_atomic(directory: str | Path, fill: Callable[[Path], T]) -> T:
    """Call ``fill(tmp)`` on a fresh sibling ``.<name>.tmp-<pid>-<random>`` and move it to ``directory``.

    ``directory`` therefore either does not exist or holds a finished ``fill``; whatever was there is
    replaced (moved aside first, removed after). Temporary directories of processes that are gone, and
    replaced directories an interrupted install left aside, are removed first. If another process
    installs ``directory`` meanwhile, theirs is kept (the caller verifies it). Returns ``fill``'s result.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(directory)
    tmp = _fresh(directory.parent, f".{directory.name}{_TMP}{os.getpid()}-", "", os.mkdir)
    try:
        result = fill(tmp)
        _install(tmp, directory)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _new_file(path: Path) -> None:
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # mode 0o666 less the umask


def _fresh(parent: Path, prefix: str, suffix: str, create: Callable[[Path], None]) -> Path:
    """A new ``parent/<prefix><random><suffix>`` made by ``create`` (``os.mkdir``: mode 0o777 less the umask),
    which must fail with :class:`FileExistsError` when the name is taken."""
    for _ in range(100):
        candidate = parent / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            create(candidate)
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"no free temporary name {prefix}*{suffix} in {parent}")  # pragma: no cover


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's live process
        return True
    return True


def _remove_stale_temps(directory: Path) -> None:
    for tmp in directory.parent.glob(f".{directory.name}{_TMP}*"):
        pid = tmp.name[len(f".{directory.name}{_TMP}"):].split("-", 1)[0]
        if tmp.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)
    for old in directory.parent.glob(f".{directory.name}{_OLD}*"):
        shutil.rmtree(old, ignore_errors=True)


def _install(tmp: Path, directory: Path) -> None:
    """Move the finished ``tmp`` to ``directory``, replacing whatever is there."""
    aside = None
    if directory.exists():
        aside = Path(tempfile.mkdtemp(prefix=f".{directory.name}{_OLD}", dir=directory.parent))
        os.replace(directory, aside / "old")
    try:
        os.replace(tmp, directory)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # another process installed one meanwhile: keep theirs
    finally:
        if aside is not None:
            shutil.rmtree(aside, ignore_errors=True)
