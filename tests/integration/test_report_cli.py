"""`editkit report` and `editkit run --report` through the command line: exit codes, what is written, and
what a real run records for the report (update norms, the C0 spectrum, replayed batches)."""

from __future__ import annotations

import json
import subprocess
import sys

from cli_harness import assert_clean_failure, editkit, fast_run_args, snapshot, tiny_setup

from editkit.testing.results import synthetic_result, write_run


def test_report_of_two_runs_with_json(tmp_path):
    a = write_run(tmp_path / "alphaedit", synthetic_result(constraints=("nullspace",)))
    b = write_run(tmp_path / "memit", synthetic_result(eval_every=0))
    proc = editkit("report", "--json", a, b, "--out", tmp_path / "cmp.html", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    html = (tmp_path / "cmp.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and "alphaedit" in html and "memit" in html
    data = json.loads((tmp_path / "cmp.json").read_text())
    assert [r["label"] for r in data["runs"]] == ["alphaedit", "memit"]
    assert f"wrote {tmp_path / 'cmp.html'} and {tmp_path / 'cmp.json'}" in proc.stdout


def test_a_directory_that_is_not_a_run_exits_2_naming_it_and_writes_nothing(tmp_path):
    good = write_run(tmp_path / "good", synthetic_result())
    (tmp_path / "notarun").mkdir()
    (tmp_path / "notarun" / "notes.txt").write_text("hello")
    before = snapshot(tmp_path)
    proc = editkit("report", good, tmp_path / "notarun", "--out", tmp_path / "r.html", "--json", cwd=tmp_path)
    assert_clean_failure(proc, code=2, mentions=(f"{tmp_path / 'notarun'}: not an editkit run directory",))
    assert snapshot(tmp_path) == before


def test_a_truncated_result_json_exits_2_and_writes_nothing(tmp_path):
    run = write_run(tmp_path / "cut", synthetic_result())
    text = (run / "result.json").read_text()
    (run / "result.json").write_text(text[:1000])
    before = snapshot(tmp_path)
    proc = editkit("report", run, "--out", tmp_path / "r.html", cwd=tmp_path)
    assert_clean_failure(proc, code=2, mentions=(f"{run / 'result.json'}: not valid JSON",))
    assert snapshot(tmp_path) == before


def test_a_missing_directory_and_an_out_that_is_a_directory(tmp_path):
    proc = editkit("report", tmp_path / "absent", cwd=tmp_path)
    assert_clean_failure(proc, code=2, mentions=(f"{tmp_path / 'absent'}: no such run directory",))
    run = write_run(tmp_path / "run", synthetic_result())
    proc = editkit("report", run, "--out", tmp_path, cwd=tmp_path)
    assert_clean_failure(proc, code=2, mentions=(f"{tmp_path} is a directory",))
    (tmp_path / "file").write_text("")
    proc = editkit("report", run, "--out", tmp_path / "file" / "r.html", cwd=tmp_path)
    assert_clean_failure(proc, code=2, mentions=(f"cannot write {tmp_path / 'file' / 'r.html'}",))


def test_help_and_report_import_neither_torch_nor_matplotlib_until_drawing(tmp_path):
    run = write_run(tmp_path / "run", synthetic_result())
    code = (
        "import sys, io, contextlib\n"
        "from editkit.cli.main import main\n"
        "for argv in (['--help'], ['report', '--help']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, 'imported on --help'\n"
        f"assert main(['report', {str(run)!r}, '--out', {str(tmp_path / 'r.html')!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'editkit report imported torch'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_run_with_report_records_what_the_report_needs(tmp_path):
    paths = tiny_setup(tmp_path)
    out = tmp_path / "run"
    proc = editkit(*fast_run_args(paths, out), "--report", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {out / 'report.html'}" in proc.stdout
    html = (out / "report.html").read_text()
    assert html.count("<figure>") >= 5  # spectrum, kept key energy, update norm, v*, invariants, timings, memory
    result = json.loads((out / "result.json").read_text())
    first = result["batches"][0]["layers"]
    for notes in first.values():
        assert notes["update.norm"] > 0 and notes["update.relative"] > 0
        spectrum = notes["nullspace.spectrum"]
        assert spectrum["threshold"] == 1e-3  # the run's --set nullspace.threshold
        assert len(spectrum["index"]) == len(spectrum["eigenvalues"]) <= 128
        assert spectrum["null_space"] == notes["nullspace.dim"]
        assert spectrum["eigenvalues"] == sorted(spectrum["eigenvalues"])
    assert all("nullspace.spectrum" not in n for b in result["batches"][1:] for n in b["layers"].values())
    assert not any(b.get("replayed") for b in result["batches"])
