"""The run directory's one owner: claim, resume check, journal, manifest and result files of ``editkit run``.

:meth:`RunDirectory.claim` is called once per run, before any work: it checks the path, takes an exclusive
lock on ``OUT/.editkit-run.lock`` (``flock``: the kernel drops it when the holder dies, so a killed run never
keeps its directory), and checks what is there — a new run refuses a journal with a complete batch, a resumed
one needs one and reads its manifest once (:attr:`RunDirectory.journaled`). A second claimant is refused at
once with the holder's pid, host and start time. Then the pipeline only edits and evaluates: it hands the
directory the manifest fields (:meth:`begin_new`), each batch (:meth:`record_batch`, the manifest goes with the
first) and the results (:meth:`write_results`). :meth:`release` (or leaving the ``with`` block) drops the lock
and removes the directory again if this claim created it and the run wrote nothing into it.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import torch

from editkit.errors import UsageError
from editkit.helpers.atomic import write_json_atomic, write_safetensors_atomic
from editkit.job.journal import FORMAT, Journal
from editkit.job.outputs import check_output_dir, check_run_directory

LOCK_NAME = ".editkit-run.lock"

try:  # POSIX; elsewhere runs are not protected against a concurrent second claimant
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]


class RunDirectory:
    """A claimed run directory (see the module docstring). Use :meth:`claim`; a context manager."""

    def __init__(self, path: Path, *, resume: bool, created: bool, lock: Any) -> None:
        self.path = path
        self.resume = resume
        self.journal = Journal(path)
        self.journaled: dict[str, Any] | None = None  # the manifest being resumed
        self._created = created
        self._lock = lock
        self._pending_manifest: dict[str, Any] | None = None

    # ------------------------------------------------------------------ claim and release

    @classmethod
    def claim(cls, path: str | Path, *, resume: bool, option: str | None = None) -> RunDirectory:
        """Check ``path``, lock it for this process and check what it holds (exit 2 on any problem)."""
        path = Path(path)
        option = option or ("--resume" if resume else "--out")
        if resume:
            check_run_directory(path, option)
        else:
            check_output_dir(path, option)
        created = not path.exists()
        path.mkdir(parents=True, exist_ok=True)
        lock = _lock(path)
        directory = cls(path, resume=resume, created=created, lock=lock)
        try:
            if resume:
                directory.journaled = directory.journal.check_resumable(path)
            else:
                directory.journal.check_new_run(path)
        except BaseException:
            directory.release()
            raise
        return directory

    def release(self) -> None:
        """Drop the lock; remove the directory if this claim created it and nothing was written to it."""
        lock, self._lock = self._lock, None
        if lock is None:
            return
        with contextlib.suppress(OSError):
            (self.path / LOCK_NAME).unlink()
        lock.close()
        if self._created:
            with contextlib.suppress(OSError):
                self.path.rmdir()  # only when empty

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    # ------------------------------------------------------------------ the journal

    def start(self) -> None:
        """Make the journal ready: a new run removes a journal without a complete batch (a run that stopped
        before its first batch left it); a resumed one discards batches that never got their entry."""
        if self.resume:
            self.journal.discard_incomplete()
        else:
            self.journal.claim_for_new_run(self.path)

    def begin_new(self, *, invocation: Mapping[str, Any], config: Mapping[str, Any], model: str,
                  edited_modules: list[str], base_hash: str, batches: int, requests: list[dict[str, Any]],
                  pre_scores: list[dict[str, Any]], pre_metrics: Mapping[str, Any],
                  pre_completions: list[str]) -> None:
        """The manifest of a new run, written with its first batch (a run that fails before then leaves no
        journal). Its fields are those ``--resume``, ``editkit apply`` and ``editkit report`` read."""
        from editkit.job.journal import BASE_HASH

        self._pending_manifest = {
            "invocation": dict(invocation), "config": dict(config), "model": model,
            "edited_modules": list(edited_modules), BASE_HASH: base_hash, "batches": batches,
            "requests": requests, "pre_scores": pre_scores, "pre_metrics": dict(pre_metrics),
            "pre_completions": pre_completions, "run_state": {},
        }

    def record_batch(self, index: int, requests: list[dict[str, Any]], deltas: Mapping[str, torch.Tensor],
                     state: Mapping[str, torch.Tensor], extra: Mapping[str, Any],
                     run_state: Mapping[str, Any]) -> None:
        """Journal batch ``index`` (the manifest first, with the run's state, when this is a new run's first)."""
        if self._pending_manifest is not None:
            self.journal.write_manifest({**self._pending_manifest, "run_state": dict(run_state)})
            self._pending_manifest = None
        self.journal.append(index, requests, deltas, state, extra=extra)

    # ------------------------------------------------------------------ results

    def write_results(self, result: Mapping[str, Any], deltas: Mapping[str, torch.Tensor], model_id: str) -> None:
        """``deltas.safetensors`` then ``result.json`` (a ``result.json`` means the run is complete)."""
        write_safetensors_atomic(self.path / "deltas.safetensors", dict(deltas),
                                 metadata={"layout": "storage", "model": model_id})
        write_json_atomic(self.path / "result.json", dict(result))


__all__ = ["FORMAT", "LOCK_NAME", "RunDirectory"]


def _lock(path: Path) -> Any:
    """An open lock file held with an exclusive ``flock``; a held one raises :class:`UsageError` naming its
    holder. The lock file is removed on release, so the file locked must still be the one at the path (else a
    releasing holder unlinked it between our open and our lock: try again)."""
    lock_path = path / LOCK_NAME
    while True:
        handle = lock_path.open("a+", encoding="utf-8")
        if fcntl is None:  # pragma: no cover
            return handle
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise UsageError(f"{path} is in use by another editkit run ({_holder(holder)}); wait for it to "
                             "finish, or choose another --out") from None
        try:
            same = os.stat(lock_path).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    handle.seek(0)
    handle.truncate()
    handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}))
    handle.flush()
    return handle


def _holder(text: str) -> str:
    try:
        who = json.loads(text)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(who["since"])))
        return f"pid {who['pid']} on {who['host']}, since {since}"
    except (ValueError, KeyError, TypeError):
        return "another process"
