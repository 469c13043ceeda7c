"""benchmarks/seq_table.py: the sequential table is built from run directories as `editkit run` writes them
(result.json, or a running run's journal entries), with the general-capability columns under their real
metric names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "seq_table.py"


@pytest.fixture(scope="module")
def seq_table(script):
    return script(SCRIPT)


PRE = {"efficacy": 20.0, "generalisation": 10.0, "specificity": 80.0, "retention": 100.0, "retention_probes": 9.0,
       "general_sst2_f1": 70.0, "general_rte_f1": 50.0, "general_cola_mcc": 0.0, "perplexity": 120.0,
       "perplexity_tokens": 50.0}


def _batch(size: int, seconds: float, kept: float | None = None, growth: float | None = None) -> dict:
    notes = {"vstar.share_below_0.7": 1.0, "vstar.median_final_loss": 0.25}
    if growth is not None:
        notes |= {"weight.growth": growth}
    if kept is not None:
        notes |= {"nullspace.energy_share": 0.3, "nullspace.kept_key_energy": kept,
                  "nullspace.invariant": {"value": 2e-7 if kept < 0.9 else 0.5, "holds": kept < 0.9}}
    return {"size": size, "seconds": seconds, "layers": {"model.layers.4.mlp.down_proj": notes}}


def _run(root: Path, name: str, post: dict, batches: list[dict], curve: list[dict]) -> Path:
    run = root / name
    run.mkdir()
    (run / "result.json").write_text(json.dumps({"metrics": {"pre": PRE, "post": post}, "batches": batches,
                                                 "curve": curve}))
    return run


def test_table_rows_columns_and_curve(seq_table, tmp_path, capsys, monkeypatch):
    post = {**PRE, "efficacy": 90.0, "retention": 80.0, "general_sst2_f1": 60.0, "perplexity": 130.0}
    a = _run(tmp_path, "memit", post, [_batch(2, 10.0, growth=1.0123), _batch(2, 6.0, growth=1.25)],
             [{"batches": 1, "edits": 2, "efficacy": 95.0, "retention": 90.0}])
    b = _run(tmp_path, "memit+nullspace", {**post, "efficacy": 70.0}, [_batch(4, 8.0, kept=0.5)], [])
    running = tmp_path / "rect"  # no result.json: its journal (manifest, one entry per batch with its points)
    for index, point in enumerate(([], [{"batches": 2, "edits": 6, "efficacy": 55.0}])):
        (running / "journal" / f"batch-0000{index}").mkdir(parents=True)
        entry = {"report": _batch(3, 9.0), "curve": point}
        (running / "journal" / f"batch-0000{index}" / "entry.json").write_text(json.dumps(entry))
    (running / "journal" / "manifest.json").write_text(json.dumps({"pre_metrics": PRE}))
    (tmp_path / "not-started").mkdir()
    monkeypatch.setattr("sys.argv", ["seq_table", str(a), str(b), str(running), str(tmp_path / "not-started"),
                                     str(tmp_path / "x.log"), "--curve"])
    assert seq_table.main() == 0
    lines = capsys.readouterr().out.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    # edit metrics, then the general tasks in the paper's order under their metric names, then perplexity
    assert header[1:9] == ["efficacy", "generalisation", "specificity", "retention", "general_sst2_f1",
                           "general_rte_f1", "general_cola_mcc", "perplexity"]
    rows = {r.split("|")[1].strip(): [c.strip() for c in r.strip("|").split("|")[1:]] for r in lines[2:6]}
    assert rows["unedited"][:8] == ["20.0", "10.0", "80.0", "100.0", "70.0", "50.0", "0.0", "120.0"]
    assert rows["memit"][:10] == ["90.0", "10.0", "80.0", "80.0", "60.0", "50.0", "0.0", "130.0", "4", "4.00"]
    assert rows["memit+nullspace"][0] == "70.0"
    assert rows["memit+nullspace"][-4:] == ["0.3000", "0.500", "max 2.0e-07, holds", "-"]
    assert rows["memit"][-2:] == ["-", "model.layers.4.mlp.down_proj:1.250"]  # ‖W_n‖/‖W_0‖ after the last batch
    assert rows["rect (running; metrics at 6 edits)"][:9] == ["55.0"] + ["-"] * 7 + ["6"]
    assert rows["rect (running; metrics at 6 edits)"][9] == "3.00"
    assert lines[6] == ""  # four rows: the directory with neither a result nor a journal is left out
    curve = "\n".join(lines[6:])
    assert "memit: metrics after each evaluated batch" in curve
    assert "2 edits: efficacy 95.0" in curve and "0 edits: efficacy 20.0" in curve
    assert "retention 90.0; ‖W_n‖/‖W_0‖ model.layers.4.mlp.down_proj:1.012" in curve  # after batch 1
    assert "rect: metrics after each evaluated batch\n      0 edits: efficacy 20.0" in curve
    assert "6 edits: efficacy 55.0" in curve


def test_no_finished_run_is_an_error(seq_table, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr("sys.argv", ["seq_table", str(tmp_path / "empty")])
    assert seq_table.main() == 1
    assert "no run (result.json or journal)" in capsys.readouterr().out


def test_a_broken_invariant_is_reported(seq_table, tmp_path, capsys, monkeypatch):
    run = _run(tmp_path, "rect+nullspace", PRE, [_batch(2, 1.0, kept=0.5), _batch(2, 1.0, kept=0.95)], [])
    monkeypatch.setattr("sys.argv", ["seq_table", str(run)])
    assert seq_table.main() == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("| max 5.0e-01, BROKEN | - |")
