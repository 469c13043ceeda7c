"""The memory formula (editkit.memory.run_memory) against what a run really holds.

After one batch of MEMIT and of MEMIT + the null-space constraint on a tiny GPT-2 with key statistics from a store,
every term the formula says is held at the batch's end (C0 sums, W0 + undo, one layer's float64 d² matrix, the
null-space bases, Cp, the batch's keys) equals the bytes of the tensors the run's objects hold, counted one by one;
and no layer but the last keeps a float64 d² matrix (one layer's at a time). Solved updates are dropped once
written when the constraints act inline, and kept for the batch when they act post hoc, as the formula's
``posthoc`` says. The peak the formula predicts from those terms is checked against the process's real peak by
benchmarks/bench_memory.py, on a model large enough for the terms to dominate.
"""

from __future__ import annotations

import gc
import weakref

import pytest

from editkit import EditRequest, EditRun, RunConfig, hookimpl
from editkit.keystats import CorpusSpec, KeyStatistics
from editkit.layout import resolve_layout
from editkit.memory import SiteShape, run_memory
from editkit.testing.tiny import TINY_TEXT, tiny_model, tiny_tokenizer

HPARAMS = {"v_steps": "3", "v_lr": "0.5", "clamp_norm": "4", "mom2_weight": "1"}


def requests(n: int) -> list[EditRequest]:
    subjects = ["Danielle Darrieux", "Paris", "Toko Yasuda", "Autonomous University of Madrid", "Apple A5"]
    return [EditRequest(case_id=i, subject=subjects[i % 5], prompt="The mother tongue of {}", target_new="English",
                        target_true="French") for i in range(n)]


def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def tiny_run(tmp_path, constraints, **config) -> tuple[EditRun, KeyStatistics]:
    """A tiny GPT-2 edited at layers 1-3 with key statistics from a store."""
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=32, d_mlp=128, seed=0, logit_scale=20)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()) * 4)
    stats = KeyStatistics(model=model, tokenizer=tok, layout=resolve_layout(model),
                          corpus=CorpusSpec.parse(str(corpus)), stats_dir=tmp_path / "stats", max_length=24,
                          model_id="tiny")
    run = EditRun(model=model, tokenizer=tok, key_statistics=stats, undo_depth=1,
                  config=RunConfig(constraints=constraints, layers=(1, 2, 3), **config, overrides=(
                      HPARAMS | ({"nullspace.threshold": "1e-3"} if constraints else {})).items()))
    return run, stats


@pytest.mark.parametrize("constraints", [(), ("nullspace",)], ids=["memit", "alphaedit"])
def test_the_terms_held_at_a_batch_end_are_the_bytes_the_run_holds(constraints, tmp_path):
    run, stats = tiny_run(tmp_path, constraints)
    model = run.model
    edits = 6
    run.edit(requests(edits))
    modules = [s.module for s in run.sites]

    subspaces = run.constraints[0][1].subspaces if constraints else {}
    shapes = [SiteShape(d_in=s.d_in, d_out=s.d_out,
                        null=(subspaces[s.module].dim if constraints else None)) for s in run.sites]
    assert all(0 < s.basis < s.d_in for s in shapes) or not constraints
    element = run.initial_weights[modules[0]].element_size()
    held = run_memory(weights=nbytes(model.parameters()), weight_element=element, sites=shapes, edits=edits,
                      background=not constraints).held

    undo = [record.previous for batch in run.undo_log for record in batch]
    assert held["W0 + undo"] == nbytes(run.initial_weights.values()) + nbytes(undo)
    assert held["C0 sums"] == nbytes(stats.stored(s).total for s in run.sites)
    assert held["Cp"] == nbytes(run.ledger.past[m] for m in modules)
    assert held["keys"] == nbytes(run.ledger.batches[-1][m] for m in modules)
    assert held["weights"] == nbytes(model.parameters())
    squares = [t for t in (stats._moment[1] if stats._moment else None,
                           *(vectors for _, vectors in stats._eigh.values())) if t is not None]
    assert held["one layer's d² (float64)"] == nbytes(squares)  # the last layer's only
    if constraints:
        kept = [sub.basis for sub in subspaces.values()]
        assert held["null-space bases"] == nbytes(kept)
        assert held["eigenvalues"] == nbytes(values for values, _ in
                                             (stats.eigendecomposition(s) for s in run.sites))
        assert list(stats._eigh) == [modules[-1]]  # after reading every layer's eigenvalues, one layer's vectors
    else:
        assert stats._moment is not None and stats._moment[0] == modules[-1]


class SolvedWatch:
    """At each layer's solve, how many earlier layers' solved updates are still alive (weak references)."""

    def __init__(self) -> None:
        self.refs: list[weakref.ref] = []
        self.alive: list[int] = []

    @hookimpl(wrapper=True)
    def editkit_solve(self, run, batch, site, problem):
        gc.collect()
        self.alive.append(sum(ref() is not None for ref in self.refs))
        delta = yield
        self.refs.append(weakref.ref(delta))
        return delta


@pytest.mark.parametrize("mode", ["inline", "posthoc"])
def test_solved_updates_are_dropped_once_written_unless_the_constraints_act_post_hoc(mode, tmp_path):
    run, _ = tiny_run(tmp_path, ("nullspace",), constrain_mode=mode)
    watch = SolvedWatch()
    run.pm.register(watch)
    run.edit(requests(4))
    assert len(watch.alive) == 3
    assert watch.alive == ([0, 0, 0] if mode == "inline" else [0, 1, 2])
    shapes = [SiteShape(d_in=s.d_in, d_out=s.d_out, null=run.constraints[0][1].subspaces[s.module].dim)
              for s in run.sites]
    held = run_memory(weights=1, weight_element=4, sites=shapes, edits=4, background=False,
                      posthoc=mode == "posthoc").held["solved updates (float64)"]
    assert held == (sum(s.d_in * s.d_out * 8 for s in shapes) if mode == "posthoc" else 0)
