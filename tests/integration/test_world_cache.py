"""The world-model cache: atomic builds, checksum verification, rebuilds, HF loading.

Every build here uses :meth:`BuildConfig.tiny` (a 2-layer model trained for 2 epochs on a
40-subject world), so the whole module takes seconds.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from editkit_world import (
    BuildConfig,
    CorruptCacheError,
    build_cached,
    load_world,
    verify_cache,
    world_cache_dir,
    world_info,
)
from editkit_world.cache import MANIFEST_FILE
from editkit_world.config import FORMAT_VERSION

TINY = BuildConfig.tiny()


@pytest.fixture
def cache_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("EDITKIT_CACHE", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One finished tiny build, copied by tests that need a valid directory."""
    directory = tmp_path_factory.mktemp("built") / TINY.tag()
    build_cached(directory, TINY, progress=False)
    return directory


def _copy(built: Path, cache_root: Path) -> Path:
    target = world_cache_dir(TINY)
    assert target.is_relative_to(cache_root)
    target.parent.mkdir(parents=True)
    shutil.copytree(built, target)
    return target


def _no_build(*args, **kwargs):
    raise AssertionError("unexpected rebuild")


def test_cache_location(cache_root: Path) -> None:
    assert world_cache_dir(TINY) == cache_root / "world" / TINY.tag()
    assert TINY.tag() != BuildConfig().tag()
    assert TINY.tag().startswith(f"v{FORMAT_VERSION}-s0-")


def test_build_loads_through_auto_classes(built: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    manifest = verify_cache(built)
    assert set(manifest.files) >= {"model.safetensors", "config.json", "tokenizer.json", "build_report.json"}
    model = AutoModelForCausalLM.from_pretrained(built)
    tokenizer = AutoTokenizer.from_pretrained(built)
    assert model.config.n_layer == TINY.model.n_layer and model.config.n_embd == TINY.model.n_embd
    assert tokenizer.pad_token is not None and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert set(tokenizer("Hello there")) == {"input_ids", "attention_mask"}
    report = manifest.report
    assert 0.0 <= report["train_recall"] <= 1.0 and report["epochs"] == TINY.train.max_epochs


def test_load_world_uses_a_valid_cache(built: Path, cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _copy(built, cache_root)
    monkeypatch.setattr("editkit_world.train.build_world_model", _no_build)
    model, tokenizer, world, manifest = load_world(config=TINY, progress=False)
    assert world.fingerprint() == manifest.world_fingerprint
    assert len(world.subjects) == TINY.world.n_subjects
    assert model.training is False and tokenizer.eos_token_id is not None
    info = world_info(config=TINY)
    assert info["valid"] and info["size_bytes"] > 0 and info["tag"] == TINY.tag()


def test_corrupt_file_is_detected_and_rebuilt(built: Path, cache_root: Path) -> None:
    target = _copy(built, cache_root)
    with (target / "model.safetensors").open("r+b") as fh:
        fh.seek(200)
        fh.write(b"\x00\x01\x02\x03")
    with pytest.raises(CorruptCacheError, match="checksum"):
        verify_cache(target)
    assert not world_info(config=TINY)["valid"]
    with pytest.raises(CorruptCacheError):
        load_world(config=TINY, build_if_missing=False)
    with pytest.warns(RuntimeWarning, match="checksum mismatch; rebuilding"):
        loaded = load_world(config=TINY, progress=False)
    verify_cache(target)
    assert loaded.manifest.files["model.safetensors"] == verify_cache(built).files["model.safetensors"]
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # nothing left beside it


def test_missing_manifest_never_loads(built: Path, cache_root: Path) -> None:
    target = _copy(built, cache_root)
    (target / MANIFEST_FILE).unlink()
    with pytest.raises(CorruptCacheError, match="not a complete build"):
        load_world(config=TINY, build_if_missing=False)


def test_interrupted_build_leaves_nothing_loadable(cache_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import editkit_world.train as train

    real = train.build_world_model

    def interrupted(out_dir, **kwargs):
        Path(out_dir, "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "build_world_model", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_world(config=TINY, progress=False)
    parent = world_cache_dir(TINY).parent
    assert list(parent.iterdir()) == []  # neither a final nor a temporary directory
    with pytest.raises(FileNotFoundError):
        load_world(config=TINY, build_if_missing=False)
    monkeypatch.setattr(train, "build_world_model", real)


def test_temp_dir_of_a_killed_build_is_ignored_and_cleaned(built: Path, cache_root: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    target = world_cache_dir(TINY)
    target.parent.mkdir(parents=True)
    leftover = target.parent / f".{target.name}.tmp-{dead.stdout.strip()}-abc123"
    shutil.copytree(built, leftover)  # even a complete build under a temporary name
    with pytest.raises(FileNotFoundError):
        load_world(config=TINY, build_if_missing=False)
    load_world(config=TINY, progress=False)
    assert not leftover.exists()
    verify_cache(target)


def test_build_is_deterministic(built: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_cached(again, TINY, progress=False)
    first, second = verify_cache(built), verify_cache(again)
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert first.files[name] == second.files[name], name
    assert first.world_fingerprint == second.world_fingerprint
    assert json.loads((built / "build_report.json").read_text())["config"] == second.config
