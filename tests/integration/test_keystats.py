"""Key statistics end to end on a tiny random GPT-2: C0 against an explicit-hook float64
reference, one pass over L layers against L passes, cache identity, integrity, bad input."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
import torch

from editkit.cli.main import main as cli
from editkit.keystats import CorpusSpec, KeyStatistics
from editkit.keystats.store import CorruptStatisticsError, StatsStore, slug
from editkit.layout import resolve_layout

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
WIKI = SHARED / "data" / "real" / "wikipedia_vital_leads_en.jsonl"
WORDS = ("the", "river", "city", "old", "king", "music", "north", "war", "paint", "light", "small", "great",
         "field", "stone", "empire", "science", "water", "island", "language", "school", "garden", "harbour")


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 60))) + "." for _ in range(n)]


def build_tiny_model(out: Path, *, n_layer: int = 4, seed: int = 0) -> Path:
    """A random GPT-2 (d_model 32, d_mlp 64) and a byte-level BPE tokenizer, saved to ``out``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<|endoftext|>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(synthetic_texts(200), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<unk>",
        pad_token="<|endoftext|>", model_input_names=["input_ids", "attention_mask"],
    )
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=n_layer, n_embd=32, n_inner=64, n_head=4, vocab_size=len(tokenizer),
                        n_positions=64, bos_token_id=0, eos_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_jsonl(path: Path, texts: list[str], field: str = "text") -> Path:
    path.write_text("".join(json.dumps({field: t, "id": i}) + "\n" for i, t in enumerate(texts)))
    return path


def load(model_dir: Path) -> tuple[torch.nn.Module, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)


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


@pytest.fixture(scope="module")
def corpus_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", synthetic_texts(120, seed=1))


@pytest.fixture(scope="module")
def tiny(model_dir: Path):
    model, tokenizer = load(model_dir)
    return model, tokenizer, resolve_layout(model)


def reference_c0(model, tokenizer, sites, texts, *, max_length, max_tokens):
    """Σ k kᵀ / N in float64 with explicit hooks, one unpadded document per forward."""
    totals = {s.module: torch.zeros(s.d_in, s.d_in, dtype=torch.float64) for s in sites}
    captured: dict[str, torch.Tensor] = {}
    handles = [model.get_submodule(s.module).register_forward_pre_hook(
        lambda module, args, name=s.module: captured.__setitem__(name, args[0])) for s in sites]
    count, budget = 0, max_tokens
    try:
        for text in texts:
            ids = tokenizer(text, truncation=True, max_length=max_length)["input_ids"]
            if budget is not None:
                ids = ids[:budget]
                budget -= len(ids)
            if not ids:
                continue
            with torch.no_grad():
                model(torch.tensor([ids]))
            for name, total in totals.items():
                k = captured[name][0].to(torch.float64)  # [T, d_in]
                total += k.T @ k
            count += len(ids)
            if budget is not None and budget <= 0:
                break
    finally:
        for h in handles:
            h.remove()
    return {name: total / count for name, total in totals.items()}, count


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_c0_matches_float64_reference(model_dir, corpus_file, tmp_path, dtype, tolerance):
    model, tokenizer = load(model_dir)
    if dtype == torch.float64:
        model = model.double()  # same keys batched or not, to float64 precision
    layout = resolve_layout(model)
    sites = [layout.site(1), layout.site(3)]
    corpus = CorpusSpec.parse(str(corpus_file))
    stats = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=corpus, stats_dir=tmp_path,
                          max_length=24, max_tokens=2500, dtype=dtype, model_id="tiny", batch_tokens=200)
    stats.prepare(sites)
    assert all(stats.stored(site).info["seconds"] >= 0 for site in sites)  # the collection's wall time, kept
    expected, count = reference_c0(model, tokenizer, sites, corpus.documents(), max_length=24, max_tokens=2500)
    assert count == 2500
    # read back from the store, through a fresh object: no collection
    again = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=corpus, stats_dir=tmp_path,
                          max_length=24, max_tokens=2500, dtype=dtype, model_id="tiny", batch_tokens=200)
    for site in sites:
        c0 = again.second_moment(site)
        assert c0.dtype == torch.float64 and c0.shape == (site.d_in, site.d_in)
        assert again.token_count(site) == 2500
        assert rel_error(c0, expected[site.module]) < tolerance
        assert torch.equal(c0, c0.T)
    assert again.last_collection is None


def test_one_pass_equals_separate_passes(tiny, corpus_file, tmp_path):
    model, tokenizer, layout = tiny
    sites = [layout.site(0), layout.site(2), layout.site(3)]
    corpus = CorpusSpec.parse(str(corpus_file))
    forwards = []
    handle = model.register_forward_pre_hook(lambda module, args, kwargs: forwards.append(1), with_kwargs=True)
    try:
        kwargs = dict(model=model, tokenizer=tokenizer, layout=layout, corpus=corpus, max_length=32,
                      max_tokens=3000, model_id="tiny", batch_tokens=256)
        together = KeyStatistics(stats_dir=tmp_path / "one", **kwargs)
        together.prepare(sites)
        one_pass = len(forwards)
        separate = {}
        for site in sites:
            single = KeyStatistics(stats_dir=tmp_path / f"layer{site.layer}", **kwargs)
            separate[site.module] = single.second_moment(site)
        assert len(forwards) == 4 * one_pass  # three single-layer passes after the one three-layer pass
        for site in sites:
            assert rel_error(together.second_moment(site), separate[site.module]) < 1e-6
        # a file written by the multi-layer pass serves a single-layer lookup
        lookup = KeyStatistics(stats_dir=tmp_path / "one", **kwargs)
        before = len(forwards)
        assert torch.equal(lookup.second_moment(sites[1]), together.second_moment(sites[1]))
        assert len(forwards) == before
    finally:
        handle.remove()


def test_memory_only_mode_writes_nothing(tiny, corpus_file, tmp_path, monkeypatch):
    model, tokenizer, layout = tiny
    monkeypatch.chdir(tmp_path)
    stats = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=CorpusSpec.parse(str(corpus_file)),
                          stats_dir=None, max_length=16, max_tokens=500)
    site = layout.site(1)
    eigenvalues, eigenvectors = stats.eigendecomposition(site)
    c0 = stats.second_moment(site)
    assert torch.all(eigenvalues[1:] >= eigenvalues[:-1])
    assert rel_error(eigenvectors @ torch.diag(eigenvalues) @ eigenvectors.T, c0) < 1e-10
    assert stats.path(site) is None and list(tmp_path.iterdir()) == []


def test_changing_any_identity_field_misses_the_cache(tiny, model_dir, corpus_file, tmp_path):
    model, tokenizer, layout = tiny
    site = layout.site(1)
    base = dict(model=model, tokenizer=tokenizer, layout=layout, corpus=CorpusSpec.parse(str(corpus_file)),
                stats_dir=tmp_path, max_length=16, max_tokens=400, dtype=torch.float32, model_id="tiny")
    KeyStatistics(**base).prepare([site])
    store = StatsStore(root=tmp_path)

    def hit(**changes) -> bool:
        return store.load(KeyStatistics(**{**base, **changes}).identity(site)) is not None

    assert hit()
    other_file = write_jsonl(tmp_path / "other.jsonl", [*synthetic_texts(120, seed=1)[:-1], "changed text."])
    same_content = tmp_path / "copy.jsonl"
    shutil.copy(corpus_file, same_content)
    assert hit(corpus=CorpusSpec.parse(str(same_content)))  # identified by content, not path
    assert not hit(corpus=CorpusSpec.parse(str(other_file)))
    assert not hit(corpus=CorpusSpec.parse(str(corpus_file), samples=50))
    assert not hit(corpus=CorpusSpec.parse(str(corpus_file), seed=3))
    assert not hit(corpus=CorpusSpec.parse(f"{corpus_file}:id"))
    assert not hit(max_length=17)
    assert not hit(max_tokens=401)
    assert not hit(max_tokens=None)
    assert not hit(dtype=torch.float64)
    assert not hit(model_id="other")
    edited, _ = load(model_dir)
    with torch.no_grad():
        edited.get_submodule(layout.site(0).module).weight[0, 0] += 1e-3
    assert not hit(model=edited)
    assert hit(model=load(model_dir)[0])  # same weights loaded again
    assert not hit(model=load(model_dir)[0].double())


def test_corrupt_or_truncated_file_is_refused(tiny, model_dir, corpus_file, tmp_path, capsys):
    model, tokenizer, layout = tiny
    site = layout.site(2)
    kwargs = dict(model=model, tokenizer=tokenizer, layout=layout, corpus=CorpusSpec.parse(str(corpus_file)),
                  stats_dir=tmp_path, max_length=16, max_tokens=300, model_id=str(model_dir))
    stats = KeyStatistics(**kwargs)
    stats.eigendecomposition(site)
    path = stats.path(site)
    good = path.read_bytes()
    flipped = bytearray(good)
    flipped[-5] ^= 0x01  # inside the tensor data
    path.write_bytes(bytes(flipped))
    with pytest.raises(CorruptStatisticsError, match="checksum"):
        KeyStatistics(**kwargs).second_moment(site)
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(CorruptStatisticsError, match="corrupt or truncated"):
        KeyStatistics(**kwargs).second_moment(site)
    rc = cli(["stats", "--model", str(model_dir), "--layers", "2", "--corpus", str(corpus_file), "--max-length", "16",
              "--max-tokens", "300", "--stats-dir", str(tmp_path), "--no-progress"])
    assert rc == 1 and "truncated" in capsys.readouterr().err
    path.write_bytes(good)
    eigh = path.with_suffix(".eigh.safetensors")
    data = bytearray(eigh.read_bytes())
    data[-9] ^= 0x10
    eigh.write_bytes(bytes(data))
    with pytest.raises(CorruptStatisticsError, match="eigendecomposition cache"):
        KeyStatistics(**kwargs).eigendecomposition(site)


def test_eigendecomposition_is_cached_on_disk(tiny, corpus_file, tmp_path, monkeypatch):
    model, tokenizer, layout = tiny
    site = layout.site(3)
    kwargs = dict(model=model, tokenizer=tokenizer, layout=layout, corpus=CorpusSpec.parse(str(corpus_file)),
                  stats_dir=tmp_path, max_length=16, max_tokens=600)
    first = KeyStatistics(**kwargs)
    eigenvalues, eigenvectors = first.eigendecomposition(site)
    assert eigenvalues.dtype == eigenvectors.dtype == torch.float64
    assert eigenvalues.shape == (site.d_in,) and eigenvectors.shape == (site.d_in, site.d_in)
    assert torch.all(eigenvalues[1:] >= eigenvalues[:-1])
    c0 = first.second_moment(site)
    assert rel_error(eigenvectors @ torch.diag(eigenvalues) @ eigenvectors.T, c0) < 1e-10

    def no_eigh(*args, **kwargs):
        raise AssertionError("eigh recomputed despite the cache")

    monkeypatch.setattr(torch.linalg, "eigh", no_eigh)
    again = KeyStatistics(**kwargs)
    cached_values, cached_vectors = again.eigendecomposition(site)
    assert torch.equal(cached_values, eigenvalues) and torch.equal(cached_vectors, eigenvectors)
    summary = again.summary(site, threshold=1e-3)
    assert summary.null_space == int((eigenvalues < 1e-3).sum()) and summary.tokens == 600


def test_stored_statistics_of_at_least_the_tokens_asked_for_are_reused(tiny, model_dir, corpus_file, tmp_path,
                                                                         monkeypatch):
    """A larger collection is reused as it is (its real count recorded), a smaller one is
    recomputed with the reason said, and the model's name is a label, not a key."""
    import editkit.keystats.statistics as statistics

    model, tokenizer, layout = tiny
    sites = [layout.site(1), layout.site(2)]
    lines: list[str] = []
    base = dict(model=model, tokenizer=tokenizer, layout=layout, corpus=CorpusSpec.parse(str(corpus_file)),
                stats_dir=tmp_path, max_length=16, model_id=str(model_dir), report=lines.append)
    capped = KeyStatistics(**base, max_tokens=300)
    capped.prepare(sites)
    assert lines == [f"key statistics: computing C0 of layers 1, 2 over {corpus_file}:text (up to 300 tokens, "
                     f"documents truncated to 16 tokens), to store in {tmp_path}; no statistics stored there yet"]
    whole = KeyStatistics(**base, max_tokens=None)
    whole.prepare(sites)  # 300 tokens are not the whole corpus: collected, and the line says why
    assert "differ in tokens (stored 300 of a 300-token budget, this run needs every selected document)" in lines[1]
    total = whole.token_count(sites[0])
    assert total > 300

    def no_collection(*args, **kwargs):
        raise AssertionError("statistics recomputed although a larger collection is stored")

    monkeypatch.setattr(statistics, "collect", no_collection)
    lines.clear()
    reuse = KeyStatistics(**{**base, "model_id": "./another/name/of/the/same/model"}, max_tokens=200)
    reuse.prepare(sites)
    assert lines == [f"key statistics: layers 1, 2 reused from {tmp_path / slug(str(model_dir))} ({total:,} tokens, "
                     "the whole corpus selection); nothing recomputed"]
    provenance = reuse.provenance(sites[0])
    assert provenance["source"] == "store" and provenance["tokens"] == total
    assert provenance["identity"]["max_tokens"] is None and provenance["path"] == str(whole.path(sites[0]))
    assert torch.equal(reuse.second_moment(sites[0]), whole.second_moment(sites[0]))
    lines.clear()
    with pytest.raises(AssertionError, match="recomputed"):  # another max_length is another key
        KeyStatistics(**{**base, "max_length": 8}, max_tokens=200).prepare(sites)
    assert "differ in max_length (stored 16, this run 8)" in lines[0]


def test_registered_corpus_through_the_plugin_catalog(tiny, tmp_path):
    from editkit import DatasetSpec, hookimpl
    from editkit.plugins import PluginHost

    texts = synthetic_texts(30, seed=5)

    class Plugin:
        @hookimpl
        def editkit_register_datasets(self, register):
            register(DatasetSpec(name="tinytexts", summary="test corpus", corpus=lambda: iter(texts)))

    host = PluginHost(entry_points=False, plugins=[("x", Plugin())])
    model, tokenizer, layout = tiny
    corpus = CorpusSpec.parse("tinytexts")
    assert corpus.kind == "registered"
    stats = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=corpus, stats_dir=tmp_path,
                          max_length=16, host=host)
    site = layout.site(0)
    expected, count = reference_c0(model, tokenizer, [site], texts, max_length=16, max_tokens=None)
    assert stats.token_count(site) == count
    assert rel_error(stats.second_moment(site), expected[site.module]) < 1e-5
    assert stats.identity(site)["corpus"]["provider"] == "x"


@pytest.mark.skipif(not WIKI.is_file(), reason=f"real Wikipedia text not available ({WIKI} is absent: ../shared)")
def test_real_wikipedia_text_local_and_as_a_datasets_stream(tiny, tmp_path):
    model, tokenizer, layout = tiny
    lines = WIKI.read_text(encoding="utf-8").splitlines()[:40]
    data = tmp_path / "wiki"
    data.mkdir()
    (data / "train.jsonl").write_text("\n".join(lines) + "\n")
    site = layout.site(2)
    kwargs = dict(model=model, tokenizer=tokenizer, layout=layout, max_length=64, max_tokens=2000)
    local = KeyStatistics(corpus=CorpusSpec.parse(str(data / "train.jsonl")), **kwargs)
    stream = KeyStatistics(corpus=CorpusSpec.parse(f"hf:{data}"), **kwargs)
    assert local.token_count(site) == stream.token_count(site) == 2000
    assert torch.equal(local.second_moment(site), stream.second_moment(site))
    expected, _ = reference_c0(model, tokenizer, [site], [json.loads(line)["text"] for line in lines],
                               max_length=64, max_tokens=2000)
    assert rel_error(local.second_moment(site), expected[site.module]) < 1e-5


@pytest.mark.parametrize(
    ("corpus", "layers", "message"),
    [
        ("missing.jsonl", "1", "cannot be read"),
        ("empty.txt", "1", "is empty"),
        ("blank.jsonl", "1", "is empty"),
        ("corpus.jsonl:body", "1", "no text field 'body'"),
        ("bad.jsonl", "1", "not valid JSON"),
        ("latin1.txt", "1", "cannot be read"),
        ("corpus.jsonl", "9", "out of range"),
        ("corpus.jsonl", "1-x", "--layers"),
        ("nosuchdataset", "1", "unknown dataset"),
        ("corpus.csv", "1", "expected PATH.txt"),
    ],
)
def test_bad_input_exits_2_and_writes_nothing(model_dir, corpus_file, tmp_path, capsys, corpus, layers, message):
    shutil.copy(corpus_file, tmp_path / "corpus.jsonl")
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "blank.jsonl").write_text("")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"text": \n')
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    stats_dir = tmp_path / "stats"
    rc = cli(["stats", "--model", str(model_dir), "--layers", layers, "--corpus", str(tmp_path / corpus),
              "--stats-dir", str(stats_dir), "--max-length", "16", "--no-progress"]
             if corpus != "nosuchdataset" else
             ["stats", "--model", str(model_dir), "--layers", layers, "--corpus", corpus,
              "--stats-dir", str(stats_dir), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert message in err
    assert not stats_dir.exists()


def test_a_rank_that_cannot_read_the_eigendecomposition_cache_keeps_what_it_computed(tiny, corpus_file, tmp_path,
                                                                                      monkeypatch):
    """One layer's eigenvectors are dropped for the next only when the store's cache holds them; a rank that does
    not write the cache and cannot read the file there (an older editkit's) keeps them rather than recompute."""
    import editkit.keystats.statistics as statistics
    from editkit.keystats.distributed import DistContext

    model, tokenizer, layout = tiny
    sites = [layout.site(1), layout.site(2)]
    kwargs = dict(model=model, tokenizer=tokenizer, layout=layout, corpus=CorpusSpec.parse(str(corpus_file)),
                  stats_dir=tmp_path, max_length=16, max_tokens=600)
    main_rank = KeyStatistics(**kwargs)
    for site in sites:
        main_rank.eigendecomposition(site)  # statistics and eigendecomposition caches on disk
    assert len(list(tmp_path.rglob("*eigh*"))) >= 2
    calls, real = [], statistics.eigendecompose
    monkeypatch.setattr(statistics, "eigendecompose", lambda stats, device: calls.append(1) or real(stats, device))
    monkeypatch.setattr(StatsStore, "load_eigh", lambda self, stats: None)  # the files there do not load
    other = KeyStatistics(**kwargs, distributed=DistContext(rank=1, world_size=2))
    first = other.eigendecomposition(sites[0])
    other.eigendecomposition(sites[1])
    again = other.eigendecomposition(sites[0])
    assert len(calls) == 2 and again[1] is first[1]  # kept, not computed a third time
