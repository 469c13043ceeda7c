"""Packaging metadata that setuptools accepts without deprecation banners.

setuptools >= 77 prints a ``project.license as a TOML table is deprecated`` banner for
``license = {text = ...}`` (three times per project per install); the PEP 639 form is an SPDX
expression string, which needs setuptools >= 77 to build.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")

ROOT = Path(__file__).resolve().parents[2]
PROJECTS = [ROOT / "pyproject.toml", ROOT / "plugins" / "editkit-normclamp" / "pyproject.toml"]


@pytest.mark.parametrize("path", PROJECTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_license_is_an_spdx_expression_and_the_backend_understands_it(path):
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    license_ = data["project"]["license"]
    assert isinstance(license_, str) and license_ == "MIT", license_
    assert not [c for c in data["project"].get("classifiers", []) if c.startswith("License ::")]
    setuptools = [r for r in data["build-system"]["requires"] if r.startswith("setuptools")]
    assert len(setuptools) == 1
    match = re.fullmatch(r"setuptools>=(\d+)(\.\d+)*", setuptools[0].replace(" ", ""))
    assert match and int(match.group(1)) >= 77, setuptools[0]
