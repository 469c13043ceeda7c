"""The summary line `editkit run` prints after a run: the edit-success share named as what it measures."""

from __future__ import annotations

from pathlib import Path

from editkit.cli.run import print_outcome
from editkit.testing.results import synthetic_result


def test_summary_line_names_edit_success_as_a_percentage(capsys):
    result = synthetic_result(batches=2, batch_size=2)
    result["summary"]["efficacy_pre"], result["summary"]["efficacy_post"] = 0.25, 0.5
    print_outcome(result, Path("out"), report=False)
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("edited 4 requests in 2 batch(es)")
    assert "edit success 25.0% -> 50.0% (new target preferred over the true one" in line
    assert "efficacy" not in line  # the metrics table's efficacy is a different measure (e.g. ZsRE token accuracy)
