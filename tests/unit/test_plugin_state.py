"""The kernel's support for stateful plugins and target values: what a plugin saves after each batch is given back
in full after an undo, after a failed batch and on resume; bad state is refused naming the plugin; target values
pass through the constraints before any residual; the run notes ‖W_n‖/‖W_0‖ per layer."""

from __future__ import annotations

from typing import ClassVar

import attrs
import pytest
import torch

from editkit import ConstraintSpec, hookimpl
from editkit.errors import EditkitError
from editkit.testing.harness import build_run, plugin_host
from editkit.testing.moments import MomentsFromText
from editkit.testing.tiny import TINY_DIMS, tiny_model, tiny_requests, tiny_texts, tiny_tokenizer
from editkit.updates import DeltaProposal, TargetProposal


@attrs.frozen(kw_only=True)
class NoHParams:
    pass


class Counter:
    """Counts the batches it saw; journals the count; optionally fails in a given batch or saves bad state."""

    fail_in_batch: ClassVar[int | None] = None
    bad_state: ClassVar[object] = None

    def __init__(self, hparams):
        self.count = 0
        self.loads: list[int] = []
        self.targets_seen = 0

    @hookimpl
    def editkit_constrain_update(self, run, site, proposal):
        if isinstance(proposal, TargetProposal):
            self.targets_seen += 1
            return proposal.with_target(proposal.initial.clone(), skipped=[True] * proposal.target.shape[0])
        if isinstance(proposal, DeltaProposal) and self.fail_in_batch == self.count:
            raise RuntimeError("boom")
        return None

    @hookimpl
    def editkit_batch_end(self, run, batch):
        self.count += 1

    @hookimpl
    def editkit_save_state(self, run):
        return self.bad_state if self.bad_state is not None else {"count": torch.tensor(self.count)}

    @hookimpl
    def editkit_load_state(self, run, states):
        self.loads.append(len(states))
        self.count = int(states[-1]["count"]) if states else 0


class Registers:
    def __init__(self, factory):
        self.spec = ConstraintSpec(name="counter", summary="counts", factory=factory, hparams=NoHParams,
                                   invariant="none", linear=True, needs_targets=True)

    @hookimpl
    def editkit_register_constraints(self, register):
        register(self.spec)


def _run(factory=Counter):
    tok = tiny_tokenizer()
    model = tiny_model("llama", vocab_size=len(tok), logit_scale=20.0, **TINY_DIMS)
    stats = MomentsFromText(model=model, tokenizer=tok, texts=tiny_texts())
    host = plugin_host(("counter", Registers(factory)))
    return build_run(model=model, tokenizer=tok, key_statistics=stats, host=host, constraints=["counter"])


def _counter(run) -> Counter:
    return next(p for spec, p in run.constraints if spec.name == "counter")


def test_undo_gives_the_plugins_their_state_after_the_remaining_batches():
    run = _run()
    for i in range(3):
        run.edit(tiny_requests(2, offset=2 * i))
    counter = _counter(run)
    saved = [int(b["constraint:counter"]["count"]) for b in run.plugin_states.batches]
    assert counter.count == 3 and saved == [1, 2, 3]
    run.undo_last(2)
    assert counter.count == 1 and counter.loads[-1] == 1
    run.undo_last(1)
    assert counter.count == 0 and counter.loads[-1] == 0  # before the first batch: an empty list


def test_a_failed_batch_gives_the_plugins_back_their_committed_state():
    class FailsInBatch1(Counter):
        fail_in_batch: ClassVar[int | None] = 1

    run = _run(FailsInBatch1)
    run.edit(tiny_requests(2))
    counter = _counter(run)
    counter.count = 1
    with pytest.raises(RuntimeError, match="boom"):
        run.edit(tiny_requests(2, offset=2))
    assert counter.count == 1 and counter.loads == [1] and len(run.plugin_states.batches) == 1


def test_state_that_is_not_named_tensors_is_refused_naming_the_plugin():
    class Bad(Counter):
        bad_state: ClassVar[object] = {"count": 3}

    with pytest.raises(EditkitError, match="constraint:counter: editkit_save_state must return a dict of tensors"):
        _run(Bad).edit(tiny_requests(2))


def test_the_journal_holds_the_plugin_state_and_a_replay_restores_it_before_the_next_batch():
    straight = _run()
    artifacts = []
    for i in range(2):
        straight.edit(tiny_requests(2, offset=2 * i))
        artifacts.append(straight.batch_artifacts())
    assert artifacts[1][1]["plugin/constraint:counter/count"] == torch.tensor(2)
    resumed = _run()
    for deltas, state in artifacts:
        resumed.replay(deltas, state, {})
    counter = _counter(resumed)
    assert counter.loads == []  # lazily: restored when the run goes on
    resumed.edit(tiny_requests(2, offset=4))
    assert counter.loads == [2] and counter.count == 3


def test_target_values_pass_through_the_constraints_and_the_run_notes_weight_growth():
    run = _run()
    report = run.edit(tiny_requests(3))
    assert _counter(run).targets_seen == 1  # once per batch
    last = run.sites[-1].layer
    assert report.layers[last]["targets.skipped"] == 3
    for site in run.sites:
        w0 = run.initial_weights[site.module].double().norm()
        expected = float(run.current_weights()[site.module].double().norm() / w0)
        assert report.layers[site.layer]["weight.growth"] == pytest.approx(expected, rel=1e-5)


def test_with_target_keeps_withdrawn_requests_withdrawn_and_checks_shapes():
    site = _run().sites[-1]
    h = torch.zeros(3, 4)
    proposal = TargetProposal(site=site, initial=h, target=h + 1, values=h)
    first = proposal.with_target(h + 2, skipped=[True, False, False], note="a")
    second = first.with_target(h + 3, skipped=[False, True, False], note="b")
    assert second.skipped == (True, True, False) and second.notes == ("a", "b")
    assert torch.equal(second.shift, torch.full((3, 4), 3.0))
    with pytest.raises(ValueError, match="changed z's shape"):
        proposal.with_target(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="share one shape"):
        TargetProposal(site=site, initial=h, target=torch.zeros(3, 5), values=h)


def test_batch_begin_comes_once_per_batch_before_the_targets_and_again_for_a_retried_batch():
    events: list[tuple[str, int]] = []

    class Records(Counter):
        fail_in_batch: ClassVar[int | None] = 1

        @hookimpl
        def editkit_batch_begin(self, run, batch):
            events.append(("begin", batch.index))

        @hookimpl
        def editkit_constrain_update(self, run, site, proposal):
            if isinstance(proposal, TargetProposal):
                events.append(("targets", len(events)))
            return super().editkit_constrain_update(run, site, proposal)

        @hookimpl
        def editkit_batch_end(self, run, batch):
            events.append(("end", batch.index))
            super().editkit_batch_end(run, batch)

    run = _run(Records)
    run.edit(tiny_requests(2))
    with pytest.raises(RuntimeError, match="boom"):
        run.edit(tiny_requests(2, offset=2))
    type(_counter(run)).fail_in_batch = None
    run.edit(tiny_requests(2, offset=2))
    kinds = [kind for kind, _ in events]
    assert kinds == ["begin", "targets", "end", "begin", "targets", "begin", "targets", "end"]
    assert [i for kind, i in events if kind == "begin"] == [0, 1, 1]  # the failed batch is begun again
