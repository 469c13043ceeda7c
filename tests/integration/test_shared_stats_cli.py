"""Shared statistics through the command line: ``editkit stats`` then ``editkit run`` share one statistics store
and reuse it, an unusable ``--stats-dir`` stops both before any work, and the run that lacks key statistics
asks for exactly what it needs. Each ``editkit`` call is a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

try:  # rootdir-style test modules (no __init__.py): the sibling module is importable by name
    from cli_harness import assert_clean_failure, editkit, fast_run_args, snapshot, tiny_setup
except ImportError:  # pragma: no cover - if tests/ become packages
    from .cli_harness import assert_clean_failure, editkit, fast_run_args, snapshot, tiny_setup

DEFAULT_STORE = {"EDITKIT_STATS_DIR": ""}  # the default store, $EDITKIT_CACHE/stats, whatever the caller set


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return tiny_setup(tmp_path_factory.mktemp("tiny"))


def statistics_files(store: Path) -> dict[str, tuple[int, int]]:
    """The store's statistics files (not eigendecomposition caches), with size and mtime."""
    return {name: stat for name, stat in snapshot(store).items() if not name.endswith(".eigh.safetensors")}


def key_statistics(out: Path) -> dict:
    (manifest,) = [json.loads((out / "result.json").read_text())["manifest"]["key_statistics"]]
    return manifest


def run_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("key statistics:")]


def test_run_reuses_what_stats_stored_in_the_default_store(paths, tmp_path):
    stats = editkit("stats", "--model", paths["model"], "--corpus", paths["corpus"], "--layers", "1",
                    "--no-progress", "--json", cwd=tmp_path, env=DEFAULT_STORE)
    assert stats.returncode == 0, stats.stderr
    (row,) = json.loads(stats.stdout)
    store = tmp_path / ".cache" / "stats"
    assert Path(row["path"]).is_relative_to(store)  # not ./data/stats: the store `editkit run` reads
    before = statistics_files(store)

    run = editkit(*fast_run_args(paths, tmp_path / "out"), "--layers", "1", cwd=tmp_path, env=DEFAULT_STORE)
    assert run.returncode == 0, run.stderr
    (line,) = run_lines(run)
    assert "layer 1 reused from" in line and "nothing recomputed" in line, run.stderr
    assert statistics_files(store) == before  # nothing recomputed, no second copy stored
    (used,) = key_statistics(tmp_path / "out").values()
    assert used["source"] == "store" and used["path"] == row["path"] and used["tokens"] == row["tokens"]

    # a run that asks for fewer tokens than stored reuses the larger collection and records its real size
    smaller = editkit(*fast_run_args(paths, tmp_path / "out2"), "--layers", "1", "--stats-max-tokens", "100",
                      cwd=tmp_path, env=DEFAULT_STORE)
    assert smaller.returncode == 0, smaller.stderr
    assert "reused" in run_lines(smaller)[0] and statistics_files(store) == before
    (used,) = key_statistics(tmp_path / "out2").values()
    assert used["tokens"] == row["tokens"] > 100 and used["identity"]["max_tokens"] == 200_000


def test_a_mismatch_is_said_with_the_differing_field(paths, tmp_path):
    stats = editkit("stats", "--model", paths["model"], "--corpus", paths["corpus"], "--layers", "1",
                    "--max-tokens", "50", "--no-progress", cwd=tmp_path, env=DEFAULT_STORE)
    assert stats.returncode == 0, stats.stderr
    run = editkit(*fast_run_args(paths, tmp_path / "out"), "--layers", "1", cwd=tmp_path, env=DEFAULT_STORE)
    assert run.returncode == 0, run.stderr
    (line,) = run_lines(run)
    assert "computing C0 of layer 1" in line, run.stderr
    assert "differ in tokens (stored 50 of a 50-token budget, this run needs 200,000)" in line, line
    (used,) = key_statistics(tmp_path / "out").values()
    assert used["source"] == "collected" and used["tokens"] > 50


@pytest.mark.parametrize("where", ["file", "proc"])
@pytest.mark.parametrize("command", ["run", "stats"])
def test_an_unusable_stats_dir_stops_before_any_work(paths, tmp_path, command, where):
    if where == "file":
        stats_dir = tmp_path / "stats.txt"
        stats_dir.write_text("not a folder\n")
    else:
        stats_dir = Path("/proc/editkit-stats")  # cannot be created, not even by root
        if not Path("/proc").is_dir():
            pytest.skip("no /proc on this system")
    argv = (fast_run_args(paths, tmp_path / "out") if command == "run" else
            ["stats", "--model", str(paths["model"]), "--corpus", str(paths["corpus"]), "--layers", "1",
             "--no-progress"])
    before = snapshot(tmp_path)
    proc = editkit(*argv, "--stats-dir", stats_dir, cwd=tmp_path)
    assert_clean_failure(proc, code=2, mentions=(f"key statistics store {stats_dir}", "--stats-dir"))
    assert "computing C0" not in proc.stderr and "Loading weights" not in proc.stderr  # before any work
    assert snapshot(tmp_path) == before


def test_show_of_a_file_is_a_usage_error(tmp_path):
    (tmp_path / "stats.txt").write_text("x")
    proc = editkit("stats", "--show", "--stats-dir", tmp_path / "stats.txt", cwd=tmp_path)
    assert_clean_failure(proc, code=2, mentions=(f"{tmp_path / 'stats.txt'} is not a directory",))


def test_without_a_corpus_the_error_asks_for_the_corpus_alone(paths, tmp_path):
    argv = fast_run_args(paths, tmp_path / "out")
    at = argv.index("--corpus")
    del argv[at : at + 2]
    proc = editkit(*argv, cwd=tmp_path)
    assert_clean_failure(proc, code=2, mentions=("needs key statistics (C0)", "pass --corpus"))
    assert "--stats-dir and --corpus" not in proc.stderr
