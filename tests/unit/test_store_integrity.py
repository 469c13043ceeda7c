"""Integrity of the statistics store's headers, failed writes (a full disk) and collection progress.

* Every ``editkit.*`` header field of a stored file (kind, identity, token count, …) is covered by
  ``editkit.header_sha256``: a changed field, or a file written before that field existed, is refused by
  :meth:`StatsStore.read` and is never a reuse candidate.
* A write that fails for want of space raises :class:`WriteError`, one line naming the file, leaves no
  temporary file and the previous file intact; other failures pass through unchanged.
* C0 progress ends at 100% when the corpus is smaller than the token budget.

A full disk is simulated by monkeypatching the writer; no disk is filled.
"""

from __future__ import annotations

import errno
import io
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from editkit.errors import EditkitError
from editkit.helpers.atomic import WriteError, write_atomic, write_directory_atomic, write_json_atomic
from editkit.keystats.collection_progress import Lines, _Rich
from editkit.keystats.corpus import CorpusSpec
from editkit.keystats.identity import FORMAT, canonical_json
from editkit.keystats.reuse import choose
from editkit.keystats.statistics import cached_eigendecomposition
from editkit.keystats.store import HEADER_KEY, CorruptStatisticsError, StatsStore, header_sha256

ENOSPC = OSError(errno.ENOSPC, "No space left on device")


def identity(**changes):
    base = {"format": FORMAT, "model": {"name": "org/model", "weights_sha256": "ab"}, "module": "h.1.mlp",
            "layer": 1, "d_in": 6, "corpus": {"source": "text", "sha256": "cd", "samples": None, "seed": None},
            "max_length": 8, "max_tokens": 1000, "dtype": "float32"}
    return {**base, **changes}


def gram(seed: int = 0) -> torch.Tensor:
    k = torch.randn(20, 6, generator=torch.Generator().manual_seed(seed))
    return k.T @ k


def rewrite_header(path: Path, **fields: str | None) -> None:
    """Rewrite a safetensors file with the same tensors and changed metadata (None: field removed)."""
    with safe_open(str(path), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    for key, value in fields.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    save_file(tensors, str(path), metadata)


def no_temp_files(root: Path) -> bool:
    return [p for p in root.rglob("*") if ".tmp" in p.name] == []


# ---------------------------------------------------------------------------------------------- headers


def test_a_changed_token_count_is_refused_and_never_a_candidate(tmp_path):
    store = StatsStore(root=tmp_path)
    stats = store.save(identity(), gram(), 20, {})
    cached_eigendecomposition(stats, store)
    assert [c.path for c in store.candidates()] == [stats.path]
    rewrite_header(stats.path, **{"editkit.token_count": "40"})
    stats.path.with_suffix(".eigh.safetensors").unlink()
    for read in (lambda: store.load(identity()), lambda: store.read(stats.path)):
        with pytest.raises(CorruptStatisticsError, match=r"header checksum.*delete it to recompute"):
            read()
    assert store.candidates() == []
    candidates, refused = store.scan()
    assert candidates == [] and [p for p, _ in refused] == [stats.path]
    assert choose(store.candidates(), identity(max_tokens=500)) is None  # never reused, even for less


def test_a_changed_identity_or_kind_is_refused(tmp_path):
    store = StatsStore(root=tmp_path)
    stats = store.save(identity(), gram(), 20, {})
    good = stats.path.read_bytes()
    # a 20-token collection dressed up as the whole corpus (max_tokens all) would serve any budget
    rewrite_header(stats.path, **{"editkit.identity": canonical_json(identity(max_tokens=None))})
    assert store.candidates() == [] and choose(store.candidates(), identity(max_tokens=None)) is None
    with pytest.raises(CorruptStatisticsError, match="header checksum"):
        store.read(stats.path)
    stats.path.write_bytes(good)
    assert store.read(stats.path) is not None
    with safe_open(str(stats.path), framework="pt") as fh:
        metadata = dict(fh.metadata())
    assert header_sha256(metadata) == metadata[HEADER_KEY]
    for key, value in (("editkit.kind", "checkpoint"), ("editkit.token_count", "21"), ("editkit.sha256", "0" * 64),
                       ("editkit.identity", canonical_json(identity(layer=2))), ("editkit.info", "{}")):
        assert header_sha256({**metadata, key: value}) != metadata[HEADER_KEY], key
    assert header_sha256({**metadata, "format": "pt"}) == metadata[HEADER_KEY]  # not editkit's field


def test_a_file_written_before_the_header_checksum_is_refused_with_a_clear_message(tmp_path):
    store = StatsStore(root=tmp_path)
    stats = store.save(identity(), gram(), 20, {})
    rewrite_header(stats.path, **{HEADER_KEY: None})  # exactly what an older editkit wrote
    with pytest.raises(CorruptStatisticsError) as caught:
        store.load(identity())
    message = str(caught.value)
    assert str(stats.path) in message and "older editkit" in message and "delete it to recompute" in message
    assert store.candidates() == []
    assert "older editkit" in store.scan()[1][0][1]


def test_adopting_older_files_stamps_their_header_and_refuses_damaged_ones(tmp_path):
    store = StatsStore(root=tmp_path)
    older = store.save(identity(), gram(), 20, {})
    values, vectors = cached_eigendecomposition(older, store)
    current = store.save(identity(layer=2, module="h.2.mlp"), gram(1), 20, {})
    damaged = store.save(identity(layer=3, module="h.3.mlp"), gram(2), 20, {})
    for path in (older.path, store.eigh_path(identity()), damaged.path):
        rewrite_header(path, **{HEADER_KEY: None})  # as an older editkit wrote them
    rewrite_header(damaged.path, **{"editkit.sha256": "0" * 64})  # and one whose tensors no longer match
    untouched = current.path.read_bytes()
    ancient = store.eigh_path(identity(layer=2, module="h.2.mlp"))
    ancient.write_bytes(store.eigh_path(identity()).read_bytes())
    rewrite_header(ancient, **{"editkit.token_count": None})  # a cache older still: runs recompute it anyway

    adopted, refused = store.adopt_older()

    assert sorted(adopted) == sorted([older.path, store.eigh_path(identity())])
    assert [path for path, _ in refused] == [damaged.path] and "failed its checksum" in refused[0][1]
    assert current.path.read_bytes() == untouched  # a file with a header checksum is not rewritten
    again = store.load(identity())
    assert again is not None and again.count == 20 and torch.equal(again.total, older.total)
    assert [c.path for c in store.candidates()] == sorted([older.path, current.path])
    cached = store.load_eigh(again)  # the eigenbasis is kept too, not recomputed
    assert cached is not None and torch.equal(cached[0], values) and torch.equal(cached[1], vectors)
    with pytest.raises(CorruptStatisticsError, match="failed its checksum"):
        store.read(damaged.path)
    assert store.adopt_older() == ([], refused)  # adopted files are not rewritten a second time


def test_checkpoint_token_count_is_covered(tmp_path):
    store = StatsStore(root=tmp_path)
    path = store.save_checkpoint([identity()], {"h.1.mlp": gram()}, position=3, tokens=9, layout={"panels": 8})
    assert store.load_checkpoint([identity()]).tokens == 9
    with safe_open(str(path), framework="pt") as fh:
        state = json.loads(fh.metadata()["editkit.checkpoint"])
    rewrite_header(path, **{"editkit.checkpoint": json.dumps({**state, "tokens": 99})})
    with pytest.raises(CorruptStatisticsError, match=r"header checksum.*start the collection over"):
        store.load_checkpoint([identity()])


def test_eigh_cache_is_bound_to_the_token_count_and_old_caches_are_recomputed(tmp_path):
    store = StatsStore(root=tmp_path)
    stats = store.save(identity(), gram(), 20, {})
    values, _ = cached_eigendecomposition(stats, store)
    assert store.load_eigh(stats) is not None
    recounted = store.save(identity(), gram(), 40, {})  # same tensors, another count: another C0
    assert store.load_eigh(recounted) is None
    torch.testing.assert_close(cached_eigendecomposition(recounted, store)[0], values / 2)
    assert store.load_eigh(recounted) is not None
    rewrite_header(store.eigh_path(identity()), **{"editkit.token_count": "20"})  # made to pass for the other
    with pytest.raises(CorruptStatisticsError, match=r"eigendecomposition cache.*header checksum"):
        store.load_eigh(stats)
    rewrite_header(store.eigh_path(identity()), **{HEADER_KEY: None})  # a cache from an older editkit
    assert store.load_eigh(stats) is None and store.load_eigh(recounted) is None


# ---------------------------------------------------------------------------------------------- full disk


def test_write_atomic_names_the_file_and_leaves_nothing_partial(tmp_path):
    target = tmp_path / "out" / "result.json"
    write_json_atomic(target, {"old": True})

    def full(path: Path) -> None:
        path.write_text("half")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError) as caught:
        write_atomic(target, full)
    error = caught.value
    assert isinstance(error, EditkitError) and isinstance(error, OSError) and error.exit_code == 1
    assert error.errno == errno.ENOSPC and error.strerror == "No space left on device"
    assert str(error).startswith(f"cannot write {target}: No space left on device") and "\n" not in str(error)
    assert json.loads(target.read_text()) == {"old": True} and no_temp_files(tmp_path)


def test_a_rust_writer_reporting_an_os_error_is_a_write_error(tmp_path):
    class SafetensorError(Exception):
        pass

    def full(path: Path) -> None:
        raise SafetensorError(f'Error while serializing: I/O error: No space left on device (os error 28) at path '
                              f'"{path.parent}/.tmpAbC"')

    with pytest.raises(WriteError, match=r"cannot write .*x\.safetensors: No space left on device"):
        write_atomic(tmp_path / "x.safetensors", full)
    assert list(tmp_path.iterdir()) == []


def test_other_failures_pass_through_unchanged(tmp_path):
    def missing_input(path: Path) -> None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", "/some/input")

    with pytest.raises(FileNotFoundError) as caught:
        write_atomic(tmp_path / "x.json", missing_input)
    assert not isinstance(caught.value, WriteError)
    with pytest.raises(ValueError):
        write_atomic(tmp_path / "x.json", lambda p: (_ for _ in ()).throw(ValueError("bad")))
    assert list(tmp_path.iterdir()) == []


def test_a_failing_rename_is_a_write_error(tmp_path, monkeypatch):
    def replace(src, dst):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr("editkit.helpers.atomic.os.replace", replace)
    with pytest.raises(WriteError, match=r"cannot write .*x\.json: Input/output error"):
        write_json_atomic(tmp_path / "x.json", {})
    assert list(tmp_path.iterdir()) == []


def test_a_directory_fill_names_the_file_that_failed(tmp_path):
    def fill(tmp: Path) -> None:
        (tmp / "a.txt").write_text("x")
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "weights.bin"))

    with pytest.raises(WriteError, match=re.escape(f"cannot write {tmp_path / 'built' / 'weights.bin'}: No space")):
        write_directory_atomic(tmp_path / "built", fill)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("style", ["oserror", "safetensors"])
def test_a_full_stats_dir_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, style):
    store = StatsStore(root=tmp_path)
    old = store.save(identity(), gram(), 20, {})

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        if style == "oserror":
            raise OSError(errno.ENOSPC, "No space left on device")
        raise RuntimeError(f"I/O error: No space left on device (os error 28) at path \"{filename}\"")

    monkeypatch.setattr("editkit.keystats.store.save_file", full)
    with pytest.raises(WriteError) as caught:
        store.save(identity(), gram(seed=1), 30, {})
    assert str(caught.value).startswith(f"cannot write {old.path}: No space left on device")
    assert no_temp_files(tmp_path)
    loaded = store.load(identity())
    assert loaded is not None and loaded.count == 20 and torch.equal(loaded.total, old.total)


def test_a_failed_checkpoint_keeps_the_previous_one_to_resume_from(tmp_path, monkeypatch):
    store = StatsStore(root=tmp_path)
    store.save_checkpoint([identity()], {"h.1.mlp": gram()}, position=3, tokens=9, layout={})
    real = save_file
    monkeypatch.setattr("editkit.keystats.store.save_file",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left on device")))
    with pytest.raises(WriteError, match=r"cannot write .*\.partial.*: No space left on device"):
        store.save_checkpoint([identity()], {"h.1.mlp": gram(seed=2)}, position=6, tokens=18, layout={})
    monkeypatch.setattr("editkit.keystats.store.save_file", real)  # space freed
    resumed = store.load_checkpoint([identity()])
    assert resumed is not None and (resumed.position, resumed.tokens) == (3, 9) and no_temp_files(tmp_path)


def test_a_journal_batch_that_hits_a_full_disk_is_written_again_on_resume(tmp_path, monkeypatch):
    from editkit.helpers import atomic
    from editkit.job.journal import Journal

    journal = Journal(tmp_path / "run")
    journal.write_manifest({"requests": [], "config": {"batch_size": 1}})
    real = atomic.write_safetensors_atomic

    def full_on_state(path, tensors, metadata=None):
        if Path(path).name == "state.safetensors":
            return write_atomic(path, lambda p: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
        return real(path, tensors, metadata)

    monkeypatch.setattr("editkit.job.journal.write_safetensors_atomic", full_on_state)
    batch = dict(index=0, requests=[{"id": 1}], deltas={"w": torch.ones(2)}, state={"cp": torch.zeros(2)})
    with pytest.raises(WriteError, match=r"state\.safetensors: No space left"):
        journal.append(**batch)
    assert journal.entries() == [] and no_temp_files(tmp_path)
    monkeypatch.setattr("editkit.job.journal.write_safetensors_atomic", real)  # space freed: --resume
    journal.append(**batch)
    assert [e.index for e in journal.entries()] == [0]


# ---------------------------------------------------------------------------------------------- progress


def test_progress_of_a_corpus_smaller_than_the_budget_ends_at_its_end():
    out = io.StringIO()
    now = [0.0]
    lines = Lines("C0 layer 1", max_tokens=200_000, samples=1000, stream=out, clock=lambda: now[0])
    for documents in range(100, 1001, 100):  # 1,000 documents of 100 tokens: half the budget
        now[0] += 10
        lines.update(tokens=documents * 100, documents=documents)
    lines.close()
    text = out.getvalue().splitlines()
    assert text[0] == "C0 layer 1: collecting (up to 200,000 tokens of 1,000 documents)"
    assert text[1] == "C0 layer 1: 10,000 tokens, 100 docs (10%), elapsed 0:00:10, ETA 0:01:30"
    assert text[-2] == "C0 layer 1: 90,000 tokens, 900 docs (90%), elapsed 0:01:30, ETA 0:00:10"
    assert text[-1] == "C0 layer 1: done, 100,000 tokens, 1,000 docs in 0:01:40"


def test_progress_without_a_known_total_shows_no_percentage():
    out = io.StringIO()
    now = [0.0]
    lines = Lines("C0 layer 1", max_tokens=None, samples=None, stream=out, clock=lambda: now[0], interval=1)
    now[0] += 5
    lines.update(tokens=500, documents=5)
    assert out.getvalue().splitlines()[1] == "C0 layer 1: 500 tokens, 5 docs, elapsed 0:00:05"


def test_resumed_progress_estimates_from_this_process():
    out = io.StringIO()
    now = [0.0]
    lines = Lines("C0", max_tokens=200_000, samples=1000, start_tokens=50_000, start_documents=500, stream=out,
                  clock=lambda: now[0])
    now[0] += 10
    lines.update(tokens=60_000, documents=600)
    assert out.getvalue().splitlines()[1] == "C0: 60,000 tokens, 600 docs (60%), elapsed 0:00:10, ETA 0:00:40"


def test_the_bar_total_follows_the_corpus_size():
    class Recorder:
        def __init__(self) -> None:
            self.calls: list[dict] = []

        def update(self, task, **fields):
            self.calls.append(fields)

    recorder = Recorder()
    bar = _Rich(recorder, 0, 200_000, 1000)
    bar.update(tokens=25_000, documents=250)
    bar.update(tokens=100_000, documents=1000)
    assert [c["total"] for c in recorder.calls] == [100_000, 100_000]
    assert recorder.calls[-1]["fraction"] == 1.0
    unknown = Recorder()
    _Rich(unknown, 0, None, None).update(tokens=10, documents=1)
    assert unknown.calls[0]["total"] is None and unknown.calls[0]["fraction"] is None


def test_corpus_size(tmp_path):
    (tmp_path / "a.txt").write_text("one\n\n  \ntwo\nthree\n")
    (tmp_path / "b.jsonl").write_text('{"text": "x"}\n\n{"text": "y"}\n')
    (tmp_path / "c.json").write_text(json.dumps({"data": [{"text": "x"}] * 4}))
    assert CorpusSpec.parse(str(tmp_path / "a.txt")).size() == 3
    assert CorpusSpec.parse(str(tmp_path / "a.txt"), samples=2).size() == 2
    assert CorpusSpec.parse(str(tmp_path / "b.jsonl")).size() == 2
    assert CorpusSpec.parse(str(tmp_path / "c.json")).size() == 4
    assert CorpusSpec.parse("hf:some/dataset").size() is None
    assert CorpusSpec.parse("hf:some/dataset", samples=50).size() == 50
    assert CorpusSpec.parse(str(tmp_path / "missing.txt")).size() is None  # reading it says what is wrong
