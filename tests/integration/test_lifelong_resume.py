"""The lifelong stabilisers through `editkit run`: their state across batches survives a resume from the journal
(bit-exact deltas), NAS's reference norm is stored beside the key statistics and reused only for the same
identity, and combinations that mean nothing are refused before any work (exit 2)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from cli_harness import tiny_setup
from safetensors.torch import load_file

from editkit.cli.main import main


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("lifelong")
    tiny_setup(root, family="llama", requests=8)
    return root


def run_args(root: Path, out: Path, *method: str) -> list[str]:
    return ["run", "--model", str(root / "model"), "--requests", str(root / "requests.json"),
            "--corpus", str(root / "corpus.txt"), "--batch-size", "2", "--layers", "1,2",
            "--set", "v_steps=8", "--set", "clamp_norm=4", "--set", "mom2_weight=1",
            "--metrics", "none", "--quiet", "--out", str(out), *method]


METHODS = {
    "lyaplock+nas": ["--editor", "lyaplock", "--constraint", "nas", "--set", "nas.anchor_samples=4"],
    "betaedit": ["--editor", "betaedit", "--set", "betaedit.refresh_every=4", "--set", "betaedit.threshold=1e-4",
                 "--set", "betaedit.lambda1=0.1"],  # P: 164 of 256 dimensions, 247 after the refresh
    "encore+nullspace": ["--editor", "encore", "--constraint", "nullspace", "--set", "nullspace.threshold=1e-3"],
}


@pytest.mark.parametrize("name", sorted(METHODS))
def test_a_journal_cut_after_two_batches_resumes_to_the_same_deltas(setup, tmp_path, name):
    method = list(METHODS[name])
    if "nas" in name:
        method += ["--set", f"nas.anchor_data={setup / 'requests.json'}"]
    full = tmp_path / "full"
    assert main(run_args(setup, full, *method)) == 0
    for kept in (2, 3):  # betaedit refreshes P before batch 2: a resume after it rebuilds P from the journal
        cut = tmp_path / f"cut-{kept}"
        shutil.copytree(full / "journal", cut / "journal")
        for later in range(kept, 4):
            shutil.rmtree(cut / "journal" / f"batch-{later:05d}")
        assert main(["run", "--resume", str(cut), "--quiet"]) == 0
        a, b = load_file(full / "deltas.safetensors"), load_file(cut / "deltas.safetensors")
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), (kept, key)  # bit-exact: the plugins' state came back
        last = _notes(json.loads((cut / "result.json").read_text())["batches"][-1]["layers"])
        assert last == _notes(json.loads((full / "result.json").read_text())["batches"][-1]["layers"])


def _notes(layers: dict) -> dict:
    """A batch's layer notes, without the null space's spectrum (noted in the first batch a process edits)."""
    return {layer: {k: v for k, v in notes.items() if k != "nullspace.spectrum"} for layer, notes in layers.items()}


def test_nas_stores_its_reference_norm_beside_the_key_statistics_and_reuses_it_for_the_same_identity(
        setup, tmp_path, monkeypatch):
    store = tmp_path / "store"
    monkeypatch.setenv("EDITKIT_STATS_DIR", str(store))
    method = ["--constraint", "nas", "--set", f"nas.anchor_data={setup / 'requests.json'}",
              "--set", "nas.anchor_samples=4", "--num-edits", "2"]

    def source(out: Path) -> str:
        result = json.loads((out / "result.json").read_text())
        return result["batches"][0]["layers"]["2"]["nas.reference_source"]

    assert main(run_args(setup, tmp_path / "a", *method)) == 0
    assert source(tmp_path / "a").startswith("measured over 4 rewrites, stored")
    stored = list((store / "nas").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["identity"]["anchor_samples"] == 4
    assert main(run_args(setup, tmp_path / "b", *method)) == 0
    assert source(tmp_path / "b") == f"stored {stored[0]}"
    # another sample is another identity: measured again, stored beside the first
    assert main(run_args(setup, tmp_path / "c", *method, "--set", "nas.seed=1")) == 0
    assert source(tmp_path / "c").startswith("measured")
    assert len(list((store / "nas").glob("*.json"))) == 2


@pytest.mark.parametrize(("method", "message"), [
    (["--editor", "ft", "--constraint", "nas"], "constraint 'nas' acts on the target values of each edit, and "
                                                  "editor 'ft' computes none"),
    (["--editor", "betaedit", "--constraint", "nullspace"], "'betaedit' and 'nullspace' cannot run together: "
                                                               "BetaEdit restricts the solve"),
    (["--editor", "memit", "--constraint", "nullspace", "--constraint", "betaedit"], "cannot run together"),
    (["--editor", "lyaplock", "--constraint", "nullspace"], "'lyaplock' and 'nullspace' cannot run together"),
])
def test_a_combination_that_means_nothing_exits_2_before_any_work(setup, tmp_path, capsys, method, message):
    out = tmp_path / "refused"
    assert main(run_args(setup, out, *method)) == 2
    assert message in capsys.readouterr().err
    assert not (out / "journal").exists()
