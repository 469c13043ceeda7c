"""The Cp ledger and the stage timer that EditRun's edit() is written with."""

from __future__ import annotations

import pytest
import torch

from editkit.ledger import KeyLedger
from editkit.run import BatchReport


def keys(seed: int, d: int = 6, u: int = 3) -> torch.Tensor:
    return torch.randn(d, u, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


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
    # float32 sums of terms of size ~u: rounding bound 3 additions × eps32 × the largest partial sum
    expected = keys(0) @ keys(0).T + keys(1) @ keys(1).T
    magnitude = sum(keys(seed).abs() @ keys(seed).abs().T for seed in (0, 1, 2))
    bound = 8 * torch.finfo(torch.float32).eps * float(magnitude.max())
    assert float((edited.past["m"].double() - expected).abs().max()) <= bound
    assert edited.past_batches("other") == []


def test_a_stage_adds_up_its_seconds_and_records_nothing_when_it_raises():
    report = BatchReport(index=0, size=1)
    cpu = torch.device("cpu")
    with report.stage("solve", cpu):
        pass
    first = report.timings["solve"]
    with report.stage("solve", cpu):
        pass
    assert report.timings["solve"] >= first and set(report.peak_memory) == {"solve"}
    with pytest.raises(ValueError), report.stage("apply", cpu):
        raise ValueError("a failing stage")
    assert "apply" not in report.timings
