"""The statistics store and accumulation kernels: exact lookups, checksums, atomic writes,
checkpoints that are never taken for results, block-triangular Gram accumulation, spectra."""

from __future__ import annotations

import shutil

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from editkit.keystats.collect import _batches, _chunks, accumulate_gram, symmetrize
from editkit.keystats.distributed import DistContext
from editkit.keystats.identity import FORMAT, canonical_json, digest
from editkit.keystats.spectrum import SpectrumSummary
from editkit.keystats.store import CorruptStatisticsError, StatsStore, slug


def identity(**changes):
    base = {"format": FORMAT, "model": {"name": "org/model", "weights_sha256": "ab"}, "module": "h.1.mlp",
            "layer": 1, "d_in": 6, "corpus": {"source": "text", "sha256": "cd"}, "max_length": 8,
            "max_tokens": None, "dtype": "float32"}
    return {**base, **changes}


def gram(d: int = 6, seed: int = 0) -> torch.Tensor:
    k = torch.randn(20, d, generator=torch.Generator().manual_seed(seed))
    return k.T @ k


def test_roundtrip_and_exact_lookup(tmp_path):
    store = StatsStore(root=tmp_path)
    total = gram()
    saved = store.save(identity(), total, 20, {"documents": 3})
    assert saved.path.parent == tmp_path / "org--model" and saved.path.name.startswith("h.1.mlp--")
    loaded = store.load(identity())
    assert loaded is not None and torch.equal(loaded.total, total) and loaded.count == 20
    assert loaded.info["documents"] == 3 and "editkit_version" in loaded.info
    assert store.load(identity(max_length=9)) is None
    assert store.load(identity(dtype="float64")) is None
    # a file renamed to another identity's name is never returned for it
    other = identity(max_tokens=5)
    shutil.copy(saved.path, store.stats_path(other))
    assert store.load(other) is None
    assert [p.name for p in tmp_path.rglob("*") if p.name.startswith(".")] == []  # no temp files left


def test_corruption_truncation_and_missing_checksum_are_refused(tmp_path):
    store = StatsStore(root=tmp_path)
    path = store.save(identity(), gram(), 20, {}).path
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[-1] ^= 0x80
    path.write_bytes(bytes(flipped))
    with pytest.raises(CorruptStatisticsError, match="failed its checksum"):
        store.load(identity())
    for size in (0, 7, len(good) - 1):
        path.write_bytes(good[:size])
        with pytest.raises(CorruptStatisticsError, match="corrupt or truncated"):
            store.load(identity())
    from safetensors.torch import save_file

    save_file({"total": gram()}, str(path),
              {"editkit.kind": "statistics", "editkit.identity": canonical_json(identity())})
    with pytest.raises(CorruptStatisticsError, match=r"no editkit\.sha256"):
        store.load(identity())


def test_a_checkpoint_is_never_taken_for_statistics(tmp_path):
    store = StatsStore(root=tmp_path)
    ids = [identity(), identity(module="h.2.mlp", layer=2)]
    path = store.save_checkpoint(ids, {"h.1.mlp": gram(), "h.2.mlp": gram(seed=1)}, position=7, tokens=99,
                                 layout={"panels": 4})
    assert path.parent.name == ".partial" and list(store.entries()) == []
    assert store.load(ids[0]) is None
    shutil.copy(path, store.stats_path(ids[0]))  # even under a final name
    with pytest.raises(CorruptStatisticsError, match="not a complete"):
        store.load(ids[0])
    checkpoint = store.load_checkpoint(list(reversed(ids)))
    assert checkpoint is not None and checkpoint.position == 7 and checkpoint.tokens == 99
    assert torch.equal(checkpoint.totals["h.2.mlp"], gram(seed=1)) and checkpoint.layout == {"panels": 4}
    assert store.load_checkpoint([ids[0]]) is None
    store.remove_checkpoint(ids)
    assert store.load_checkpoint(ids) is None


def test_eigh_cache_is_bound_to_its_statistics(tmp_path):
    store = StatsStore(root=tmp_path)
    stats = store.save(identity(), gram(), 20, {})
    values, vectors = torch.linalg.eigh(stats.total.double() / 20)
    store.save_eigh(stats, values, vectors)
    cached = store.load_eigh(stats)
    assert cached is not None and torch.equal(cached[0], values)
    replaced = store.save(identity(), gram(seed=3), 20, {})  # recollected: old cache must not apply
    assert store.load_eigh(replaced) is None
    assert [p.name for p in store.entries()] == [stats.path.name]


def test_slug():
    assert slug("org/name") == "org--name"
    assert slug("/abs/path to/model") == "abs--path_to--model"
    assert slug("..") == "model" and len(slug("x" * 500)) == 120


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 30), d=st.integers(1, 23), panels=st.integers(1, 9), seed=st.integers(0, 1000))
def test_block_triangular_gram_equals_full(n, d, panels, seed):
    k = torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    total = torch.zeros(d, d, dtype=torch.float64)
    accumulate_gram(total, k[: n // 2], panels)
    accumulate_gram(total, k[n // 2 :], panels)
    torch.testing.assert_close(symmetrize(total, panels), k.T @ k, rtol=1e-12, atol=1e-12)


class WordTokenizer:
    """One token per word (id = word length); enough to test chunking."""

    def __call__(self, texts, truncation, max_length):
        return {"input_ids": [[len(w) for w in t.split()][:max_length] for t in texts]}


def _plan(**changes):
    from editkit.keystats.collect import CollectionPlan

    base = dict(modules=("m",), d_in={"m": 2}, max_length=4, max_tokens=None, dtype=torch.float32,
                batch_tokens=8, chunk_tokens=10)
    return CollectionPlan(**{**base, **changes})


def test_chunks_cut_the_budget_exactly_and_resume_on_boundaries():
    docs = ["a b c d e f", "", "g h", "i j k", "l", "m n o p", "q r s"] * 5
    plan = _plan(max_tokens=37)
    chunks = list(_chunks(WordTokenizer(), docs, plan, 0))
    assert sum(len(r) for rows, _ in chunks for r in rows) == 37
    assert all(len(r) <= 4 for rows, _ in chunks for r in rows)
    # resuming after the second chunk reproduces the remaining chunks exactly
    position = sum(consumed for _, consumed in chunks[:2])
    tokens = sum(len(r) for rows, _ in chunks[:2] for r in rows)
    assert list(_chunks(WordTokenizer(), docs[position:], plan, tokens)) == chunks[2:]
    assert list(_chunks(WordTokenizer(), docs, _plan(max_tokens=37), 37)) == []


def test_batches_respect_the_padded_budget():
    rows = sorted([[1] * n for n in (4, 4, 3, 2, 2, 1, 1, 1)], key=len, reverse=True)
    batches = list(_batches(rows, 8))
    assert all(len(b) * len(b[0]) <= 8 for b in batches)
    assert [len(r) for b in batches for r in b] == [len(r) for r in rows]


def test_single_process_context_is_trivial():
    dist = DistContext()
    t = torch.ones(2)
    assert dist.all_reduce_(t) is t and torch.equal(t, torch.ones(2))
    assert list(DistContext(rank=1, world_size=3).shard(8)) == [1, 4, 7] and not dist.active


def test_spectrum_summary():
    values = torch.tensor([1e-4, 1e-3, 1e-2, 0.1, 1.0], dtype=torch.float64)
    s = SpectrumSummary.from_eigenvalues(values, tokens=10, threshold=2e-2)
    assert (s.d_in, s.null_space, s.minimum, s.median, s.maximum) == (5, 3, 1e-4, 1e-2, 1.0)
    assert s.to_json()["threshold"] == 2e-2
    assert digest({"a": 1}) == digest({"a": 1}) != digest({"a": 2})
