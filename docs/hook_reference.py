"""Generate the hook reference of docs/writing-a-plugin.md from the docstrings in editkit/hookspecs.py.

    python docs/hook_reference.py           # rewrite the section between the markers
    python docs/hook_reference.py --check   # exit 1 if the page is not what the docstrings give

The docstrings are the contract; the page shows them in full. tests/unit/test_hook_docs.py runs the check.
"""

from __future__ import annotations

import inspect
import re
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

from editkit import hookspecs
from editkit.markers import PROJECT_NAME

PAGE = Path(__file__).resolve().parent / "writing-a-plugin.md"
BEGIN = "<!-- hook reference: generated from editkit/hookspecs.py by `python docs/hook_reference.py`; do not edit -->"
END = "<!-- end of the generated hook reference -->"

CATALOG_INTRO = """Called once per discovery, on every installed plugin; nothing is returned. Each receives a
`register` callback; the kernel records which plugin registered what, rejects duplicate names and validates the
entries."""

STAGE_INTRO = """Called on the run's own plugin manager, which holds only the stage objects the run's editor and
constraints created (plus the kernel's default `apply`). The kernel drives them in this order:"""


def _hook(name: str) -> Callable[..., object]:
    fn = getattr(hookspecs, name)
    assert hasattr(fn, f"{PROJECT_NAME}_spec"), name
    return fn


def signature(name: str) -> str:
    """``editkit_solve(run, batch, site, problem)``: the hook's name and parameter names, in order."""
    return f"{name}({', '.join(inspect.signature(_hook(name)).parameters)})"


def markdown(doc: str) -> str:
    """A hook docstring as Markdown: reST roles become code spans, ``:param x:`` / ``:returns:`` list items."""
    text = re.sub(r":(?:class|func|meth|mod|attr|data):`~?([\w.]+)`", lambda m: f"`{m.group(1)}`", doc)
    text = re.sub(r"^:param (\w+):", r"* **\1**:", text, flags=re.M)
    text = re.sub(r"^:returns:", "* **returns**:", text, flags=re.M)
    return text.strip()


def call_order() -> str:
    """The order in which the kernel calls the stage hooks: the literal block of the hookspecs module docstring."""
    doc = inspect.getdoc(hookspecs) or ""
    block = doc.split("site in this order::\n\n", 1)[1].split("\n\n", 1)[0]
    return "```\n" + textwrap.dedent(block) + "\n```"


def reference() -> str:
    """The generated section, markers included."""
    parts = [BEGIN, "", "### Catalog hooks", "", CATALOG_INTRO]
    for name in hookspecs.CATALOG_HOOKS:
        parts += ["", f"#### {signature(name)}", "", markdown(inspect.getdoc(_hook(name)) or "")]
    parts += ["", "### Stage hooks", "", STAGE_INTRO, "", call_order()]
    for name in hookspecs.STAGE_HOOKS:
        parts += ["", f"#### {signature(name)}", "", markdown(inspect.getdoc(_hook(name)) or "")]
    return "\n".join([*parts, "", END])


def current(page: str) -> str:
    """The section as the page has it now (markers included)."""
    start, end = page.index(BEGIN), page.index(END) + len(END)
    return page[start:end]


def main(argv: list[str]) -> int:
    page = PAGE.read_text(encoding="utf-8")
    if argv == ["--check"]:
        if current(page) != reference():
            print(f"{PAGE.name}: stale hook reference; regenerate it: python docs/hook_reference.py")
            return 1
        return 0
    PAGE.write_text(page.replace(current(page), reference()), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
