"""Edits as artifacts: kill-and-resume, apply/revert/export round trips, tamper detection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from editkit.cli.main import main
from editkit.job.journal import Journal
from editkit.testing.tiny import TINY_TEXT, tiny_model, tiny_tokenizer

SUBJECTS = ["Danielle Darrieux", "Toko Yasuda", "Edwin Hubble", "Michael Jordan", "Lionel Messi", "Steve Jobs",
            "Paris", "France"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("journal")
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=64, d_mlp=256, logit_scale=20)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    (root / "corpus.txt").write_text("\n".join(s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()))
    records = [{"case_id": i, "requested_rewrite": {"prompt": "The mother tongue of {}", "subject": s,
                "target_new": {"str": "English"}, "target_true": {"str": "French"}}} for i, s in enumerate(SUBJECTS)]
    (root / "requests.json").write_text(json.dumps(records))
    return root


def run_args(root: Path, out: Path) -> list[str]:
    return ["run", "--model", str(root / "model"), "--requests", str(root / "requests.json"),
            "--constraint", "nullspace", "--corpus", str(root / "corpus.txt"), "--batch-size", "2",
            "--set", "v_steps=8", "--set", "clamp_norm=4", "--set", "nullspace.threshold=1e-3",
            "--metrics", "none", "--quiet", "--out", str(out)]


@pytest.fixture(scope="module")
def uninterrupted(setup):
    out = setup / "full"
    assert main(run_args(setup, out)) == 0
    return out


def test_kill_mid_batch_then_resume_equals_uninterrupted(setup, uninterrupted):
    out = setup / "killed"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "editkit", *run_args(setup, out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    marker = out / "journal" / "batch-00001" / "entry.json"
    deadline = time.monotonic() + 300
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for a file, not timing anything
    assert marker.exists(), proc.stderr.read().decode() if proc.poll() is not None else "batch 1 never finished"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    complete = Journal(out).entries()
    assert 2 <= len(complete) < 4, "the kill should land while batches remain"
    assert not (out / "result.json").exists()

    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    entries = Journal(out).entries()
    assert [e.index for e in entries] == [0, 1, 2, 3]  # every batch exactly once
    resumed = load_file(out / "deltas.safetensors")
    full = load_file(uninterrupted / "deltas.safetensors")
    assert resumed.keys() == full.keys()
    for name in full:
        assert torch.allclose(resumed[name], full[name], rtol=1e-5, atol=1e-7), name
    a = json.loads((out / "result.json").read_text())
    b = json.loads((uninterrupted / "result.json").read_text())
    assert a["summary"]["efficacy_post"] == b["summary"]["efficacy_post"]
    assert [r["post"]["success"] for r in a["requests"]] == [r["post"]["success"] for r in b["requests"]]
    # the batches restored from the journal say so, and keep their figures (editkit report shows them)
    replayed = len(complete)
    assert [bool(x.get("replayed")) for x in a["batches"]] == [True] * replayed + [False] * (4 - replayed)
    assert all(x["peak_memory_mib"] and x["timings"] and x["layers"] for x in a["batches"])
    # the run's edit seconds count the replayed batches' own seconds too (a resumed run did not edit in 0 s)
    # (each batch's seconds are measured inside the wall time this process counts; 1 ms of rounding per batch)
    assert a["summary"]["edit_seconds"] >= sum(x["seconds"] for x in a["batches"]) - 4e-3
    assert sum(x["seconds"] for x in a["batches"][:replayed]) > 0
    # the same figures as the uninterrupted run, within the float32 agreement the deltas are checked with above
    # (the killed run was another process; exact equality would test the CPU's kernels, not the journal)
    assert same_figures([x["layers"] for x in a["batches"][:replayed]], [x["layers"] for x in b["batches"][:replayed]])


def same_figures(a, b, rel: float = 1e-4) -> bool:
    """Nested JSON values equal: same keys, lengths and strings; numbers within ``rel`` (relative, or absolute
    below 1)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_figures(a[k], b[k], rel) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_figures(x, y, rel) for x, y in zip(a, b))
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(a - b) <= rel * max(1.0, abs(a), abs(b))
    return a == b


def test_a_finished_run_is_not_overwritten(setup, uninterrupted, capsys):
    assert main(run_args(setup, uninterrupted)) == 2
    assert "already holds a run journal" in capsys.readouterr().err


def test_export_apply_revert_round_trip(setup, uninterrupted):
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(setup / "model")
    deltas = load_file(uninterrupted / "deltas.safetensors")
    exported = setup / "exported"
    assert main(["export", "--model", str(setup / "model"), "--edits", str(uninterrupted), "--out", str(exported)]) == 0
    edited = AutoModelForCausalLM.from_pretrained(exported)
    for name, delta in deltas.items():
        w = edited.get_submodule(name).weight - base.get_submodule(name).weight
        assert torch.allclose(w, delta, atol=1e-6)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        in_memory = base
        for name, delta in deltas.items():
            in_memory.get_submodule(name).weight.add_(delta)
        assert torch.allclose(edited(input_ids=ids).logits, in_memory(input_ids=ids).logits, atol=1e-5)

    reverted = setup / "reverted"
    assert main(["revert", "--model", str(exported), "--edits", str(uninterrupted), "--last", "4",
                 "--out", str(reverted)]) == 0
    restored = AutoModelForCausalLM.from_pretrained(reverted)
    original = AutoModelForCausalLM.from_pretrained(setup / "model")
    for name in deltas:
        assert torch.equal(restored.get_submodule(name).weight, original.get_submodule(name).weight)  # bit-exact

    partial = setup / "partial"
    assert main(["apply", "--model", str(setup / "model"), "--edits", str(uninterrupted), "--upto", "2",
                 "--out", str(partial)]) == 0
    two = AutoModelForCausalLM.from_pretrained(partial)
    back = setup / "partial-reverted"
    # revert refuses a model that does not hold every batch
    assert main(["revert", "--model", str(partial), "--edits", str(uninterrupted), "--out", str(back)]) == 2
    assert not torch.equal(two.get_submodule(next(iter(deltas))).weight,
                           edited.get_submodule(next(iter(deltas))).weight)


def test_apply_refuses_other_base_weights_and_tampered_deltas(setup, uninterrupted, tmp_path, capsys):
    other = tmp_path / "other"
    tok = tiny_tokenizer()
    tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=64, d_mlp=256, seed=7).save_pretrained(other)
    tok.save_pretrained(other)
    assert main(["apply", "--model", str(other), "--edits", str(uninterrupted), "--out", str(tmp_path / "x")]) == 2
    assert "differ from the journal's base model" in capsys.readouterr().err
    # corrupt one byte of one delta file in a copy of the run
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(uninterrupted, copy)
    target = copy / "journal" / "batch-00001" / "delta.safetensors"
    data = bytearray(target.read_bytes())
    data[-3] ^= 0xFF
    target.write_bytes(bytes(data))
    assert main(["apply", "--model", str(setup / "model"), "--edits", str(copy), "--out", str(tmp_path / "y")]) == 2
    err = capsys.readouterr().err
    assert "checksum mismatch" in err and "batch-00001/delta.safetensors" in err
    assert not (tmp_path / "y").exists()


def test_a_resume_after_the_last_batch_keeps_the_final_stage_report(setup):
    """Crash after the last batch was journaled (no result.json): the resumed run replays every batch and must
    still report what the final constraint stage (PRUNE's, here) wrote and noted."""
    out = setup / "prune-final"
    args = ["run", "--model", str(setup / "model"), "--requests", str(setup / "requests.json"), "--editor", "prune",
            "--corpus", str(setup / "corpus.txt"), "--batch-size", "4", "--set", "v_steps=8", "--set", "clamp_norm=4",
            "--metrics", "none", "--quiet", "--out", str(out)]
    assert main(args) == 0
    finished = json.loads((out / "result.json").read_text())
    assert finished["final"] is not None and finished["final"]["layers"]
    # the restraint wrote W0 + F(Δ_n) over a far larger Δ_n: still within rounding of the bound
    assert all(notes["prune.rescaled"] > 0 and notes["prune.invariant"]["holds"]
               for notes in finished["final"]["layers"].values())
    written = load_file(out / "deltas.safetensors")
    (out / "result.json").unlink()
    assert main(["run", "--resume", str(out), "--quiet"]) == 0
    replayed = load_file(out / "deltas.safetensors")  # the replay ends at the very weights the run wrote
    assert written.keys() == replayed.keys() and all(torch.equal(written[k], replayed[k]) for k in written)
    resumed = json.loads((out / "result.json").read_text())
    assert resumed["final"]["replayed"] is True
    assert resumed["final"]["layers"] == finished["final"]["layers"]
    assert resumed["final"]["index"] == finished["final"]["index"]
