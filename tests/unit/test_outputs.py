"""Output locations are checked before any work, with a usage error naming the path."""

from __future__ import annotations

from pathlib import Path

import pytest

from editkit.errors import UsageError
from editkit.job.outputs import check_new_directory, check_run_directory


def test_a_new_directory_may_be_absent_or_empty(tmp_path):
    check_new_directory(tmp_path / "a" / "b", "--out")
    (tmp_path / "empty").mkdir()
    check_new_directory(tmp_path / "empty", "--out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]  # the write check leaves nothing behind


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.write_text("x"), "exists and is not a directory"),
    (lambda p: (p.mkdir(), (p / "f").write_text("x")), "exists and is not empty"),
])
def test_a_new_directory_refuses_files_and_non_empty_directories(tmp_path, make, message):
    target = tmp_path / "out"
    make(target)
    with pytest.raises(UsageError, match=message) as caught:
        check_new_directory(target, "--out")
    assert f"--out {target}" in str(caught.value)


def test_a_new_directory_under_a_file_or_in_an_unwritable_place(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match=r"file is a file, so no directory can be made under it"):
        check_new_directory(tmp_path / "file" / "out", "--out")
    if Path("/proc").is_dir():
        with pytest.raises(UsageError, match="cannot create anything in /proc"):
            check_new_directory(Path("/proc/editkit-out"), "--out")


def test_a_run_directory_must_be_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="not a directory"):
        check_run_directory(tmp_path / "file", "--resume")
    with pytest.raises(UsageError, match="no such directory"):
        check_run_directory(tmp_path / "missing", "--resume")
    check_run_directory(tmp_path, "--resume")
