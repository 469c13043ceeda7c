"""End to end through ``editkit run``: the rect and prune editors with the null-space constraint on a
saved tiny GPT-2, and RECT then the null space's ``joint`` mode (both invariants); the invariants
result.json reports are recomputed from deltas.safetensors."""

from __future__ import annotations

import json
import warnings

import editkit_prune
import editkit_rect
import pytest
import torch
from editkit_nullspace.projector import null_space

from editkit.cli.main import main
from editkit.plugins import PluginHost
from editkit.run import ConstraintWarning
from editkit.testing.tiny import TINY_TEXT, tiny_model, tiny_tokenizer

MODULE = "transformer.h.1.mlp.c_proj"  # the default layer of a 4-layer model; Conv1D stores Wᵀ [256, 64]
OURS = (("rect", editkit_rect), ("prune", editkit_prune))


@pytest.fixture(autouse=True)
def installed(monkeypatch):
    """Until the entry points are installed, let every PluginHost find rect and prune (no-op after)."""
    original = PluginHost._load_entry_points

    def load(self):
        original(self)
        for name, module in OURS:
            if name not in self.blocked and self.pm.get_plugin(name) is None and not self.pm.is_registered(module):
                self.pm.register(module, name=name)

    monkeypatch.setattr(PluginHost, "_load_entry_points", load)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp("prune_rect")
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=64, d_mlp=256, logit_scale=20)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "corpus.txt").write_text("\n".join(s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()))
    subjects = ["Danielle Darrieux", "Toko Yasuda", "Edwin Hubble", "Michael Jordan"]
    records = [{"case_id": i, "requested_rewrite": {"prompt": "The mother tongue of {}", "subject": s,
                "target_new": {"str": "English"}, "target_true": {"str": "French"}}} for i, s in enumerate(subjects)]
    (root / "requests.json").write_text(json.dumps(records))
    return root


def edit(saved, out, method_args, batch_size):
    argv = ["run", "--model", str(saved / "model"), "--requests", str(saved / "requests.json"),
            "--corpus", str(saved / "corpus.txt"), "--stats-dir", str(saved / "stats"), "--quiet",
            "--metrics", "none", "--batch-size", str(batch_size), "--constrain-mode", "posthoc",
            "--set", "v_steps=10", "--set", "clamp_norm=4", "--set", "nullspace.threshold=1e-3",
            "--out", str(out), *method_args]
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        code = main(argv)
    assert code == 0
    from safetensors.torch import load_file

    result = json.loads((out / "result.json").read_text())
    delta = load_file(out / "deltas.safetensors")[MODULE].T.double()  # math layout [64, 256]
    messages = [str(w.message) for w in record if issubclass(w.category, ConstraintWarning)]
    return result, delta, messages


def null_space_defect(saved, delta):
    from editkit.keystats import CorpusSpec, KeyStatistics
    from editkit.layout import resolve_layout
    from editkit.modelsource.resolve import load_model

    model, tok = load_model(str(saved / "model"))
    layout = resolve_layout(model, PluginHost().catalog.entries["architectures"])
    stats = KeyStatistics(model=model, tokenizer=tok, layout=layout, corpus=CorpusSpec.parse(str(saved / "corpus.txt")),
                          stats_dir=saved / "stats", max_tokens=200_000, model_id=str(saved / "model"))
    evals, evecs = stats.eigendecomposition(layout.site(1))
    sub = null_space(evals, evecs, 1e-3, False)
    return float((delta - sub.project_rows(delta)).norm() / delta.norm())


def method(form, name):
    if form == "editor":
        return ["--editor", name, "--constraint", "nullspace"]
    return ["--editor", "memit", "--constraint", "nullspace", "--constraint", name]  # the same constraint order


@pytest.mark.parametrize("form", ["editor", "constraints"])
def test_rect_with_nullspace_reports_what_the_deltas_show(saved, tmp_path, form):
    result, delta, messages = edit(saved, tmp_path / "out", method(form, "rect"), batch_size=4)  # one batch
    assert result["run"]["constraints"] == ["nullspace", "rect"]
    layer = result["batches"][0]["layers"]["1"]
    rect, ns = layer["rect.invariant"], layer["nullspace.invariant"]
    changed = float((delta != 0).double().mean())
    assert rect["holds"] and rect["value"] == pytest.approx(changed, abs=1e-12)
    assert 0 < changed <= rect["bound"] and rect["bound"] == pytest.approx(0.4, abs=0.01)
    # null space then RECT: ΔP ≠ Δ, measured, reported and warned about (a mask does not commute with P)
    assert not ns["holds"] and ns["value"] == pytest.approx(null_space_defect(saved, delta), rel=1e-4)
    assert len(messages) == 1 and "'nullspace'" in messages[0] and "rect" in messages[0]
    assert "--constraint rect --constraint nullspace --set nullspace.mode=joint" in messages[0]  # the way out


@pytest.mark.parametrize("form", ["editor", "constraints"])
def test_prune_with_nullspace_reports_what_the_deltas_show(saved, tmp_path, form):
    args = [*method(form, "prune"), "--set", "prune.mode=every_batch"]
    result, delta, messages = edit(saved, tmp_path / "out", args, batch_size=2)  # two batches
    assert result["run"]["constraints"] == ["nullspace", "prune"] and messages == []
    batches = [b["layers"]["1"] for b in result["batches"]]
    assert all(b["prune.invariant"]["holds"] and b["nullspace.invariant"]["holds"] for b in batches)
    assert all(b["prune.rescaled"] > 0 for b in batches)
    last = batches[-1]["prune.invariant"]  # measured on W_n − W0: what deltas.safetensors holds
    assert last["value"] == pytest.approx(float(torch.linalg.matrix_norm(delta, ord=2)), rel=1e-5)
    assert last["value"] <= last["bound"] + last["tolerance"]
    assert null_space_defect(saved, delta) < 1e-5  # the accumulated, pruned update is still in the null space


def test_prune_final_mode_writes_a_null_space_update(saved, tmp_path):
    """Default mode: PRUNE acts in run.finish(), after the last measured batch (no prune invariant yet)."""
    result, delta, messages = edit(saved, tmp_path / "out", method("constraints", "prune"), batch_size=2)
    assert messages == [] and all("prune.invariant" not in b["layers"]["1"] for b in result["batches"])
    assert null_space_defect(saved, delta) < 1e-5


@pytest.mark.parametrize("editor", ["memit", "rect"])
def test_rect_then_joint_projection_holds_both_invariants(saved, tmp_path, editor):
    """``--constraint rect --constraint nullspace --set nullspace.mode=joint``: the written update keeps
    RECT's zeros and ΔP = Δ (recomputed from deltas.safetensors with an independent P); no warning."""
    args = ["--editor", editor, "--constraint", "rect", "--constraint", "nullspace", "--set", "nullspace.mode=joint"]
    result, delta, messages = edit(saved, tmp_path / "out", args, batch_size=4)  # one batch
    assert result["run"]["constraints"] == ["rect", "nullspace"] and messages == []
    layer = result["batches"][0]["layers"]["1"]
    rect, ns = layer["rect.invariant"], layer["nullspace.invariant"]
    assert rect["holds"] and ns["holds"]
    assert float((delta != 0).double().mean()) <= rect["bound"] and rect["bound"] == pytest.approx(0.4, abs=0.01)
    assert float(delta.norm()) > 0 and null_space_defect(saved, delta) < 1e-5
    assert 0 < layer["nullspace.joint_kept_norm"] < 1
