"""Sharing key statistics: ``editkit stats export`` writes stored C0 and eigenbases as one portable file,
``editkit stats import`` adds it to another store after checking the model, and a run then reuses it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from editkit.keystats import CorpusSpec, KeyStatistics
from editkit.keystats.store import StatsStore
from editkit.layout import resolve_layout

try:  # rootdir-style test modules (no __init__.py): the sibling module is importable by name
    from test_keystats import build_tiny_model, load, synthetic_texts, write_jsonl
    from test_stats_cli import env
except ImportError:  # pragma: no cover - if tests/ become packages
    from .test_keystats import build_tiny_model, load, synthetic_texts, write_jsonl
    from .test_stats_cli import env


def editkit(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "editkit", *args], env=env(), capture_output=True, text=True,
                          timeout=300)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny model, its statistics at layers 1-2 collected into store A, and their bundle."""
    root = tmp_path_factory.mktemp("bundle")
    model_dir = build_tiny_model(root / "model")
    corpus = write_jsonl(root / "corpus.jsonl", synthetic_texts(60, seed=3))
    store_a = root / "store-a"
    collected = editkit("stats", "--model", str(model_dir), "--layers", "1-2", "--corpus", str(corpus),
                        "--stats-dir", str(store_a), "--max-length", "16", "--max-tokens", "2000", "--show",
                        "--no-progress")
    assert collected.returncode == 0, collected.stderr
    bundle = root / "c0.safetensors"
    out = editkit("stats", "export", "--model", str(model_dir), "--layers", "1-2", "--stats-dir", str(store_a),
                  "--out", str(bundle), "--json")
    assert out.returncode == 0, out.stderr
    assert sorted(r["layer"] for r in json.loads(out.stdout)) == [1, 2]
    return {"root": root, "model": model_dir, "corpus": corpus, "store": store_a, "bundle": bundle}


def _tensors(store: Path) -> dict[tuple[int, str], torch.Tensor]:
    s = StatsStore(root=store)
    out = {}
    for path in s.entries():
        stored = s.read(path)
        assert stored is not None
        out[(stored.identity["layer"], "total")] = stored.total
        _values, vectors = s.load_eigh(stored)  # type: ignore[misc]
        out[(stored.identity["layer"], "eigenvectors")] = vectors
    return out


def test_round_trip_to_a_copy_of_the_model_elsewhere_is_reused_by_a_run(exported, tmp_path):
    copy = shutil.copytree(exported["model"], tmp_path / "elsewhere" / "same-model")  # another path: same weights
    store_b = tmp_path / "store-b"
    result = editkit("stats", "import", str(exported["bundle"]), "--model", str(copy), "--stats-dir", str(store_b))
    assert result.returncode == 0, result.stderr
    assert "imported layer 1" in result.stderr and "imported layer 2" in result.stderr
    before, after = _tensors(exported["store"]), _tensors(store_b)
    assert before.keys() == after.keys() and len(before) == 4
    for key in before:
        assert torch.equal(before[key], after[key]), key  # bit for bit, eigenbasis included

    said: list[str] = []
    model, tokenizer = load(copy)
    layout = resolve_layout(model)
    stats = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout,
                          corpus=CorpusSpec.parse(str(exported["corpus"])), model_id=str(copy), stats_dir=store_b,
                          max_length=16, max_tokens=2000, report=said.append, progress=False)
    sites = [layout.site(1), layout.site(2)]
    stats.prepare(sites)
    assert stats.last_collection is None  # nothing collected
    assert any("reused" in line and "imported with `editkit stats import`" in line for line in said), said
    assert torch.equal(stats.stored(sites[0]).total, before[(1, "total")])


def test_a_bundle_for_another_model_is_refused_and_nothing_is_written(exported, tmp_path):
    other = build_tiny_model(tmp_path / "other", seed=1)  # same shape and tokenizer, other weights
    store_b = tmp_path / "store-b"
    result = editkit("stats", "import", str(exported["bundle"]), "--model", str(other), "--stats-dir", str(store_b))
    assert result.returncode == 2
    assert "exported for another model" in result.stderr and "model weights" in result.stderr
    assert "Nothing was imported" in result.stderr
    assert not store_b.exists() or not any(store_b.rglob("*.safetensors"))


def test_a_bundle_whose_token_count_was_edited_fails_its_checksum(exported, tmp_path):
    with safe_open(str(exported["bundle"]), framework="pt") as fh:
        metadata = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    entries = json.loads(metadata["editkit.entries"])
    entries[0]["token_count"] += 1000
    metadata["editkit.entries"] = json.dumps(entries)
    tampered = tmp_path / "tampered.safetensors"
    save_file(tensors, str(tampered), metadata)
    store_b = tmp_path / "store-b"
    result = editkit("stats", "import", str(tampered), "--model", str(exported["model"]), "--stats-dir", str(store_b))
    assert result.returncode == 2 and "failed its checksum" in result.stderr
    assert not store_b.exists() or not any(store_b.rglob("*.safetensors"))


def test_export_refuses_missing_layers_and_an_output_inside_the_store(exported, tmp_path):
    missing = editkit("stats", "export", "--model", str(exported["model"]), "--layers", "1-3", "--stats-dir",
                      str(exported["store"]), "--out", str(tmp_path / "x.safetensors"))
    assert missing.returncode == 2 and "for layer(s) 3; collect them first" in missing.stderr
    assert not (tmp_path / "x.safetensors").exists()
    inside = editkit("stats", "export", "--model", str(exported["model"]), "--layers", "1", "--stats-dir",
                     str(exported["store"]), "--out", str(exported["store"] / "x.safetensors"))
    assert inside.returncode == 2 and "inside the statistics store" in inside.stderr
    not_a_bundle = editkit("stats", "import", str(exported["corpus"]), "--model", str(exported["model"]),
                           "--stats-dir", str(tmp_path / "s"))
    assert not_a_bundle.returncode == 2 and "not a readable statistics bundle" in not_a_bundle.stderr
