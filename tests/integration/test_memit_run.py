"""End to end on a tiny random GPT-2: MEMIT and MEMIT+nullspace edit, undo, and sequential Cp."""

from __future__ import annotations

import mmap
import sys

import pytest
import torch

from editkit import EditRequest, EditRun, RunConfig, hookimpl
from editkit.catalog import ConstraintSpec
from editkit.errors import NumericalError, UsageError
from editkit.job.pipeline import score_requests
from editkit.plugins import PluginHost
from editkit.testing.moments import MomentsFromText
from editkit.testing.tiny import TINY_TEXT, tiny_model, tiny_tokenizer
from editkit.updates import SolveProblem, TargetProposal

SUBJECTS = ["Danielle Darrieux", "Toko Yasuda", "Edwin Hubble", "Michael Jordan", "Lionel Messi", "Steve Jobs",
            "Paris", "France", "Apple", "Eiffel Tower"]
TARGETS = ["English", "German", "Italian", "Spanish", "Russian", "Japanese", "Chinese", "Dutch", "Swedish", "Polish"]
HPARAMS = {"v_steps": "25", "v_lr": "0.5", "clamp_norm": "4", "mom2_weight": "1"}


def make_requests(n: int, offset: int = 0) -> list[EditRequest]:
    # prompts end with the subject: in a random model only the subject position can carry the edit
    prompts = ["The mother tongue of {}", "Speaks: {}", "Born in a country that speaks, {}"]
    return [
        EditRequest(case_id=offset + i, subject=SUBJECTS[i % len(SUBJECTS)], prompt=prompts[(i // len(SUBJECTS)) % 3],
                    target_new=TARGETS[(i * 3 + 1) % len(TARGETS)], target_true=TARGETS[(i * 3 + 2) % len(TARGETS)])
        for i in range(n)
    ]


def make_run(constraints=(), overrides=HPARAMS, seed=0, undo_depth=None, **config):
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=64, d_mlp=256, seed=seed, logit_scale=20)
    texts = [s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()]
    cfg = RunConfig(constraints=constraints, overrides=overrides.items(), seed=seed, **config)
    stats = MomentsFromText(model=model, tokenizer=tok, texts=texts)
    return EditRun(model=model, tokenizer=tok, config=cfg, key_statistics=stats, undo_depth=undo_depth)


@pytest.mark.parametrize("constraints", [(), ("nullspace",)], ids=["memit", "alphaedit"])
def test_twenty_edits_raise_every_target_and_undo_exactly(constraints):
    run = make_run(constraints, overrides=HPARAMS | ({"nullspace.threshold": "1e-3"} if constraints else {}))
    requests = make_requests(20)
    before = score_requests(run.model, run.tokenizer, requests)
    weights = {k: v.clone() for k, v in run.initial_weights.items()}
    report = run.edit(requests)
    after = score_requests(run.model, run.tokenizer, requests)
    assert all(a.new_logprob > b.new_logprob for a, b in zip(after, before))
    changed = [not torch.equal(run.model.get_submodule(k).weight, w) for k, w in weights.items()]
    assert all(changed)
    last = report.layers[run.sites[-1].layer]  # how far v* got, recorded for the batch
    assert 0 <= last["vstar.share_below_0.7"] <= 1 and 1 <= last["vstar.mean_steps"] <= int(HPARAMS["v_steps"])
    assert last["vstar.median_final_loss"] >= 0
    if constraints:
        layer = report.layers[run.sites[0].layer]
        assert 0 < layer["nullspace.dim"] < run.sites[0].d_in
        assert layer["nullspace.invariant"]["holds"] and layer["nullspace.invariant"]["value"] < 1e-5
    run.undo_last()
    for name, w in weights.items():
        assert torch.equal(run.model.get_submodule(name).weight, w)  # bit-exact


class _ProblemSpy:
    """A constraint that records the problems it sees (registered in-process, like a third-party one)."""

    def __init__(self, hparams):
        self.seen = []

    @hookimpl
    def editkit_constrain_update(self, run, site, proposal):
        self.seen.append(proposal)


class _SpyPlugin:
    @hookimpl
    def editkit_register_constraints(self, register):
        import attrs

        @attrs.frozen
        class NoHParams:
            pass

        register(ConstraintSpec(name="spy", summary="records proposals", factory=_ProblemSpy, hparams=NoHParams,
                                invariant="none", linear=True))


def test_second_batch_uses_and_grows_cp():
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=64, d_mlp=256, logit_scale=20)
    texts = [s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()]
    host = PluginHost(plugins=[("spy", _SpyPlugin())])
    run = EditRun(model=model, tokenizer=tok, host=host,
                  config=RunConfig(constraints=("nullspace", "spy"), overrides=HPARAMS.items()),
                  key_statistics=MomentsFromText(model=model, tokenizer=tok, texts=texts))
    spy = run.constraints[1][1]
    run.edit(make_requests(5))
    site = run.sites[0]
    cp1 = run.past_keys[site.module].clone()
    problems = [p for p in spy.seen if isinstance(p, SolveProblem)]
    assert not any(isinstance(p, TargetProposal) for p in spy.seen)  # only for constraints that need targets
    assert problems[0].past is None  # first batch: no past keys yet
    run.edit(make_requests(5, offset=5))
    problems = [p for p in spy.seen if isinstance(p, SolveProblem)]
    assert problems[-1].past is not None and torch.equal(problems[-1].past, cp1)  # batch 2 sees Cp
    assert problems[-1].use_past and problems[-1].subspace is not None  # nullspace asked for it
    cp2 = run.past_keys[site.module]
    assert float(torch.trace(cp2)) > float(torch.trace(cp1)) > 0
    run.undo_last()
    assert torch.equal(run.past_keys[site.module], cp1)  # summed again from batch 1: bit for bit, not cp2 − K2K2ᵀ


def test_an_undo_depth_keeps_the_latest_batches_records_only():
    run = make_run(undo_depth=1)
    weights = {k: v.clone() for k, v in run.initial_weights.items()}
    run.edit(make_requests(3))
    after_first = {k: v.clone() for k, v in run.current_weights().items()}
    run.edit(make_requests(3, offset=3))
    assert len(run.undo_log) == 1 and len(run.reports) == 2  # the first batch's previous weights are gone
    with pytest.raises(UsageError, match=r"last 1 batch\(es\) only \(undo_depth\)"):
        run.undo_last(2)
    run.undo_last()
    assert all(torch.equal(w, after_first[k]) for k, w in run.current_weights().items())  # bit-exact, as ever
    assert not all(torch.equal(w, weights[k]) for k, w in run.current_weights().items())
    with pytest.raises(UsageError, match="undo_depth must be at least 1"):
        make_run(undo_depth=0)


def test_non_finite_targets_stop_before_any_weight_is_written():
    run = make_run()
    weights = {k: v.clone() for k, v in run.initial_weights.items()}
    nan_targets = type("T", (), {"z": torch.full((2, 64), float("nan")), "h_init": torch.zeros(2, 64)})()
    run.editor.optimised_targets = lambda run_, batch: nan_targets
    with pytest.raises(NumericalError, match="non-finite target values"):
        run.edit(make_requests(2))
    for name, w in weights.items():
        assert torch.equal(run.model.get_submodule(name).weight, w)


def test_an_edit_after_an_undo_computes_its_own_targets():
    """After undo, the next batch has the undone batch's index; its v* must still be its own."""
    others = [EditRequest(case_id=100 + i, subject=s, prompt="Speaks: {}", target_new=t)
              for i, (s, t) in enumerate([("Paris", "German"), ("France", "Dutch"), ("Apple", "Polish"),
                                          ("Steve Jobs", "Swedish")])]
    overrides = HPARAMS | {"v_steps": "6"}
    undone = make_run(overrides=overrides)
    undone.edit(make_requests(4))
    undone.edit(make_requests(4, offset=4))
    undone.undo_last()
    undone.edit(others)
    direct = make_run(overrides=overrides)
    direct.edit(make_requests(4))
    direct.edit(others)
    for module, weight in direct.current_weights().items():
        assert torch.equal(undone.current_weights()[module], weight), module


def test_a_batch_interrupted_while_cp_grows_is_undone_whole():
    run = make_run(("nullspace",), overrides=HPARAMS | {"nullspace.threshold": "1e-3"}, layers=(1, 2))
    run.edit(make_requests(3))
    weights = {k: v.clone() for k, v in run.current_weights().items()}
    past = {k: v.clone() for k, v in run.past_keys.items()}
    real_grow, grown, interrupts = run.ledger._grow, [], []

    def interrupted(module, k):  # one Ctrl-C, while the second layer's Cp is being grown
        if len(grown) == 1 and not interrupts:
            interrupts.append(module)
            raise KeyboardInterrupt
        grown.append(module)
        real_grow(module, k)

    run.ledger._grow = interrupted
    with pytest.raises(KeyboardInterrupt):
        run.edit(make_requests(3, offset=3))
    run.ledger._grow = real_grow
    assert grown  # the first layer's Cp had grown before the interrupt
    assert all(torch.equal(w, weights[k]) for k, w in run.current_weights().items())  # the batch's writes undone
    assert set(run.past_keys) == set(past) and all(torch.equal(run.past_keys[k], past[k]) for k in past)
    assert len(run.reports) == 1 and len(run.ledger.batches) == 1
    run.edit(make_requests(3, offset=3))  # the run goes on
    assert len(run.reports) == 2


def _resettable_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        return False
    return sys.platform.startswith("linux")


@pytest.mark.skipif(not _resettable_peak(), reason="per-stage peaks need Linux's resettable VmHWM")
def test_a_batch_measures_its_own_peaks_and_the_run_keeps_the_largest():
    run = make_run()
    with open("/proc/self/status") as fh:
        before = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))
    size = 256 * 2**20
    block = mmap.mmap(-1, size)  # 256 MiB resident before the batch, then returned
    for offset in range(0, size, mmap.PAGESIZE):
        block[offset] = 1
    block.close()
    report = run.edit(make_requests(2))
    assert {"batch_begin", "compute_targets", "solve", "commit_cp"} <= set(report.peak_memory)
    assert max(report.peak_memory.values()) < before + 128 * 2**20  # what came before is not the batch's
    assert run.peak_memory_so_far() >= before + 200 * 2**20  # but the run's peak keeps it


def test_at_batch_end_cp_is_still_the_earlier_batches_and_grows_right_after():
    run = make_run()
    seen: list[dict[str, torch.Tensor]] = []

    class BatchEnd:
        @hookimpl
        def editkit_batch_end(self, run, batch):
            seen.append(dict(run.past_keys))

    run.pm.register(BatchEnd())
    run.edit(make_requests(2))
    after_first = dict(run.past_keys)
    run.edit(make_requests(2, offset=2))
    assert seen[0] == {}  # no Cp yet while the first batch ends
    assert seen[1].keys() == after_first.keys() and all(torch.equal(seen[1][m], after_first[m]) for m in seen[1])
    assert not any(torch.equal(run.past_keys[m], after_first[m]) for m in after_first)  # grown after the hook
