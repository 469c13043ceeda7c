"""The run journal through the command line: a failed first batch, export of interrupted runs, progress in logs,
and the output paths of run --resume / apply / export / revert (subprocess calls)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_harness import assert_clean_failure, editkit, fast_run_args, snapshot, tiny_setup

from editkit.job.journal import Journal
from editkit.job.manifest import file_sha256


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("journal-cli")


@pytest.fixture(scope="module")
def paths(root) -> dict[str, Path]:
    return tiny_setup(root)


@pytest.fixture(scope="module")
def finished(root, paths):
    """A complete two-batch run with progress on (stderr is a pipe here, not a terminal)."""
    out = root / "finished"
    proc = editkit(*[a for a in fast_run_args(paths, out) if a != "--quiet"], cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out, proc


def interrupted_copy(finished_dir: Path, target: Path, *, keep: int, how: str) -> Path:
    """A copy of the finished run as an interrupted run left it: only the first ``keep`` batches complete
    (``how``: "entry" removes the later batches' entry.json, "dir" their directories) and no results."""
    shutil.copytree(finished_dir, target)
    for directory in sorted((target / "journal").glob("batch-*"))[keep:]:
        if how == "entry":
            (directory / "entry.json").unlink()
        else:
            shutil.rmtree(directory)
    for name in ("result.json", "deltas.safetensors"):
        (target / name).unlink()
    return target


# --------------------------------------------------------------------------- a failed first batch


def test_a_failed_first_batch_leaves_nothing_to_lock_the_output_directory(root, paths):
    """No --corpus for the null space: the first batch fails; the corrected command must not find a
    journal in its way (a fresh run over a journal without a complete batch: the next test)."""
    out = root / "failed-first"
    args = fast_run_args(paths, out)
    without_corpus = [a for i, a in enumerate(args) if a != "--corpus" and args[i - 1] != "--corpus"]
    proc = editkit(*without_corpus, cwd=root)
    assert_clean_failure(proc, mentions=("key statistics",))
    assert snapshot(out) == {}  # nothing committed before the first batch was complete
    assert "Loading weights" not in proc.stderr  # --quiet also silences transformers' loading bar


def test_a_journal_without_a_complete_batch_is_not_resumed_but_replaced(root, paths, finished):
    """What a run that failed (or was killed) before its first batch was complete left behind."""
    out = root / "no-complete-batch"
    (out / "journal" / "batch-00000").mkdir(parents=True)
    shutil.copy(finished[0] / "journal" / "manifest.json", out / "journal" / "manifest.json")
    shutil.copy(finished[0] / "journal" / "batch-00000" / "requests.json", out / "journal" / "batch-00000")
    before = snapshot(out)

    proc = editkit("run", "--resume", out, "--quiet", cwd=root)
    assert_clean_failure(proc, mentions=("nothing to resume", str(out), "--out"))
    assert snapshot(out) == before

    proc = editkit(*fast_run_args(paths, out), cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [e.index for e in Journal(out).entries()] == [0, 1] and (out / "result.json").exists()


def test_a_journal_with_a_complete_batch_is_still_not_overwritten(root, paths, finished):
    out = interrupted_copy(finished[0], root / "one-complete", keep=1, how="dir")
    before = snapshot(out)
    proc = editkit(*fast_run_args(paths, out), cwd=root)
    assert_clean_failure(proc, mentions=("already holds a run journal", f"--resume {out}"))
    assert "Loading weights" not in proc.stderr and snapshot(out) == before  # refused before loading the model


# --------------------------------------------------------------------------- exporting an interrupted run


@pytest.mark.parametrize(("command", "how"), [("export", "entry"), ("apply", "dir")])
def test_an_incomplete_run_is_not_exported_or_applied_silently(root, paths, finished, command, how):
    run = interrupted_copy(finished[0], root / f"interrupted-{command}", keep=1, how=how)
    assert Journal(run).manifest()["batches"] == 2  # the journal knows how many batches the run has
    target = root / f"{command}-of-interrupted"
    before = snapshot(root)
    proc = editkit(command, "--model", paths["model"], "--edits", run, "--out", target, cwd=root)
    assert_clean_failure(proc, mentions=("incomplete", "1 of its 2 batches", "--upto", "--allow-partial", str(run)))
    assert snapshot(root) == before and not target.exists()


def test_allow_partial_exports_the_complete_batches_and_says_so(root, paths, finished):
    run = interrupted_copy(finished[0], root / "interrupted-allowed", keep=1, how="entry")
    target = root / "partial-export"
    proc = editkit("export", "--model", paths["model"], "--edits", run, "--out", target, "--allow-partial", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "applied 1 of the run's 2 batch(es)" in proc.stdout
    assert (target / "config.json").exists()


# --------------------------------------------------------------------------- progress in a log


def test_progress_is_reported_in_plain_lines_when_stderr_is_not_a_terminal(finished):
    err = finished[1].stderr
    for line in ("loading model", "evaluate (pre) ...", "evaluate (pre): done in", "edit batches: 1/2, elapsed",
                 "edit batches: 2/2, elapsed", "evaluate (post): done in", "C0 layer 1: done"):
        assert line in err, f"{line!r} not in\n{err}"
    assert "ETA 0:" in err
    assert "Loading weights" not in err  # transformers' bar is replaced by the plain line
    assert "\r" not in err  # no terminal redraws in a log file


# --------------------------------------------------------------------------- batch counts and result.json


@pytest.mark.parametrize(("command", "option", "value", "expected"),
                         [("revert", "--last", "0", ">= 1"), ("apply", "--upto", "-1", ">= 0")])
def test_an_impossible_batch_count_is_named_as_such(root, paths, finished, command, option, value, expected):
    proc = editkit(command, "--model", paths["model"], "--edits", finished[0], option, value,
                   "--out", root / f"never-{command}", cwd=root)
    assert_clean_failure(proc, mentions=(f"{option} {value}", expected))
    assert "journal holds" not in proc.stderr
    assert not (root / f"never-{command}").exists()


def test_result_json_agrees_with_the_journal_and_names_its_hashes(paths, finished):
    out = finished[0]
    result = json.loads((out / "result.json").read_text())
    journaled = [r["case_id"] for b in Journal(out).entries() for r in b.requests]
    given = [r["case_id"] for r in json.loads(paths["requests"].read_text())]
    assert [r["case_id"] for r in result["requests"]] == journaled == given  # ints stay ints everywhere

    assert result["final"] is None  # nullspace changes nothing at the end of the run: no pseudo-batch

    manifest = Journal(out).manifest()
    files = result["manifest"]["model"]["weight_files_sha256"]
    assert files == {"model.safetensors": file_sha256(paths["model"] / "model.safetensors")}
    assert len(manifest["edited_modules_sha256"]) == 64 and manifest["edited_modules"]

    def values(node, key):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from ([json.dumps(v)] if k == key else values(v, key))
        elif isinstance(node, list):
            for v in node:
                yield from values(v, key)

    # one name, one meaning: every "weights_sha256" (the key statistics' hash of all parameters) agrees
    assert len(set(values([result, manifest], "weights_sha256"))) == 1


# --------------------------------------------------------------------------- output paths


def test_resume_given_a_file_names_it(root, paths):
    proc = editkit("run", "--resume", paths["requests"], "--quiet", cwd=root)
    assert_clean_failure(proc, mentions=(f"--resume {paths['requests']}", "not a directory"))


@pytest.mark.parametrize(("command", "where"), [("apply", "file"), ("export", "proc"), ("revert", "file")])
def test_an_unusable_out_is_refused_before_the_model_is_loaded(root, paths, finished, command, where):
    out = paths["corpus"] if where == "file" else Path("/proc/editkit-out")
    if where == "proc" and not Path("/proc").is_dir():
        pytest.skip("no /proc")
    model = paths["model"]
    before = snapshot(root)
    proc = editkit(command, "--model", model, "--edits", finished[0], "--out", out, cwd=root)
    assert_clean_failure(proc, mentions=(f"--out {out}",))
    assert "Loading weights" not in proc.stderr and snapshot(root) == before
