"""The third-party package plugins/editkit-normclamp, installed: discovered through its entry point,
listed with its distribution, and usable from the command line together with the null-space constraint.

Needs ``pip install --no-deps -e plugins/editkit-normclamp`` (skipped, saying so, when it is not installed).
"""

from __future__ import annotations

import importlib.metadata as md
import json

import pytest

from editkit.cli.main import main
from editkit.testing.tiny import TINY_DIMS, tiny_model, tiny_texts, tiny_tokenizer

try:
    DIST = md.distribution("editkit-normclamp")
except md.PackageNotFoundError:  # pragma: no cover - depends on the environment
    DIST = None

pytestmark = pytest.mark.skipif(
    DIST is None, reason="editkit-normclamp is not installed: pip install --no-deps -e plugins/editkit-normclamp"
)


def test_editkit_plugins_lists_it_with_its_distribution_and_version(capsys):
    assert main(["plugins", "--json"]) == 0
    by_name = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    info = by_name["normclamp"]
    assert (info["distribution"], info["version"]) == ("editkit-normclamp", "0.1.0")
    assert info["module"] == "editkit_normclamp"
    assert info["provides"] == {"constraints": ["normclamp"]}
    assert main(["plugins"]) == 0
    assert "normclamp  [editkit-normclamp 0.1.0]  module editkit_normclamp" in capsys.readouterr().out


def test_run_with_normclamp_then_nullspace(tmp_path, capsys):
    from safetensors.torch import load_file

    model_dir = tmp_path / "model"
    tok = tiny_tokenizer()
    tiny_model("gpt2", vocab_size=len(tok), logit_scale=20.0, **TINY_DIMS).save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(tiny_texts()))
    subjects = ["Danielle Darrieux", "Toko Yasuda", "Edwin Hubble", "Michael Jordan"]
    records = [{"case_id": i, "requested_rewrite": {"prompt": "The mother tongue of {}", "subject": s,
                "target_new": {"str": "English"}, "target_true": {"str": "French"}}} for i, s in enumerate(subjects)]
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps(records))
    out = tmp_path / "out"
    ratio = 0.05
    code = main(["run", "--model", str(model_dir), "--requests", str(requests), "--corpus", str(corpus),
                 "--editor", "memit", "--constraint", "normclamp", "--constraint", "nullspace",
                 "--layers", "1,2", "--batch-size", "2", "--metrics", "none", "--quiet", "--out", str(out),
                 "--set", "v_steps=10", "--set", "clamp_norm=4", "--set", "mom2_weight=1",
                 "--set", f"normclamp.ratio={ratio}", "--set", "nullspace.threshold=0.1",
                 "--set", "nullspace.relative=true", "--set", "nullspace.l2=1e-3"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "does not hold" not in err
    result = json.loads((out / "result.json").read_text())
    assert result["run"]["constraints"] == ["normclamp", "nullspace"]
    for batch in result["batches"]:
        for notes in batch["layers"].values():
            assert notes["normclamp.invariant"]["holds"] and notes["normclamp.invariant"]["value"] <= ratio * 1.0001
            assert notes["nullspace.invariant"]["holds"]
            assert 0 < notes["normclamp.factor"] <= 1
    assert min(n["normclamp.factor"] for b in result["batches"] for n in b["layers"].values()) < 1  # clamp was active
    initial = load_file(model_dir / "model.safetensors")
    for module, delta in load_file(out / "deltas.safetensors").items():
        w0 = initial[f"{module}.weight"]
        assert 0 < float(delta.norm()) <= 2 * ratio * float(w0.norm()) * 1.01  # two batches, each ≤ ratio·‖W‖
