"""CorpusSpec: the ``--corpus`` syntax, document order and selection, identity, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from editkit.cli.stats import parse_layers
from editkit.errors import InputError, UsageError
from editkit.keystats import CorpusSpec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a/b.txt", dict(kind="text", path="a/b.txt")),
        ("c.json", dict(kind="json", path="c.json", text_field="text")),
        ("c.jsonl", dict(kind="json", path="c.jsonl", text_field="text")),
        ("dir/c.JSONL:body", dict(kind="json", path="dir/c.JSONL", text_field="body")),
        ("hf:wikimedia/wikipedia", dict(kind="hf", name="wikimedia/wikipedia", config=None, split="train")),
        ("hf:wikimedia/wikipedia:20231101.en", dict(kind="hf", name="wikimedia/wikipedia", config="20231101.en")),
        ("hf:wikitext:wikitext-103-raw-v1:validation",
         dict(kind="hf", config="wikitext-103-raw-v1", split="validation")),
        ("demo", dict(kind="registered", name="demo")),
    ],
)
def test_parse(text, expected):
    spec = CorpusSpec.parse(text)
    for key, value in expected.items():
        assert getattr(spec, key) == value


@pytest.mark.parametrize("text", ["", "hf:", "hf:a:b:c:d", "notes.csv", "Some Name", "x.json:"])
def test_parse_rejects(text):
    with pytest.raises(UsageError):
        CorpusSpec.parse(text)


def test_selection_is_validated():
    with pytest.raises(UsageError):
        CorpusSpec.parse("a.txt", samples=-1)
    assert CorpusSpec.parse("a.jsonl", samples=3, seed=1, text_field="body").text_field == "body"


def _jsonl(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(texts)))
    return path


def test_documents_order_samples_seed_and_start(tmp_path):
    texts = [f"doc {i}" for i in range(20)]
    path = _jsonl(tmp_path / "c.jsonl", texts)
    assert list(CorpusSpec.parse(str(path)).documents()) == texts
    assert list(CorpusSpec.parse(str(path), samples=5).documents()) == texts[:5]
    assert list(CorpusSpec.parse(str(path), samples=5).documents(start=3)) == texts[3:5]
    assert list(CorpusSpec.parse(str(path), samples=5).documents(start=9)) == []
    shuffled = list(CorpusSpec.parse(str(path), seed=4).documents())
    assert sorted(shuffled) == sorted(texts) and shuffled != texts
    assert list(CorpusSpec.parse(str(path), seed=4).documents()) == shuffled  # deterministic
    assert list(CorpusSpec.parse(str(path), seed=4, samples=6).documents(start=2)) == shuffled[2:6]


def test_text_json_and_record_forms(tmp_path):
    (tmp_path / "a.txt").write_text("first line\n\n   \nsecond line\r\n")
    assert list(CorpusSpec.parse(str(tmp_path / "a.txt")).documents()) == ["first line", "second line"]
    (tmp_path / "b.json").write_text(json.dumps([{"body": "x"}, "bare string", {"body": "y"}]))
    assert list(CorpusSpec.parse(f"{tmp_path / 'b.json'}:body").documents()) == ["x", "bare string", "y"]
    (tmp_path / "c.json").write_text(json.dumps({"data": [{"text": "z"}]}))
    assert list(CorpusSpec.parse(str(tmp_path / "c.json")).documents()) == ["z"]


def test_bad_records_are_input_errors(tmp_path):
    path = _jsonl(tmp_path / "c.jsonl", ["a", "b"])
    with pytest.raises(InputError, match=r"line 1 has no text field 'body' \(fields: n, text\)"):
        CorpusSpec.parse(f"{path}:body").check()
    with pytest.raises(InputError, match="is int, not text"):
        list(CorpusSpec.parse(f"{path}:n").documents())
    (tmp_path / "bad.jsonl").write_text('{"text": "a"}\nnot json\n')
    with pytest.raises(InputError, match="line 2 is not valid JSON"):
        list(CorpusSpec.parse(str(tmp_path / "bad.jsonl")).documents())
    (tmp_path / "obj.json").write_text('{"a": 1}')
    with pytest.raises(InputError, match="expected a JSON list"):
        list(CorpusSpec.parse(str(tmp_path / "obj.json")).documents())
    with pytest.raises(InputError, match="no such file"):
        CorpusSpec.parse(str(tmp_path / "missing.txt")).check()
    with pytest.raises(InputError, match="cannot be read"):
        CorpusSpec.parse(str(tmp_path / "missing.txt")).identity()
    (tmp_path / "l1.txt").write_bytes(b"caf\xe9\n")
    with pytest.raises(InputError, match="cannot be read"):
        CorpusSpec.parse(str(tmp_path / "l1.txt")).check()
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="is empty"):
        CorpusSpec.parse(str(tmp_path / "empty.jsonl")).check()


def test_identity_is_content_and_selection(tmp_path):
    a = _jsonl(tmp_path / "a.jsonl", ["x", "y"])
    b = _jsonl(tmp_path / "b.jsonl", ["x", "y"])
    c = _jsonl(tmp_path / "c.jsonl", ["x", "y!"])
    ident = CorpusSpec.parse(str(a)).identity()
    assert ident == CorpusSpec.parse(str(b)).identity()
    assert ident != CorpusSpec.parse(str(c)).identity()
    assert ident != CorpusSpec.parse(str(a), samples=1).identity()
    assert ident != CorpusSpec.parse(str(a), seed=0).identity()
    assert ident != CorpusSpec.parse(f"{a}:n").identity()
    hf = CorpusSpec.parse("hf:wikimedia/wikipedia:20231101.en", samples=100).identity()
    assert hf["name"] == "wikimedia/wikipedia" and hf["config"] == "20231101.en" and hf["samples"] == 100
    json.dumps(ident)


def test_describe():
    described = CorpusSpec.parse("hf:w/w:c", samples=3, seed=1).describe()
    assert described == "hf:w/w:c:train (shuffled with seed 1, first 3 documents)"


@pytest.mark.parametrize(("text", "layers"), [("1,2", [1, 2]), ("1-3", [1, 2, 3]), ("5, 1-2,2", [1, 2, 5]), ("0", [0])])
def test_parse_layers(text, layers):
    assert parse_layers(text) == layers


@pytest.mark.parametrize("text", ["", "a", "3-1", "1,,2", "-1", "1-"])
def test_parse_layers_rejects(text):
    with pytest.raises(UsageError):
        parse_layers(text)
