"""``editkit stats`` robustness, in process on a tiny random GPT-2:

* ``--device`` is checked (exit 2, one line) before anything is loaded, as ``run`` and ``trace`` do;
* a full disk on ``--stats-dir`` or ``--out`` stops with one line naming the file (exit 1), leaves no
  partial file, and once space is freed the collection resumes from its checkpoint;
* a stored file whose token count was edited is refused and never reused; one written by an older editkit is
  computed again (it cannot be verified, but nothing says it was tampered with);
* C0 progress of a corpus smaller than the token budget ends at the corpus's end, not at its share of the budget.

A full disk is simulated by monkeypatching the safetensors writer; no disk is filled.
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from editkit.cli.main import main as cli
from editkit.keystats import CorpusSpec, KeyStatistics
from editkit.keystats.store import HEADER_KEY, StatsStore
from editkit.layout import resolve_layout

try:  # rootdir-style test modules (no __init__.py): the sibling module is importable by name
    from test_keystats import load, model_dir, one_thread, synthetic_texts, write_jsonl
except ImportError:  # pragma: no cover - if tests/ become packages
    from .test_keystats import load, model_dir, one_thread, synthetic_texts, write_jsonl

__all__ = ["model_dir", "one_thread"]  # fixtures shared with the key statistics tests


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", synthetic_texts(120, seed=5))


def stats(model_dir: Path, corpus: Path, stats_dir: Path, *extra: str) -> list[str]:
    return ["stats", "--model", str(model_dir), "--corpus", str(corpus), "--stats-dir", str(stats_dir),
            "--layers", "1", "--max-length", "16", "--no-progress", *extra]


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("editkit stats: error:")]


def no_temp_files(root: Path) -> bool:
    return [p for p in root.rglob("*") if ".tmp" in p.name] == []


def rewrite_header(path: Path, **fields: str | None) -> None:
    with safe_open(str(path), framework="pt") as fh:
        metadata = dict(fh.metadata() or {})
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    for key, value in fields.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    save_file(tensors, str(path), metadata)


# ---------------------------------------------------------------------------------------------- --device


@pytest.mark.parametrize(("device", "message"), [
    ("meta", "the meta device holds no weights"),
    ("bogus", "not a torch device"),
    ("cuda", "no cuda device is available"),
    ("cuda:7", "cuda"),
])
def test_a_bad_device_stops_before_anything_is_loaded(model_dir, corpus, tmp_path, capsys, monkeypatch, device,
                                                      message):
    if device.startswith("cuda") and torch.cuda.is_available() and device == "cuda":
        pytest.skip("this machine has CUDA")

    def no_load(*args, **kwargs):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr("editkit.modelsource.resolve.load_model", no_load)
    monkeypatch.setattr("editkit.modelsource.resolve.resolve_model", no_load)
    stats_dir = tmp_path / "stats"
    for argv in (stats(model_dir, corpus, stats_dir, "--device", device),
                 ["stats", "export", "--model", str(model_dir), "--layers", "1", "--out", str(tmp_path / "c0.st"),
                  "--stats-dir", str(stats_dir), "--device", device]):
        rc = cli(argv)
        err = capsys.readouterr().err
        assert rc == 2, err
        assert len(err.strip().splitlines()) == 1 and f"--device {device!r}" in err and message in err
    assert not stats_dir.exists() and not (tmp_path / "c0.st").exists()


# ---------------------------------------------------------------------------------------------- full disk


def test_a_full_stats_dir_names_the_file_and_resumes_once_space_is_freed(model_dir, corpus, tmp_path, capsys,
                                                                         monkeypatch):
    stats_dir = tmp_path / "stats"
    argv = stats(model_dir, corpus, stats_dir, "--max-tokens", "all", "--batch-tokens", "64",
                 "--checkpoint-every", "0")

    def full_for_results(tensors, filename, metadata=None):
        if ".partial" in str(filename):  # checkpoints still fit
            return save_file(tensors, filename, metadata)
        Path(filename).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("editkit.keystats.store.save_file", full_for_results)
    assert cli(argv) == 1
    err = capsys.readouterr().err
    [line] = error_lines(err)
    assert "Traceback" not in err
    assert re.fullmatch(rf"editkit stats: error: cannot write {re.escape(str(stats_dir))}/\S+/"
                        r"transformer\.h\.1\.mlp\.c_proj--\w+\.safetensors: No space left on device; free some "
                        r"space and run the command again", line), line
    assert no_temp_files(stats_dir) and list(StatsStore(root=stats_dir).entries()) == []
    assert list(stats_dir.rglob(".partial/*.safetensors"))  # the checkpoint survived

    monkeypatch.setattr("editkit.keystats.store.save_file", save_file)  # space freed
    assert cli(argv) == 0
    out = capsys.readouterr().out
    assert "resumed at document 120" in out
    [path] = StatsStore(root=stats_dir).entries()
    resumed = StatsStore(root=stats_dir).read(path)
    assert resumed is not None and resumed.info["resumed_from"] == 120
    fresh = KeyStatistics(model=load(model_dir)[0], tokenizer=load(model_dir)[1],
                          layout=resolve_layout(load(model_dir)[0]), corpus=CorpusSpec.parse(str(corpus)),
                          max_length=16, max_tokens=None, model_id=str(model_dir))
    site = fresh.layout.site(1)
    assert fresh.token_count(site) == resumed.count
    torch.testing.assert_close(fresh.stored(site).total, resumed.total, rtol=1e-5, atol=1e-4)


def test_a_full_disk_on_export_out_names_the_bundle_and_leaves_nothing(model_dir, corpus, tmp_path, capsys,
                                                                       monkeypatch):
    stats_dir = tmp_path / "stats"
    assert cli(stats(model_dir, corpus, stats_dir, "--max-tokens", "500")) == 0
    out = tmp_path / "shared" / "c0.safetensors"
    out.parent.mkdir()

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a bundle")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("editkit.keystats.bundle.save_file", full)
    capsys.readouterr()
    rc = cli(["stats", "export", "--model", str(model_dir), "--layers", "1", "--stats-dir", str(stats_dir),
              "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 1, err
    assert error_lines(err) == [f"editkit stats: error: cannot write {out}: No space left on device; free some space "
                                "and run the command again"]
    assert list(out.parent.iterdir()) == []


# ---------------------------------------------------------------------------------------------- integrity


def test_an_edited_token_count_is_refused_and_never_reused(model_dir, corpus, tmp_path, capsys):
    stats_dir = tmp_path / "stats"
    argv = stats(model_dir, corpus, stats_dir, "--max-tokens", "all", "--show")
    assert cli(argv) == 0
    [path] = StatsStore(root=stats_dir).entries()
    good = path.read_bytes()
    count = StatsStore(root=stats_dir).read(path).count  # type: ignore[union-attr]
    rewrite_header(path, **{"editkit.token_count": str(count * 3)})
    path.with_suffix(".eigh.safetensors").unlink()
    capsys.readouterr()
    for command in (argv, ["stats", "--show", "--stats-dir", str(stats_dir)]):
        assert cli(command) == 1
        [line] = error_lines(capsys.readouterr().err)
        assert str(path) in line and "header checksum" in line and "delete it to recompute" in line

    # a smaller budget would reuse the whole-corpus file: the tampered one is left out, and said so
    said: list[str] = []
    model, tokenizer = load(model_dir)
    layout = resolve_layout(model)
    smaller = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=CorpusSpec.parse(str(corpus)),
                            stats_dir=stats_dir, max_length=16, max_tokens=100, model_id=str(model_dir),
                            report=said.append)
    site = layout.site(1)
    assert smaller.provenance(site)["source"] == "collected" and smaller.token_count(site) == 100
    assert any("left out, never reused" in line and str(path) in line for line in said), said

    path.write_bytes(good)
    rewrite_header(path, **{HEADER_KEY: None})  # as an older editkit wrote it: not tampered, only unverifiable
    assert cli(argv) == 0  # computed again and overwritten, and said so
    told = capsys.readouterr().err
    assert str(path) in told and "written by an older editkit" in told and "computing them again" in told
    assert StatsStore(root=stats_dir).load(json.loads(json.dumps(StatsStore(root=stats_dir).read(path).identity)))
    assert cli(argv) == 0 and "older editkit" not in capsys.readouterr().err  # the new file verifies

    # adopted instead: `editkit stats adopt` keeps an older file, and the next run reuses it
    rewrite_header(path, **{HEADER_KEY: None})
    assert cli(["stats", "adopt", "--stats-dir", str(stats_dir)]) == 0
    out = capsys.readouterr()
    assert f"adopted {path}" in out.err and "1 file(s) from an older editkit adopted" in out.out
    assert cli(argv) == 0
    told = capsys.readouterr().err
    assert "older editkit" not in told and "computing" not in told
    assert cli(["stats", "adopt", "--model", "x", "--stats-dir", str(stats_dir)]) == 2
    assert "takes only --stats-dir" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- progress


def test_progress_of_a_corpus_smaller_than_the_budget_reaches_its_end(model_dir, corpus, tmp_path, capsys):
    model, tokenizer = load(model_dir)
    layout = resolve_layout(model)
    keystats = KeyStatistics(model=model, tokenizer=tokenizer, layout=layout, corpus=CorpusSpec.parse(str(corpus)),
                             max_length=16, max_tokens=200_000, batch_tokens=64, progress=True)
    keystats.prepare([layout.site(1)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("C0 layer 1")]
    assert lines[0] == "C0 layer 1: collecting (up to 200,000 tokens of 120 documents)"
    shown = [int(m.group(1)) for line in lines if (m := re.search(r"\((\d+)%\), elapsed", line))]
    assert shown and max(shown) >= 50, lines  # against the budget alone it would stay near 1%
    assert lines[-1].startswith("C0 layer 1: done, ")
