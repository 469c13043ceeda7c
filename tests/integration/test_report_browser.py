"""`editkit report`'s page in a real browser (headless Debian Chromium): it loads from disk with no console
error and no request beyond the file itself, every figure shows with a non-zero size, and the screenshot is
not blank. Skips, saying why, where Chromium is not installed (``.ci/run`` installs it when it can)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from headless_chromium import find_chromium, inspect_page, save_screenshot

from editkit.report import write_report
from editkit.testing.results import synthetic_result, write_run

CHROMIUM = find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it when it can, "
           "or set EDITKIT_CHROMIUM to a Chromium binary)",
)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    alpha = write_run(root / "alphaedit", synthetic_result(constraints=("nullspace",), broken=[(1, 5)], batches=5))
    memit = write_run(root / "memit", synthetic_result(batches=5, eval_every=2, replayed=2))
    out = write_report([alpha, memit], root / "report.html")
    check = inspect_page(out.resolve().as_uri(), chromium=CHROMIUM)
    shot = save_screenshot(check, root / "report.png")
    if os.environ.get("EDITKIT_REPORT_SCREENSHOT"):  # to look at it: EDITKIT_REPORT_SCREENSHOT=/tmp/shot.png
        save_screenshot(check, os.environ["EDITKIT_REPORT_SCREENSHOT"])
    return out, check, shot


def test_no_console_errors(page):
    _, check, _ = page
    assert check.console_errors == []


def test_the_page_requests_nothing_but_itself(page):
    out, check, _ = page
    outside = [url[:80] for url in check.requests if not url.startswith("data:")]
    assert outside == [out.resolve().as_uri()]


def test_every_figure_is_shown_with_a_non_zero_size(page):
    _, check, _ = page
    assert len(check.figures) == 8
    assert check.undecodable_images == []
    for figure in check.figures:
        assert figure["width"] > 0 and figure["height"] > 0, figure
        assert figure["img_width"] > 100 and figure["img_height"] > 100, figure
        assert figure["natural_width"] > 0 and figure["natural_height"] > 0, figure


def test_the_page_fits_a_laptop_screen(page):
    _, check, _ = page
    assert max(f["img_width"] for f in check.figures) <= 1280


def test_the_screenshot_is_not_blank(page):
    from PIL import Image

    _, check, shot = page
    image = Image.open(io.BytesIO(check.screenshot)).convert("RGB")
    width, height = image.size
    assert width >= 1000 and height > 2000, "the full page, not the viewport"
    small = image.resize((width // 4, height // 4))
    raw = small.tobytes()
    pixels = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    ink = sum(1 for p in pixels if min(p) < 200) / len(pixels)
    colours = {tuple(c // 32 for c in p) for p in pixels}
    assert ink > 0.02, f"{Path(shot)}: only {ink:.1%} of the page is not near-white"
    assert len(colours) > 20, f"{Path(shot)}: only {len(colours)} colours"
