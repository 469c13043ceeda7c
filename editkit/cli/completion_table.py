"""``editkit run``'s table of greedy completions before and after editing (see :mod:`editkit.helpers.completions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from editkit.requests import printable

"""A dataset's ``extras()`` may say how many edits to show (``{"completions": N}``); ``--completions`` overrides."""

_LABELS = {"rewrite": "edit", "paraphrase": "paraphrase", "neighbour": "neighbour"}


def short(completion: str, limit: int = 20) -> str:
    """The completion up to its first sentence end, at most ``limit`` characters (for the table; control
    characters escaped, see :func:`~editkit.requests.printable`)."""
    text = printable(completion.strip())
    end = text.find(". ")
    if end >= 0:
        text = text[: end + 1]
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def print_completions(records: Sequence[Mapping[str, Any]], edits: int) -> None:
    """Per edit, a header row (subject: old -> new) and one row per prompt: the greedy completion before
    and after, marked ok when the one after starts with the object it should (the new object; the old one
    for a neighbour). Request text and completions are shown with control characters escaped (``\\x1b``): a
    request's text cannot drive the terminal (``result.json`` keeps it as it is)."""
    if not records:
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    shown = len({r["case_id"] for r in records})
    table = Table(title=f"greedy completions before -> after editing ({shown} of {edits} edits)")
    table.add_column("prompt")
    table.add_column("before", no_wrap=True, max_width=20)
    table.add_column("after", no_wrap=True, max_width=20)
    table.add_column("", no_wrap=True)
    last = None
    for r in records:
        if r["case_id"] != last:
            if last is not None:
                table.add_section()
            old = f"{printable(r['target_true'])} -> " if r.get("target_true") else "-> "
            table.add_row(Text(f"{printable(r['subject'])}: {old}{printable(r['target_new'])}", style="bold"),
                          "", "", "")
            last = r["case_id"]
        ok = r.get("after_as_expected")
        mark = Text("-" if ok is None else ("ok" if ok else "x"), style="green" if ok else "red")
        table.add_row(Text(f"  {_LABELS[r['kind']]}: {printable(r['prompt'])}"), Text(short(r["before"])),
                      Text(short(r["after"])), mark)
    Console().print(table)
