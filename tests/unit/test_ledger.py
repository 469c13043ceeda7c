"""The Cp ledger and the stage timer that EditRun's edit() is written with."""

from __future__ import annotations

import pytest
import torch

from editkit.ledger import KeyLedger
from editkit.memory import PeakMeter
from editkit.run import BatchReport


def keys(seed: int, d: int = 6, u: int = 3) -> torch.Tensor:
    return torch.randn(d, u, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def interrupt_addmm(monkeypatch, at: set[int]) -> None:
    """``torch.addmm`` raises KeyboardInterrupt (a Ctrl-C, or out of memory) on the calls numbered in ``at``."""
    real, calls = torch.addmm, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) in at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "addmm", interrupted)


def test_a_staged_batch_counts_only_once_committed():
    ledger = KeyLedger()
    ledger.stage({"m": keys(0)})
    assert ledger.past == {} and ledger.batches == []
    ledger.commit()
    first = ledger.past["m"]
    assert first.dtype == torch.float32
    torch.testing.assert_close(first, (keys(0) @ keys(0).T).float())  # float32 rounding of a float64 product
    before = first.clone()
    ledger.stage({"m": keys(1)})
    assert torch.equal(ledger.past["m"], before)  # staged keys do not touch Cp
    ledger.discard()  # the batch's edit failed
    assert torch.equal(ledger.past["m"], before) and len(ledger.batches) == 1
    with pytest.raises(RuntimeError):
        ledger.commit()


def test_replay_equals_commit_and_undo_takes_the_batch_out():
    edited, replayed = KeyLedger(), KeyLedger()
    for seed in (0, 1, 2):
        edited.stage({"m": keys(seed)})
        edited.commit()
        replayed.replay({"m": keys(seed)})
    assert torch.equal(edited.past["m"], replayed.past["m"])  # bit-exact: the same sums in the same order
    assert [torch.equal(a, b) for a, b in zip(edited.past_batches("m"), [keys(0), keys(1), keys(2)])] == [True] * 3
    grown = edited.past["m"].clone()
    handed_out = edited.past["m"]
    edited.undo_last()
    assert torch.equal(handed_out, grown)  # a Cp handed out (e.g. in a solve problem) never changes afterwards
    two = KeyLedger()
    for seed in (0, 1):
        two.replay({"m": keys(seed)})
    assert torch.equal(edited.past["m"], two.past["m"])  # what a run resumed after two batches holds, bit for bit
    edited.undo_last(2)
    assert edited.past == {} and edited.batches == []  # no batch left: no Cp
    assert edited.past_batches("other") == []
    with pytest.raises(RuntimeError, match="cannot undo 1 batches: 0 committed"):
        edited.undo_last()


def test_an_interrupted_commit_puts_back_the_modules_it_grew(monkeypatch):
    ledger = KeyLedger()
    ledger.stage({"a": keys(0), "b": keys(1)})
    ledger.commit()
    before = {m: t.clone() for m, t in ledger.past.items()}
    ledger.stage({"a": keys(2), "b": keys(3)})
    with monkeypatch.context() as patch:
        interrupt_addmm(patch, at={2})  # the second module's growth is interrupted
        with pytest.raises(KeyboardInterrupt):
            ledger.commit()
    assert set(ledger.past) == {"a", "b"} and all(torch.equal(ledger.past[m], before[m]) for m in before)
    assert len(ledger.batches) == 1
    ledger.discard()  # as a failed edit does
    ledger.stage({"a": keys(2), "b": keys(3)})
    ledger.commit()  # and the run goes on as if the interrupted commit had never begun
    again = KeyLedger()
    for pair in (("a", 0, "b", 1), ("a", 2, "b", 3)):
        again.replay({pair[0]: keys(pair[1]), pair[2]: keys(pair[3])})
    assert all(torch.equal(ledger.past[m], again.past[m]) for m in ("a", "b"))


def test_a_stage_adds_up_its_seconds_and_records_nothing_when_it_raises():
    report = BatchReport(index=0, size=1)
    cpu = PeakMeter(torch.device("cpu"))
    with report.stage("solve", cpu):
        pass
    first = report.timings["solve"]
    with report.stage("solve", cpu):
        pass
    assert report.timings["solve"] >= first and set(report.peak_memory) == {"solve"}
    with pytest.raises(ValueError), report.stage("apply", cpu):
        raise ValueError("a failing stage")
    assert "apply" not in report.timings


def test_a_rollback_interrupted_in_turn_is_finished_when_cp_is_next_read(monkeypatch):
    ledger = KeyLedger()
    ledger.replay({"a": keys(0), "b": keys(1)})
    before = {m: t.clone() for m, t in ledger.past.items()}
    ledger.stage({"a": keys(2), "b": keys(3)})
    with monkeypatch.context() as patch:
        interrupt_addmm(patch, at={2, 3})  # Ctrl-C while "b" grows, and again while "a" is put back
        with pytest.raises(KeyboardInterrupt):
            ledger.commit()
    ledger.discard()
    assert all(torch.equal(ledger.past[m], before[m]) for m in before)  # summed again as it is read
