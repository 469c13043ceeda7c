"""Atomic writes leave files and directories with the ordinary, umask-derived mode."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from editkit.helpers.atomic import write_atomic, write_directory_atomic, write_json_atomic, write_safetensors_atomic


@pytest.fixture(params=[0o022, 0o027], ids=["umask022", "umask027"])
def umask(request) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_get_the_mode_open_would_give(tmp_path, umask):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = write_json_atomic(tmp_path / "result.json", {"a": 1})
    assert _mode(written) == _mode(plain) == 0o666 & ~umask
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left


def test_safetensors_files_too(tmp_path, umask):
    """safetensors' writer replaces the file it is given with a private one: the mode is restored."""
    import torch

    written = write_safetensors_atomic(tmp_path / "deltas.safetensors", {"w": torch.zeros(2, 2)})
    assert _mode(written) == 0o666 & ~umask


def test_a_writer_that_replaces_the_file_gets_the_ordinary_mode(tmp_path, umask):
    def replace_privately(path: Path) -> None:
        path.unlink()
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))

    assert _mode(write_atomic(tmp_path / "x.bin", replace_privately)) == 0o666 & ~umask


def test_replacing_a_file_keeps_the_ordinary_mode_and_the_content(tmp_path, umask):
    target = tmp_path / "out.bin"
    write_atomic(target, lambda p: p.write_bytes(b"one"))
    write_atomic(target, lambda p: p.write_bytes(b"two"))
    assert target.read_bytes() == b"two"
    assert _mode(target) == 0o666 & ~umask


def test_a_failed_write_leaves_nothing(tmp_path):
    def fail(path: Path) -> None:
        path.write_text("half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        write_atomic(tmp_path / "x.json", fail)
    assert list(tmp_path.iterdir()) == []


def test_directories_get_the_mode_mkdir_would_give(tmp_path, umask):
    plain = tmp_path / "plain"
    plain.mkdir()
    installed = tmp_path / "built"
    write_directory_atomic(installed, lambda d: (d / "f.txt").write_text("x"))
    assert _mode(installed) == _mode(plain) == 0o777 & ~umask
    assert (installed / "f.txt").read_text() == "x"
