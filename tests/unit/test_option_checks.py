"""Option values checked before any work: --layers, --device, --out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from editkit.config import parse_layers
from editkit.errors import UsageError
from editkit.job.devices import check_device
from editkit.job.outputs import check_output_dir


@pytest.mark.parametrize(("text", "layers"), [
    ("1,2", (1, 2)), ("13-17", (13, 14, 15, 16, 17)), ("1,3-4", (1, 3, 4)), (" 4 , 2", (4, 2)), ("0", (0,)),
    ("5-5", (5,)),
])
def test_parse_layers(text, layers):
    assert parse_layers(text) == layers


@pytest.mark.parametrize(("text", "says"), [
    ("", "no layer given (omit --layers for the editor's default layers)"),
    (" , ", "no layer given"),
    ("-1", "'-1' is not a layer index or range; expected e.g. 1,2 or 13-17 (layers count from 0)"),
    ("1,-2", "(layers count from 0)"),
    ("1,1", "layer 1 is given twice"),
    ("1-3,2", "layer 2 is given twice"),
    ("3-1", "the range '3-1' is empty; write 1-3"),
    ("1,,2", "'' is not a layer index"),
    ("a", "'a' is not a layer index"),
    ("1.5", "'1.5' is not a layer index"),
])
def test_parse_layers_rejects_with_the_option_named(text, says):
    with pytest.raises(UsageError) as info:
        parse_layers(text)
    assert str(info.value).startswith(f"--layers {text!r}: ") and says in str(info.value)


@pytest.mark.parametrize("text", ["gpu0", "", "cuda:x", "CPU", "cuda:-1"])
def test_check_device_rejects_what_torch_cannot_parse(text):
    with pytest.raises(UsageError, match=rf"^--device {text!r}: not a torch device; expected e.g. cpu, cuda"):
        check_device(text)


def test_check_device_accepts_cpu_and_refuses_the_meta_device():
    assert check_device("cpu") == "cpu" and check_device("cpu:0") == "cpu:0"
    with pytest.raises(UsageError, match="meta device holds no weights"):
        check_device("meta")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_check_device_refuses_cuda_where_there_is_none():
    with pytest.raises(UsageError, match=r"^--device 'cuda': no cuda device is available on this machine"):
        check_device("cuda")


def test_check_device_refuses_an_index_beyond_the_devices():
    message = r"this machine has \d+ cuda device\(s\)" if torch.cuda.is_available() else "no cuda device is available"
    with pytest.raises(UsageError, match=rf"^--device 'cuda:99': {message}"):
        check_device("cuda:99")


def nothing_in(path: Path) -> bool:
    return not any(path.iterdir())


def test_check_output_dir_accepts_new_and_existing_directories_and_leaves_nothing(tmp_path):
    assert check_output_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert check_output_dir(tmp_path) == tmp_path
    assert nothing_in(tmp_path)


def test_check_output_dir_refuses_a_file_and_a_path_under_a_file(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match=rf"^--out {tmp_path}/file: this is a file, not a directory"):
        check_output_dir(tmp_path / "file")
    with pytest.raises(UsageError, match=rf"^--out {tmp_path}/file/sub: {tmp_path}/file is a file"):
        check_output_dir(tmp_path / "file" / "sub", "--out")
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc")
def test_check_output_dir_refuses_proc():
    with pytest.raises(UsageError, match=r"^--out /proc/editkit-out: cannot create anything in /proc \("):
        check_output_dir("/proc/editkit-out")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only directory")
def test_check_output_dir_refuses_a_read_only_directory(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        with pytest.raises(UsageError, match=rf"cannot create anything in {locked} \(Permission denied\)"):
            check_output_dir(locked / "run")
        with pytest.raises(UsageError, match="Permission denied"):
            check_output_dir(locked)
    finally:
        locked.chmod(0o755)
