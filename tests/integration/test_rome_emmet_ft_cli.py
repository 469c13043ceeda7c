"""`editkit run --editor rome|emmet|ft` through the command line: each runs with the null space and reports
ΔP = Δ holding on what it wrote; ROME asked for several layers exits 2 naming the option, and writes nothing."""

from __future__ import annotations

import json

import pytest
from cli_harness import assert_clean_failure, editkit, fast_run_args, snapshot, tiny_setup


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return tiny_setup(tmp_path_factory.mktemp("editors"))


@pytest.mark.parametrize(("editor", "extra"), [("rome", ["--layers", "1", "--set", "clamp_norm_factor=50"]),
                                               ("emmet", []), ("ft", ["--set", "lr=1e-2"])])
def test_each_editor_runs_with_the_null_space_and_reports_its_invariant(paths, tmp_path, editor, extra):
    out = tmp_path / "out"
    args = fast_run_args(paths, out)
    if editor == "ft":  # no v*: FT has no v_steps
        at = args.index("v_steps=4")
        del args[at - 1 : at + 1]
        extra = [*extra, "--set", "steps=4"]
    proc = editkit(*args, "--editor", editor, *extra, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["run"]["editor"] == editor
    for batch in result["batches"]:
        for layer, notes in batch["layers"].items():
            assert notes["nullspace.invariant"]["holds"], (layer, notes)
            assert "nullspace.reprojected" not in notes


def test_rome_with_several_layers_exits_2_naming_the_option(paths, tmp_path):
    out = tmp_path / "out"
    before = snapshot(tmp_path)
    proc = editkit(*fast_run_args(paths, out), "--editor", "rome", "--layers", "1,2", cwd=tmp_path)
    assert_clean_failure(proc, mentions=("ROME edits exactly one layer", "[1, 2]"))
    assert not out.exists()
    assert {k: v for k, v in snapshot(tmp_path).items() if not k.startswith(".cache")} == \
        {k: v for k, v in before.items() if not k.startswith(".cache")}
