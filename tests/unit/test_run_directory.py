"""The run directory has one owner at a time: a second claimant is refused at once naming the holder, a dead
holder keeps nothing, and a claim that wrote nothing leaves nothing behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from editkit.errors import InputError, UsageError
from editkit.job.rundir import LOCK_NAME, RunDirectory

HOLD = """
import sys, time
from pathlib import Path
from editkit.job.rundir import RunDirectory
d = RunDirectory.claim(sys.argv[1], resume=False)
Path(sys.argv[2]).write_text("held")
time.sleep(600)
"""


def _hold(out: Path, tmp_path: Path) -> subprocess.Popen:
    """A process that claims ``out`` and holds it until killed (returns once the claim is made)."""
    ready = tmp_path / "ready"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(ready)])
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert holder.poll() is None, "the holder died before claiming"
        assert time.monotonic() < deadline, "the holder never claimed the directory"
        time.sleep(0.05)
    return holder


def test_a_second_claim_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run"
    refused = rf"{out} is in use by another editkit run \(pid {os.getpid()} on "
    with RunDirectory.claim(out, resume=False), pytest.raises(UsageError, match=refused):
        RunDirectory.claim(out, resume=False)
    with RunDirectory.claim(out, resume=False):  # released: claimable again
        pass


def test_a_claim_that_wrote_nothing_leaves_nothing(tmp_path):
    fresh = tmp_path / "new" / "run"
    RunDirectory.claim(fresh, resume=False).release()
    assert not fresh.exists()
    existing = tmp_path / "existing"
    existing.mkdir()
    with RunDirectory.claim(existing, resume=False) as directory:
        assert (existing / LOCK_NAME).is_file()
        (directory.path / "result.json").write_text("{}")
    assert existing.is_dir() and sorted(p.name for p in existing.iterdir()) == ["result.json"]


def test_a_killed_holder_does_not_keep_the_directory(tmp_path):
    out = tmp_path / "run"
    holder = _hold(out, tmp_path)
    try:
        with pytest.raises(UsageError, match=rf"pid {holder.pid} on "):
            RunDirectory.claim(out, resume=False)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (out / LOCK_NAME).exists()  # the dead holder's file stays, its lock does not
    with RunDirectory.claim(out, resume=False):
        pass


def test_the_cli_refuses_a_second_run_on_the_same_out_before_any_work(tmp_path):
    out = tmp_path / "run"
    holder = _hold(out, tmp_path)
    try:
        result = subprocess.run([sys.executable, "-m", "editkit", "run", "--out", str(out), "--model", "nowhere/x"],
                                capture_output=True, text=True, timeout=300)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert result.returncode == 2, result.stderr
    assert f"in use by another editkit run (pid {holder.pid}" in result.stderr
    assert not (out / "journal").exists()


def test_resume_needs_a_journal_and_releases_the_claim_when_it_has_none(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(InputError, match="no journal here"):
        RunDirectory.claim(out, resume=True)
    assert not (out / LOCK_NAME).exists()
