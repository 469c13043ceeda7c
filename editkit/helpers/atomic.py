"""Atomic writes: a temporary file (or directory) beside the target, filled, then renamed into place.

The temporary file or directory is created with the ordinary mode (``0o666`` / ``0o777`` less the
process's umask, e.g. 0644 / 0755 under umask 022), so what is installed has the mode a plain
``open(path, "w")`` or ``mkdir`` would give it (``tempfile.mkstemp`` would make it private, 0600).

A write that fails for want of space or for the storage's sake (disk full, quota, file too large,
read-only file system, I/O error), or whose rename or fsync fails, raises :class:`WriteError`: one line
naming the file being written and the reason (``editkit …: error: cannot write PATH: No space left on
device``, exit 1), with the temporary file removed, so nothing partial is left and the old file, if any,
is untouched. ``WriteError`` is an :class:`OSError` too (same ``errno`` and ``strerror``), so callers
that catch ``OSError`` still do. Other failures of the caller's ``write`` propagate unchanged.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from editkit.errors import EditkitError

T = TypeVar("T")

_TMP = ".tmp-"
_OLD = ".old-"
STORAGE_ERRNOS = frozenset(
    code for code in (getattr(errno, name, None) for name in ("ENOSPC", "EDQUOT", "EFBIG", "EROFS", "EIO"))
    if code is not None
)
_OS_ERROR = re.compile(r"\(os error (\d+)\)")  # how Rust writers (safetensors) report an errno


class WriteError(EditkitError, OSError):
    """A file could not be written (exit code 1): ``str()`` is one line naming the file and the reason.

    Construct with ``WriteError(errno, reason, path)``; :func:`write_error` makes one from a failure.
    """

    def __str__(self) -> str:
        hint = "; free some space and run the command again" if self.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        return f"cannot write {self.filename}: {self.strerror}{hint}"


def _errno_of(exc: BaseException) -> int | None:
    if isinstance(exc, OSError):
        return exc.errno
    match = _OS_ERROR.search(str(exc))  # e.g. SafetensorError("... No space left on device (os error 28) ...")
    return int(match.group(1)) if match else None


def write_error(path: str | Path, exc: BaseException, *, any_os_error: bool = False) -> WriteError | None:
    """``exc`` as a :class:`WriteError` naming ``path``, or None when it is not a failure to store data.

    A storage failure (:data:`STORAGE_ERRNOS`, from an :class:`OSError` or from a writer that reports
    ``(os error N)``) always is; with ``any_os_error`` (the step could only fail writing ``path``: a
    rename, an fsync, creating the folder) every :class:`OSError` is. A ``WriteError`` is returned as it is.
    """
    if isinstance(exc, WriteError):
        return exc
    if any_os_error and isinstance(exc, OSError):
        return _failed(path, exc)
    code = _errno_of(exc)
    if code is None or code not in STORAGE_ERRNOS:
        return None
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else os.strerror(code)
    return WriteError(code, reason, str(path))


@contextlib.contextmanager
def writing(path: str | Path, *, any_os_error: bool = False) -> Iterator[None]:
    """Turn a failure to store ``path`` inside the block into a :class:`WriteError` (:func:`write_error`)."""
    try:
        yield
    except Exception as exc:
        failure = write_error(path, exc, any_os_error=any_os_error)
        if failure is None:
            raise
        raise failure from exc


def _failed(path: str | Path, exc: OSError) -> WriteError:
    """``exc`` (raised while writing ``path``: creating, renaming, syncing it) as a :class:`WriteError`."""
    if isinstance(exc, WriteError):
        return exc
    code = exc.errno if exc.errno is not None else errno.EIO
    return WriteError(code, exc.strerror or str(exc) or os.strerror(code), str(path))


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp_path)`` then rename onto ``path``; a crash never leaves a partial ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = _fresh(path.parent, f".{path.name}.", ".tmp", _new_file)
    except OSError as exc:
        raise _failed(path, exc) from exc
    try:
        mode = stat.S_IMODE(tmp_path.stat().st_mode)  # 0o666 less the umask
        try:
            write(tmp_path)
        except Exception as exc:
            failure = write_error(path, exc)
            if failure is None:
                raise
            raise failure from exc
        try:
            if stat.S_IMODE(tmp_path.stat().st_mode) != mode:  # a writer that replaced the file (safetensors: 0600)
                os.chmod(tmp_path, mode)
            with open(tmp_path, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp_path, path)
        except OSError as exc:
            raise _failed(path, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):  # a failing unlink must not hide why the write failed
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
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(directory)
        tmp = _fresh(directory.parent, f".{directory.name}{_TMP}{os.getpid()}-", "", os.mkdir)
    except OSError as exc:
        raise _failed(directory, exc) from exc
    try:
        try:
            result = fill(tmp)
        except Exception as exc:
            failure = write_error(_final_name(exc, tmp, directory), exc)
            if failure is None:
                raise
            raise failure from exc
        try:
            _install(tmp, directory)
        except OSError as exc:
            raise _failed(directory, exc) from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return result


def _final_name(exc: BaseException, tmp: Path, directory: Path) -> Path:
    """Where the file that ``exc`` names would have been installed (``directory`` when it names none)."""
    name = getattr(exc, "filename", None)
    if isinstance(name, (str, os.PathLike)):
        with contextlib.suppress(ValueError):
            return directory / Path(name).relative_to(tmp)
    return directory


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
