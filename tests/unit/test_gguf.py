"""A ``.gguf`` file is converted once into the cache and then loaded as a plain directory.

Runs on a tiny Llama written with the ``gguf`` package's writer (editkit.testing.gguf), so the
round trip can be checked exactly: the converted weights must be the original ones.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from editkit import ModelSpec, hookimpl
from editkit.errors import InputError
from editkit.job.manifest import file_sha256
from editkit.keystats.identity import model_identity
from editkit.modelsource.gguf import MARKER, converted_directory, inspect_gguf, materialise_gguf
from editkit.modelsource.resolve import load_model, resolve_model
from editkit.plugins import PluginHost
from editkit.testing.gguf import write_tiny_gguf

pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    model, tokenizer = write_tiny_gguf(path)
    return path, model, tokenizer


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("EDITKIT_CACHE", str(root))
    return root


def no_models() -> PluginHost:
    return PluginHost(entry_points=False)


def cache_entries(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "models").iterdir()) if (root / "models").exists() else []


def test_conversion_gives_back_the_original_weights_and_tokenizer(tiny_gguf, cache):
    path, original, tokenizer = tiny_gguf
    directory = materialise_gguf(path, progress=False)
    assert directory == converted_directory(file_sha256(path), cache)
    assert directory.name == f"gguf-{file_sha256(path)[:16]}"
    model, converted_tokenizer = load_model(str(directory), catalog=no_models().catalog)
    expected, got = original.state_dict(), model.state_dict()
    assert set(expected) == set(got)
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # still tied
    assert model.config.tie_word_embeddings and not hasattr(model.config, "quantization_config")
    text = "The mother tongue of Danielle Darrieux is French."
    assert converted_tokenizer(text)["input_ids"] == tokenizer(text)["input_ids"]
    marker = (directory / MARKER).read_text()
    assert file_sha256(path) in marker


def test_an_untied_model_converts_too(tmp_path, cache):
    original, _ = write_tiny_gguf(tmp_path / "untied.gguf", tied=False)
    model, _ = load_model(str(tmp_path / "untied.gguf"), catalog=no_models().catalog)
    assert not model.config.tie_word_embeddings
    assert torch.equal(model.lm_head.weight, original.lm_head.weight)
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def test_the_second_load_reads_the_cache_without_converting(tiny_gguf, cache, monkeypatch, capsys):
    path = tiny_gguf[0]
    first = materialise_gguf(path, progress=False)
    stamp = (first / "model.safetensors").stat().st_mtime_ns

    def fail(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr("editkit.modelsource.gguf.convert_gguf", fail)
    capsys.readouterr()
    assert materialise_gguf(path, progress=False) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert "converting" not in capsys.readouterr().err


def test_the_identity_is_that_of_the_converted_weights_and_stable(tiny_gguf, cache, tmp_path):
    path = tiny_gguf[0]
    catalog = no_models().catalog
    first = resolve_model(str(path), catalog=catalog)
    moved = tmp_path / "elsewhere" / "renamed.gguf"
    moved.parent.mkdir()
    shutil.copy(path, moved)
    second = resolve_model(str(moved), catalog=catalog)  # keyed by content, not by path
    assert first.location == second.location and first.gguf_sha256 == second.gguf_sha256 == file_sha256(path)
    identities = []
    for source in (first, second):
        model, tokenizer = load_model(source)
        identities.append(model_identity(model, tokenizer, source.location))
    assert identities[0] == identities[1]
    assert identities[0]["name"] == first.location


def test_conversion_prints_plain_stage_lines_when_not_a_terminal(tiny_gguf, cache, capsys):
    materialise_gguf(tiny_gguf[0], progress=False)
    err = capsys.readouterr().err
    assert "converting tiny.gguf" in err and "converted tiny.gguf in" in err
    assert "\r" not in err  # no progress-bar redraws in a log


def test_a_registered_gguf_model_is_converted_and_loaded(tiny_gguf, cache):
    path, original, _ = tiny_gguf

    class Plugin:
        @hookimpl
        def editkit_register_models(self, register):
            register(ModelSpec(name="tiny-gguf", summary="", licence="MIT", source="test", size_bytes=1,
                               install="pip install nothing", installed=lambda: True, path=lambda: path))

    catalog = PluginHost(entry_points=False, plugins=[("p", Plugin())]).catalog
    source = resolve_model("tiny-gguf", catalog=catalog)
    assert source.kind == "registered" and Path(source.location).parent == cache / "models"
    model, _ = load_model(source)
    assert torch.equal(model.model.embed_tokens.weight, original.model.embed_tokens.weight)


def damaged(data: bytes) -> dict[str, bytes]:
    return {
        "truncated in the tensors": data[: len(data) // 2],
        "last bytes missing": data[:-10],
        "truncated in the header": data[:40],
        "not GGUF": b"XXXX" + data[4:],
        "empty": b"",
        "garbage metadata": data[:24] + bytes(range(256)) * 4 + data[24 + 1024:],
    }


@pytest.mark.parametrize("case", list(damaged(b"x" * 2048)))
def test_a_damaged_gguf_is_named_and_nothing_is_cached(case, tiny_gguf, cache, tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(damaged(tiny_gguf[0].read_bytes())[case])
    with pytest.raises(InputError) as info:
        resolve_model(str(bad), catalog=no_models().catalog)
    assert str(bad) in str(info.value)
    assert cache_entries(cache) == []


def test_an_architecture_transformers_cannot_load_is_named_and_nothing_is_cached(tmp_path, cache):
    import gguf
    import numpy as np

    path = tmp_path / "odd.gguf"
    writer = gguf.GGUFWriter(str(path), "nosucharch")
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert inspect_gguf(path).architecture == "nosucharch"
    with pytest.raises(InputError, match=r"odd\.gguf: transformers cannot load this GGUF model"):
        materialise_gguf(path, progress=False)
    assert cache_entries(cache) == []


def test_a_conversion_that_fails_part_way_leaves_nothing_in_the_cache(tiny_gguf, cache, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # e.g. Ctrl-C while saving

    monkeypatch.setattr("editkit.modelsource.gguf._plain_copy", crash)
    with pytest.raises(KeyboardInterrupt):
        materialise_gguf(tiny_gguf[0], progress=False)
    assert cache_entries(cache) == []


def test_inspect_plan_reads_a_gguf_header_without_converting(tiny_gguf, cache, capsys):
    import json

    from editkit.cli.main import main

    assert main(["inspect", "--model", str(tiny_gguf[0]), "--plan", "--layers", "0,1", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["n_layers"] == 2 and info["plan"]["d_in"] == 64 and info["plan"]["layers"] == [0, 1]
    assert cache_entries(cache) == []


def test_the_conversion_cache_format_is_stable():
    """Converted models are reused only under the same format string: changing it (e.g. when the module moves)
    would silently convert every user's models again."""
    from editkit.modelsource.gguf import FORMAT

    assert FORMAT == "editkit.gguf/1"
