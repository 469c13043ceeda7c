"""Commands never write over what they read, and never write a model the journal does not vouch for (subprocess
calls on a tiny run):

* ``editkit report --out`` refuses its inputs and what a run owns (result.json, deltas.safetensors, journal/...);
  ``apply/export/revert --out`` refuse the input model and the run's own files and journal;
* ``apply`` checks the journal's hash of the weights after each batch (as ``revert`` checks its start) and
  refuses non-finite deltas, naming the batch and module, before anything is written;
* a model of other shapes is refused by apply (with or without ``--force``) and revert in one line naming the
  module and both shapes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from cli_harness import assert_clean_failure, editkit, fast_run_args, snapshot, tiny_setup
from safetensors.torch import load_file, save_file

from editkit.job.journal import Journal
from editkit.job.manifest import file_sha256
from editkit.testing.tiny import tiny_model, tiny_tokenizer


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("robust-artifacts")


@pytest.fixture(scope="module")
def paths(root) -> dict[str, Path]:
    return tiny_setup(root)


@pytest.fixture(scope="module")
def run(root, paths) -> Path:
    """A complete run of two batches of two."""
    out = root / "run"
    proc = editkit(*fast_run_args(paths, out), cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if ": error: " in line]


def _one_line_error(proc, *mentions: str) -> str:
    assert_clean_failure(proc, mentions=mentions)
    lines = _error_lines(proc)
    assert len(lines) == 1, proc.stderr
    return lines[0]


def tampered(run: Path, target: Path, batch: int, change) -> Path:
    """A copy of ``run`` whose batch ``batch`` delta is ``change(tensor)`` for its first module, with the
    journal's recorded sha256 of the file updated to match (a checksum no longer catches it)."""
    shutil.copytree(run, target)
    directory = target / "journal" / f"batch-{batch:05d}"
    deltas = load_file(str(directory / "delta.safetensors"))
    name = sorted(deltas)[0]
    deltas[name] = change(deltas[name].clone())
    save_file(deltas, str(directory / "delta.safetensors"))
    entry = json.loads((directory / "entry.json").read_text())
    entry["sha256"]["delta.safetensors"] = file_sha256(directory / "delta.safetensors")
    (directory / "entry.json").write_text(json.dumps(entry))
    assert [e.index for e in Journal(target).entries()] == [0, 1]  # the journal still verifies
    return target


def with_nan(t: torch.Tensor) -> torch.Tensor:
    t.view(-1)[3] = float("nan")
    return t


# --------------------------------------------------------------------------- report --out


@pytest.mark.parametrize(("out", "json_too", "named"), [
    ("result.json", False, "result.json"),
    ("deltas.safetensors", False, "deltas.safetensors"),
    ("journal/manifest.json", False, "journal"),
    ("journal/page.html", False, "journal"),
    ("result.html", True, "result.json"),  # --json writes result.json beside it
    (".", False, "the run directory"),
])
def test_report_never_writes_over_its_input_or_the_runs_files(root, run, out, json_too, named):
    before = snapshot(run)
    target = run / out
    proc = editkit("report", run, "--out", target, *(["--json"] if json_too else []), cwd=root)
    line = _one_line_error(proc, named)
    assert str(run.resolve()) in line
    assert snapshot(run) == before  # nothing written, the run still readable
    assert editkit("report", run, "--out", root / "check.html", cwd=root).returncode == 0


def test_report_refuses_another_runs_result_json_too(root, run, tmp_path):
    other = shutil.copytree(run, tmp_path / "other")
    before = snapshot(other)
    proc = editkit("report", run, "--out", other / "result.json", cwd=root)
    _one_line_error(proc, f"result.json of the run in {other.resolve()}")
    assert snapshot(other) == before


def test_report_html_in_the_run_directory_is_fine(root, run):
    """Where `run --report` writes the run's own page."""
    proc = editkit("report", run, "--out", run / "report.html", "--json", cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert (run / "report.html").is_file() and (run / "report.json").is_file()
    assert json.loads((run / "result.json").read_text())["summary"]  # intact
    (run / "report.html").unlink()
    (run / "report.json").unlink()


# --------------------------------------------------------------------------- apply/export/revert --out


@pytest.mark.parametrize("command", ["apply", "export", "revert"])
@pytest.mark.parametrize(("where", "named"), [
    ("journal/batch-00002", "journal"),
    ("journal/exported", "journal"),
    ("result.json", "result.json"),
    ("model", "input model"),
])
def test_edits_never_write_over_the_model_or_the_run(root, paths, run, command, where, named):
    out = paths["model"] if where == "model" else run / where
    before, model_before = snapshot(run), snapshot(paths["model"])
    proc = editkit(command, "--model", paths["model"], "--edits", run, "--out", out, cwd=root)
    _one_line_error(proc, f"--out {out}", named)
    assert "Loading weights" not in proc.stderr  # refused before the model was loaded
    assert snapshot(run) == before and snapshot(paths["model"]) == model_before
    assert [e.index for e in Journal(run).entries()] == [0, 1]


# --------------------------------------------------------------------------- apply checks what revert checks


def test_apply_refuses_a_non_finite_delta_naming_batch_and_module(root, paths, run):
    copy = tampered(run, root / "nan", 1, with_nan)
    module = sorted(load_file(str(copy / "journal" / "batch-00001" / "delta.safetensors")))[0]
    out = root / "nan-apply"
    proc = editkit("apply", "--model", paths["model"], "--edits", copy, "--out", out, cwd=root)
    _one_line_error(proc, "batch 1", module, "non-finite")
    assert not out.exists()


def test_apply_checks_the_hash_after_each_batch(root, paths, run):
    """A finite change with its checksum updated: caught by the journal's hash of the weights after the batch."""
    copy = tampered(run, root / "scaled", 0, lambda t: t * 1.5)
    out = root / "scaled-apply"
    proc = editkit("apply", "--model", paths["model"], "--edits", copy, "--out", out, cwd=root)
    _one_line_error(proc, "batch-00000", "after batch 0", "edited_modules_sha256_after")
    assert not out.exists()


def test_revert_checks_each_undone_batch(root, paths, run):
    exported = root / "exported"  # the clean journal passes every check of apply (export) and revert
    proc = editkit("export", "--model", paths["model"], "--edits", run, "--out", exported, cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = editkit("revert", "--model", exported, "--edits", run, "--last", "2", "--out", root / "clean-revert",
                   cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    copy = tampered(run, root / "scaled-first", 0, lambda t: t * 1.5)  # the last batch's hash still matches
    out = root / "reverted"
    proc = editkit("revert", "--model", exported, "--edits", copy, "--last", "2", "--out", out, cwd=root)
    _one_line_error(proc, "after undoing batch 0", "edited_modules_sha256")
    assert not out.exists()
    nan = tampered(run, root / "nan-first", 0, lambda t: t.fill_(float("inf")))
    proc = editkit("revert", "--model", exported, "--edits", nan, "--last", "2", "--out", out, cwd=root)
    _one_line_error(proc, "batch 0", "non-finite")
    assert not out.exists()


# --------------------------------------------------------------------------- a model of other shapes


@pytest.fixture(scope="module")
def narrow(root) -> Path:
    """A model like the run's but with MLPs of 128, not 256."""
    path = root / "narrow"
    tok = tiny_tokenizer()
    tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=64, d_mlp=128).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.mark.parametrize(("command", "force"), [("apply", False), ("apply", True), ("revert", True)])
def test_a_model_of_other_shapes_is_named_module_and_shapes(root, run, narrow, command, force):
    module = Journal(run).manifest()["edited_modules"][0]
    out = root / f"narrow-{command}-{force}"
    proc = editkit(command, "--model", narrow, "--edits", run, "--out", out, *(["--force"] if force else []),
                   cwd=root)
    line = _one_line_error(proc, module, "128 × 64 in the model but 256 × 64 in the journal")
    assert "differ from the journal's base" not in line and "RuntimeError" not in proc.stderr
    assert not out.exists()
