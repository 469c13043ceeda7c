"""``editkit stats`` in subprocesses: SIGKILL mid-collection and resume, two gloo ranks under
``torch.distributed.run`` against one process, ``--show``, and a torch-free ``--help``."""

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

from editkit.keystats import CorpusSpec, KeyStatistics
from editkit.keystats.store import StatsStore, slug
from editkit.layout import resolve_layout

try:  # rootdir-style test modules (no __init__.py): the sibling module is importable by name
    from test_keystats import build_tiny_model, load, rel_error, synthetic_texts, write_jsonl
except ImportError:  # pragma: no cover - if tests/ become packages
    from .test_keystats import build_tiny_model, load, rel_error, synthetic_texts, write_jsonl

REPO = Path(__file__).resolve().parents[2]


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def stats_cmd(model_dir: Path, corpus: Path, stats_dir: Path, *extra: str) -> list[str]:
    return ["-m", "editkit", "stats", "--model", str(model_dir), "--corpus", str(corpus),
            "--stats-dir", str(stats_dir), "--no-progress", *extra]


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: intra-op threads only add barrier latency."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def in_process(model_dir: Path, corpus: Path, layers: list[int], **kwargs):
    model, tokenizer = load(model_dir)
    layout = resolve_layout(model)
    stats = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=CorpusSpec.parse(str(corpus)),
                          model_id=str(model_dir), **kwargs)
    sites = [layout.site(layer) for layer in layers]
    stats.prepare(sites)
    return {s.layer: stats.second_moment(s) for s in sites}, {s.layer: stats.token_count(s) for s in sites}


def test_sigkill_mid_collection_then_resume_equals_uninterrupted(model_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", synthetic_texts(2500, seed=7))
    stats_dir = tmp_path / "stats"
    args = stats_cmd(model_dir, corpus, stats_dir, "--layers", "1,3", "--max-length", "32", "--batch-tokens", "64",
                     "--checkpoint-every", "0", "--max-tokens", "all")
    proc = subprocess.Popen([sys.executable, *args], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    partial = stats_dir / slug(str(model_dir)) / ".partial"
    deadline = time.monotonic() + 120
    try:
        while not any(partial.glob("*.safetensors")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no checkpoint was written"
            time.sleep(0.01)
        time.sleep(0.2)  # a few more checkpoints
        proc.send_signal(signal.SIGKILL)
    finally:
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, f"finished before the kill:\n{err.decode()}"

    model, tokenizer = load(model_dir)
    layout = resolve_layout(model)
    stats = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=CorpusSpec.parse(str(corpus)),
                          stats_dir=stats_dir, max_length=32, batch_tokens=64, model_id=str(model_dir))
    sites = [layout.site(1), layout.site(3)]
    store = StatsStore(root=stats_dir)
    identities = [stats.identity(s) for s in sites]
    assert all(store.load(i) is None for i in identities), "a killed run left a file a lookup accepts"
    assert list(store.entries()) == []
    checkpoint = store.load_checkpoint(identities)
    assert checkpoint is not None and 0 < checkpoint.position < 2500

    resumed = subprocess.run([sys.executable, *args], env=env(), capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert f"resumed at document {checkpoint.position:,}" in resumed.stdout
    assert store.load_checkpoint(identities) is None  # removed once complete
    assert list(stats_dir.rglob(".*.tmp-*")) == []  # and no temp file of the killed writer is left

    expected, counts = in_process(model_dir, corpus, [1, 3], max_length=32, batch_tokens=64)
    for site, identity in zip(sites, identities):
        stored = store.load(identity)
        assert stored is not None and stored.count == counts[site.layer]
        assert stored.info["resumed_from"] == checkpoint.position
        assert torch.equal(stored.total.to(torch.float64) / stored.count, expected[site.layer])


def test_two_gloo_ranks_equal_one_process(model_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", synthetic_texts(300, seed=11))
    stats_dir = tmp_path / "stats"
    args = stats_cmd(model_dir, corpus, stats_dir, "--layers", "0,2", "--max-length", "32", "--max-tokens", "5000",
                     "--batch-tokens", "128", "--checkpoint-every", "0", "--json")
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *args],
        env=env(), capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout)  # printed by rank 0 only
    assert [r["layer"] for r in rows] == [0, 2] and all(r["tokens"] == 5000 for r in rows)
    expected, _ = in_process(model_dir, corpus, [0, 2], max_length=32, max_tokens=5000)
    store = StatsStore(root=stats_dir)
    for row in rows:
        stored = store.read(Path(row["path"]))
        assert stored.info["ranks"] == 2
        assert rel_error(stored.total.to(torch.float64) / stored.count, expected[row["layer"]]) < 1e-5


def test_show_lists_the_store_without_a_model(model_dir, tmp_path):
    corpus = write_jsonl(tmp_path / "corpus.jsonl", synthetic_texts(80, seed=2))
    stats_dir = tmp_path / "stats"
    env_ = env()
    first = subprocess.run([sys.executable, *stats_cmd(model_dir, corpus, stats_dir, "--layers", "1-2",
                                                       "--max-length", "16", "--show", "--threshold", "1e-3")],
                           env=env_, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert "null space (λ < 0.001)" in first.stdout and "transformer.h.2.mlp.c_proj" in first.stdout
    shown = subprocess.run([sys.executable, "-m", "editkit", "stats", "--show", "--stats-dir", str(stats_dir),
                            "--json", "--threshold", "1e-3"], env=env_, capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    rows = json.loads(shown.stdout)
    assert sorted(r["layer"] for r in rows) == [1, 2]
    for r in rows:
        spectrum = r["spectrum"]
        assert spectrum["d_in"] == 64 and 0 <= spectrum["null_space"] <= 64 and spectrum["threshold"] == 1e-3
        assert spectrum["minimum"] <= spectrum["median"] <= spectrum["maximum"]
        assert r["tokens"] > 0 and Path(r["path"]).with_suffix(".eigh.safetensors").is_file()


def test_help_stays_torch_free():
    code = ("import sys; from editkit.cli.main import build_parser; build_parser().parse_args(['stats', '--help'])")
    run = subprocess.run([sys.executable, "-X", "importtime", "-c", code], env=env(), capture_output=True, text=True)
    assert run.returncode == 0 and "--max-tokens" in run.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in run.stderr.splitlines()}
    assert "torch" not in imported and "transformers" not in imported
