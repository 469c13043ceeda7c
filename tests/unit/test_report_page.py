"""`editkit report`'s page: self-contained (nothing fetched), a figure per section with data, every missing
piece stated in words, numbers for people."""

from __future__ import annotations

import base64
import re

import pytest

from editkit.report import build_report
from editkit.report import format as fmt
from editkit.testing.results import synthetic_result, write_run


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    alpha = write_run(root / "alphaedit", synthetic_result(constraints=("nullspace",), broken=[(1, 5)]))
    memit = write_run(root / "memit", synthetic_result(eval_every=0))
    return build_report([alpha, memit])


def _figures(html: str) -> list[str]:
    return [base64.b64decode(m).decode() for m in re.findall(r'<img src="data:image/svg\+xml;base64,([^"]+)"', html)]


def test_the_page_loads_nothing_from_elsewhere(page):
    _, html = page
    assert "<script" not in html
    assert not re.search(r'(src|href)="(?!data:)', html), "only data: URIs may be referenced"
    assert "http://" not in html.replace("http://www.w3.org/", "")  # SVG/XLink namespaces are names, not fetches
    assert "https://" not in html
    for svg in _figures(html):
        assert svg.lstrip().startswith("<?xml") and "<svg" in svg
        assert not re.search(r'(xlink:)?href="(?!#|data:)', svg), "an SVG references something outside it"


def test_one_figure_per_section_with_data(page):
    _, html = page
    # curves, spectra, kept key energy, update norms, v*, invariants, timings, peak memory
    assert len(_figures(html)) == 8
    assert html.count("<figure>") == 8


def test_missing_pieces_are_stated(page):
    _, html = page
    missing = re.findall(r'<p class="missing">.*?<b>(.*?)</b>: (.*?)</p>', html)
    reasons = {reason for label, reason in missing if label == "memit"}
    assert any("--eval-every" in r for r in reasons)
    assert any("null-space constraint" in r for r in reasons)
    assert any("no constraint" in r for r in reasons)


def test_tables_show_runs_metrics_and_invariant_results(page):
    _, html = page
    assert "nullspace.threshold" in html  # a hyperparameter that differs between the runs
    assert '<td class="num diff">−5.00</td>' in html  # specificity 90 → 85
    assert "✗ broken in 1" in html and "✓ holds" in html


def test_a_report_of_one_bare_run_has_no_figure_and_says_why(tmp_path):
    result = synthetic_result(metrics=False)
    for batch in result["batches"]:
        batch["layers"] = {}
        batch["timings"] = {}
        batch["peak_memory_mib"] = {}
    _, html = build_report([write_run(tmp_path / "bare", result)])
    assert _figures(html) == []
    assert html.count('<p class="missing">') == 9  # metrics, curves and the seven figure sections


@pytest.mark.parametrize(("x", "text"), [
    (0.0438531, "0.0439"), (2512.3, "2510"), (99.96, "100"), (0.5, "0.500"), (15000.0, "15000"),
    (123456.0, "123000"), (1.2e-5, "1.20e-05"), (3.4e7, "3.40e+07"), (0, "0"), (7, "7"), (None, "–"),
    (float("nan"), "–"), (True, "yes"), (-80.1, "−80.1"), (-3.4e7, "−3.40e+07"),
])
def test_numbers_have_three_significant_figures(x, text):
    assert fmt.number(x) == text


def test_units():
    assert fmt.seconds(0.0123) == "12.3 ms" and fmt.seconds(42.0) == "42.0 s" and fmt.seconds(600) == "10.0 min"
    assert fmt.mebibytes(512.0) == "512 MiB" and fmt.mebibytes(3072.0) == "3.00 GiB"
    assert fmt.signed(-5.0) == "−5.00" and fmt.signed(2.5) == "+2.50" and fmt.signed(0.0) == "0"


def test_the_same_data_draws_the_same_figures(page):
    data, html = page
    from editkit.report.page import render

    assert _figures(render(data)) == _figures(html)
