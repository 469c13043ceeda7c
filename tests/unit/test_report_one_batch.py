"""`editkit report` of runs with a single batch or unequal batches: no per-batch curve over one point (whose
x axis would read 0.945 … 1.050), the values of that batch in tables instead, and the batches' real sizes
("1 × 20", "3 batches: 100, 100, 20"), not the configured batch size."""

from __future__ import annotations

import re
from html import unescape

import pytest

from editkit.report import build_report
from editkit.report.page import ONE_BATCH, batches_and_sizes
from editkit.testing.results import synthetic_result, write_run

PER_BATCH_FIGURES = ("kept key energy", "update norms", "v* losses", "invariant checks", "stage timings",
                     "peak memory")


def _alts(html: str) -> list[str]:
    return re.findall(r'<img src="data:image/svg\+xml;base64,[^"]+" alt="([^"]*)"', html)


def _text(html: str) -> str:
    return unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html)))


def _row(html: str, name: str) -> str:
    """The text of the runs table's row ``name``."""
    match = re.search(rf"<tr><th>{re.escape(name)}</th>(.*?)</tr>", html)
    assert match, f"no row {name!r}"
    return _text(match.group(1)).strip()


def _one_batch_of_20(configured: int = 100, **kwargs) -> dict:
    """A finished run of 20 requests in one batch, configured with --batch-size ``configured``."""
    result = synthetic_result(batches=1, batch_size=20, **kwargs)
    result["manifest"]["config"]["batch_size"] = configured
    return result


@pytest.fixture(scope="module")
def one_batch(tmp_path_factory):
    root = tmp_path_factory.mktemp("one-batch")
    return build_report([write_run(root / "one", _one_batch_of_20(constraints=("nullspace",)))])


def test_a_one_batch_run_shows_its_real_batch_size(one_batch):
    data, html = one_batch
    assert data["runs"][0]["batch_sizes"] == [20] and data["most_batches"] == 1
    assert _row(html, "batches × size") == "1 × 20"  # not "1 × 100", the configured size


def test_a_one_batch_run_has_no_per_batch_curve_but_its_values_in_tables(one_batch):
    _, html = one_batch
    alts = _alts(html)
    assert alts == ["C0 spectra"]  # the spectrum is per layer, not per batch; no curve over a single point
    assert not set(PER_BATCH_FIGURES) & set(alts) and "metric curves" not in alts
    text = _text(html)
    assert text.count(ONE_BATCH) == 4  # kept key energy, update norms, v*, stage timings: each said so
    assert "evaluated once, after its last batch: no curve to draw" in text
    # the batch's values, as tables (synthetic: ‖ΔW‖ 1.0 and 1.1 in layers 4 and 5, v* loss 0.5 and share 0.9)
    assert re.search(r"one 4 1\.00 0\.0100 one 5 1\.10 0\.0100", text)
    assert re.search(r"one 4 0\.300 16 one 5 0\.300 16", text)  # kept key energy, null-space size as a count
    assert re.search(r"one 0\.500 0\.900", text)
    assert re.search(r"collect_keys 100 ms compute_residual 100 ms", text)
    assert "2 of 2" in text and "406 MiB" in text  # invariant and peak-memory tables are still there


def test_several_one_batch_runs_get_one_table_each_section(tmp_path):
    a = write_run(tmp_path / "a", _one_batch_of_20())
    b = write_run(tmp_path / "b", _one_batch_of_20(configured=20))
    _, html = build_report([a, b])
    assert not _alts(html)
    text = _text(html)
    assert re.search(r"a 4 1\.00 0\.0100 a 5 1\.10 0\.0100 b 4 1\.00 0\.0100 b 5 1\.10 0\.0100", text)
    assert _row(html, "batches × size") == "1 × 20 1 × 20"


def test_unequal_batches_are_shown_as_they_were(tmp_path):
    result = synthetic_result(constraints=("nullspace",), batches=3, batch_size=100)
    result["batches"][-1]["size"] = 20
    result["summary"]["requests"] = 220
    data, html = build_report([write_run(tmp_path / "three", result)])
    assert data["runs"][0]["batch_sizes"] == [100, 100, 20]
    assert _row(html, "batches × size") == "3 batches: 100, 100, 20"
    assert set(PER_BATCH_FIGURES) <= set(_alts(html))  # several batches: the per-batch figures are drawn
    assert ONE_BATCH not in _text(html)


def test_sizes_not_recorded_by_the_batches_are_derived_from_the_requests_and_the_batch_size(tmp_path):
    result = synthetic_result(batches=3, batch_size=100)
    for batch in result["batches"]:
        del batch["size"]
    result["summary"]["requests"] = 220
    data, html = build_report([write_run(tmp_path / "old", result)])
    assert data["runs"][0]["batch_sizes"] == [100, 100, 20]
    assert _row(html, "batches × size") == "3 batches: 100, 100, 20"


@pytest.mark.parametrize(("run", "shown"), [
    ({"batch_sizes": [20]}, "1 × 20"),
    ({"batch_sizes": [100] * 3}, "3 × 100"),
    ({"batch_sizes": [100] * 50 + [20]}, "51 batches: 50 × 100, 20"),
    ({"batch_sizes": [5, 3] + [4] * 8}, "10 batches: 5, 3, 8 × 4"),
    ({"batch_sizes": None, "batches": 2, "batch_size": 8}, "2 × 8 (configured batch size)"),
    ({"batch_sizes": None, "batches": 2, "batch_size": None}, "2 × –"),
])
def test_batches_and_sizes_in_words(run, shown):
    assert batches_and_sizes(run) == shown


def test_a_single_batch_axis_has_integer_ticks():
    """Where one run's single batch is drawn beside others, its axis reads batch numbers, never 0.945 … 1.05."""
    from matplotlib.figure import Figure

    from editkit.report.figures import _integer_x

    axis = Figure().subplots()
    axis.plot([1], [2.0], marker="o")
    _integer_x(axis)
    lo, hi = axis.get_xlim()
    shown = [t for t in axis.get_xticks() if lo <= t <= hi]
    assert shown == [1.0]
