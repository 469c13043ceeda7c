"""Measured peak memory per stage: on Linux each stage's figure is its own peak (the resident high-water mark is
reset after every stage), not the process's peak so far; elsewhere it falls back to the process peak."""

from __future__ import annotations

import mmap
import sys

import pytest
import torch

from editkit import memory
from editkit.run import BatchReport

CPU = torch.device("cpu")


def _can_reset() -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return memory._high_water_mark() is not None


@pytest.mark.skipif(not _can_reset(), reason="needs Linux's /proc/self/clear_refs and VmHWM (a resettable peak)")
def test_a_stage_reports_its_own_peak_not_the_process_peak_so_far():
    report, meter = BatchReport(index=0, size=1), memory.PeakMeter(CPU)
    size = 256 * 2**20
    with report.stage("large", meter):
        touched_and_unmapped(size)  # whatever the allocator keeps (a freed heap block may stay resident)
    with report.stage("small", meter):
        torch.ones(16)
    assert report.peak_memory["large"] - report.peak_memory["small"] > 128 * 2**20
    assert meter.so_far() >= report.peak_memory["large"]  # the reset lost nothing of the meter's peak


def resident() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))


def touched_and_unmapped(size: int) -> None:
    """Resident memory up by ``size`` and back down: an anonymous mapping, every page written, then unmapped."""
    block = mmap.mmap(-1, size)
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    block.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status (Linux)")
def test_without_a_high_water_mark_the_peak_is_still_a_peak(monkeypatch):
    monkeypatch.setattr(memory, "_STATUS", "/nonexistent/status")
    monkeypatch.setattr(memory, "_CLEAR_REFS", "/nonexistent/clear_refs")
    memory.reset_peak(CPU)  # cannot reset: no error, the peak stays the process's (getrusage)
    before = resident()
    touched_and_unmapped(256 * 2**20)
    assert memory.peak_bytes(CPU) >= before + 200 * 2**20  # the 256 MiB that came and went, not today's size


def test_each_stage_hands_back_what_it_freed_before_its_peak_is_taken(monkeypatch):
    import editkit.run as run_module

    events: list[str] = []
    monkeypatch.setattr(run_module, "release_free_memory", lambda: events.append("release") or True)
    meter = memory.PeakMeter(CPU)
    lap = meter.lap
    monkeypatch.setattr(meter, "lap", lambda: events.append("lap") or lap())
    report = BatchReport(index=0, size=1)
    for name in ("collect_keys", "solve"):
        with report.stage(name, meter):
            events.append(name)
    assert events == ["collect_keys", "release", "lap", "solve", "release", "lap"]
