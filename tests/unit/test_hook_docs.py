"""Every hook in editkit.hookspecs has a docstring and a heading with its exact signature in
docs/writing-a-plugin.md (the hook reference), and the page documents no hook that does not exist."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from editkit import hookspecs
from editkit.markers import PROJECT_NAME

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-plugin.md"
HOOKS = {name: fn for name, fn in vars(hookspecs).items()
         if inspect.isfunction(fn) and hasattr(fn, f"{PROJECT_NAME}_spec")}


def signature(name: str) -> str:
    """``editkit_solve(run, batch, site, problem)``: the hook's name and parameter names, in order."""
    return f"{name}({', '.join(inspect.signature(HOOKS[name]).parameters)})"


def headings() -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^#{2,4} (.+)$", DOC.read_text(encoding="utf-8"), re.M)]


def test_the_hook_lists_name_every_hook_spec():
    assert HOOKS, "no hook specs found in editkit.hookspecs"
    assert set(HOOKS) == set(hookspecs.STAGE_HOOKS) | set(hookspecs.CATALOG_HOOKS)


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_has_a_docstring(name):
    assert (inspect.getdoc(HOOKS[name]) or "").strip(), f"hook {name} in editkit/hookspecs.py has no docstring"


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hook_is_documented_with_its_exact_signature(name):
    expected = signature(name)
    assert expected in headings(), (
        f"docs/writing-a-plugin.md has no heading '### {expected}' for hook {name}; add it to the hook reference"
    )


def test_the_page_documents_no_unknown_hook():
    documented = [h.split("(", 1)[0] for h in headings() if h.startswith(f"{PROJECT_NAME}_")]
    unknown = sorted(set(documented) - set(HOOKS))
    assert not unknown, f"docs/writing-a-plugin.md documents hooks that editkit.hookspecs does not define: {unknown}"
    assert len(documented) == len(set(documented)), "a hook has more than one heading"
