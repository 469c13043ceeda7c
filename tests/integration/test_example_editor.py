"""The worked example of docs/writing-a-plugin.md ("Writing an editor"), docs/examples/editkit_sgdft.py, passes the
conformance suite: a fine-tuning editor written against editkit.api alone."""

from __future__ import annotations

import sys
from pathlib import Path

from editkit.testing.conformance import make_conformance_tests

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
sys.path.insert(0, str(EXAMPLES))  # importable by name, as an installed plugin is (the light_import check needs it)

import editkit_sgdft  # noqa: E402

TestSgdFtConformance = make_conformance_tests(
    plugin=editkit_sgdft, editor="sgdft", families=["gpt2", "llama"],
    invalid_hparams={"lr": ["0", "-1", "nan"], "steps": ["0"], "layer": ["-1"]})
