"""The hook reference of docs/writing-a-plugin.md is the hookspec docstrings in full: every hook in editkit.hookspecs
has a docstring and a heading with its exact signature, the page documents no hook that does not exist, and the
section is exactly what docs/hook_reference.py generates from the docstrings (one source for the contract)."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from editkit import hookspecs
from editkit.markers import PROJECT_NAME

DOCS = Path(__file__).resolve().parents[2] / "docs"
DOC = DOCS / "writing-a-plugin.md"
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


def test_the_reference_is_the_docstrings_in_full(script):
    generator = script(DOCS / "hook_reference.py")
    assert generator.current(DOC.read_text(encoding="utf-8")) == generator.reference(), (
        "docs/writing-a-plugin.md: the hook reference is not the hookspec docstrings; run python docs/hook_reference.py"
    )
    assert generator.main(["--check"]) == 0


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_every_word_of_the_docstring_is_on_the_page(name, script):
    generator = script(DOCS / "hook_reference.py")
    section = generator.current(DOC.read_text(encoding="utf-8"))
    assert generator.markdown(inspect.getdoc(HOOKS[name])) in section


def test_a_changed_docstring_makes_the_page_stale(monkeypatch, script):
    generator = script(DOCS / "hook_reference.py")
    monkeypatch.setattr(hookspecs.editkit_batch_end, "__doc__", "After every batch. (A drifted contract.)")
    assert generator.current(DOC.read_text(encoding="utf-8")) != generator.reference()
    assert generator.main(["--check"]) == 1


def test_the_contract_states_what_the_kernel_does():
    """Drift the reference once had: collect-keys is also called for Cp; the kernel, not editors, updates Cp."""
    collect = inspect.getdoc(hookspecs.editkit_collect_keys)
    assert "once more per site after the batch was written" in collect and "Cp" in collect
    batch_end = inspect.getdoc(hookspecs.editkit_batch_end)
    words = " ".join(batch_end.split())
    assert "The kernel grows ``Cp``" in words and "right after this hook" in words
    assert "still the Cp of the earlier batches" in words and "Editors and constraints do not grow it" in words
