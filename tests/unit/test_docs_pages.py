"""The documentation pages hold together: README.md, CONTRIBUTING.md, docs/*.md and docs/results/*.md.

* README.md is a newcomer's page: at most 200 lines, with the two quick-start commands;
* every relative link points to a file that exists (and, for a link to a heading of a page, to a heading there);
* the pages name things by behaviour, never by this project's issue numbers (another project's issue, cited
  with the project's name just before its number, is fine);
* every `editkit ...` command shown in a ```bash / ```sh / ```console block parses with the real CLI parser,
  every `make ...` names a target of the Makefile, and every `python benchmarks/....py` or `benchmarks/....sh`
  names a script that exists.
"""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
PAGES = [README, ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md")),
         *sorted((ROOT / "docs" / "results").glob("*.md"))]
IDS = [str(p.relative_to(ROOT)) for p in PAGES]

FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
SHELL_FENCES = {"bash", "sh", "shell", "console"}


def _text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def _prose(text: str) -> str:
    """The page without fenced code blocks and inline code spans (links and headings in code are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


# --- README --------------------------------------------------------------------------------------------------------


def test_the_readme_is_a_newcomers_page():
    text = _text(README)
    assert len(text.splitlines()) <= 200, "README.md: at most 200 lines; move details to docs/"
    assert "make demo" in text and "make test" in text


# --- links ---------------------------------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]\n]*\]\(([^)\s]+)\)")  # a target with spaces is not a link (e.g. "[a](b c)" in a formula)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, markup and punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    anchors = set()
    for line in FENCE.sub("", _text(page)).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = _slug(m.group(1))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def _relative_links(page: Path) -> list[str]:
    return [t for t in LINK.findall(_prose(_text(page)))
            if not re.match(r"[a-z][a-z0-9+.-]*:", t, re.I)]  # http:, https:, mailto: ...


def test_the_slug_follows_github():
    assert _slug("`editkit run`: edit facts") == "editkit-run-edit-facts"
    assert _slug("RECT and the null space together: `nullspace.mode=joint`") == \
        "rect-and-the-null-space-together-nullspacemodejoint"
    assert _slug("`ft`: fine-tuning (FT-L)") == "ft-fine-tuning-ft-l"


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_relative_links_point_to_existing_files(page):
    broken = []
    for target in _relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(f"{target} (no heading with that anchor in {file.relative_to(ROOT)})")
    assert not broken, f"{page.relative_to(ROOT)}: broken links: {broken}"


# --- issue numbers -------------------------------------------------------------------------------------------------

UPSTREAM = ("AlphaEdit", "EasyEdit", "ROME", "MEMIT", "EMMET", "PRUNE", "RECT", "NAS", "ENCORE", "BetaEdit", "LyapLock",
            "transformers", "pytorch", "PyTorch", "torch", "pluggy", "safetensors", "llama.cpp")
ISSUE_NUMBER = re.compile(r"(?<![\w/&#])(?<!\]\()#\d+\b")  # a hash and digits: "issue ...", "(...)", "...'s"
CITED_UPSTREAM = re.compile(
    r"\b(?:" + "|".join(re.escape(name) for name in UPSTREAM) + r")(?:'s)?(?:\s+(?:issue|issues|PR|pull request))?\s*$")


def own_issue_references(text: str) -> list[str]:
    """Every ``#N`` that is not cited with an upstream project's name just before it."""
    found = []
    for m in ISSUE_NUMBER.finditer(text):
        before = text[max(0, m.start() - 40):m.start()]
        if not CITED_UPSTREAM.search(before):
            found.append(text[max(0, m.start() - 20):m.end() + 10].replace("\n", " "))
    return found


def test_the_issue_pattern_catches_our_numbers_and_spares_upstream_ones():
    # the examples are templates filled with a made-up number, so this file itself names no issue
    n, m = "#" + "4711", "#" + "4712"
    for ours in ("Targets of issue {n}: fast", "the fix ({n}).", "as {n} item 3 asks", "see {n}'s calibration",
                 "## Sequential editing (issue {n})", "Issues {n} and {m}"):
        assert own_issue_references(ours.format(n=n, m=m)), ours
    for upstream in ("the author's advice, AlphaEdit issue {n}", "EasyEdit {n} says", "transformers PR {n}",
                     "[the trace](#2-the-trace)", "https://github.com/x/y/issues/4711", "colour &{n};"):
        assert not own_issue_references(upstream.format(n=n)), upstream


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_pages_name_behaviour_not_issue_numbers(page):
    found = own_issue_references(_text(page))
    assert not found, f"{page.relative_to(ROOT)}: say what it does instead of the issue number: {found}"


# --- commands ------------------------------------------------------------------------------------------------------

PLACEHOLDERS = ("...", "…", "<", "$")  # a line showing a placeholder or an environment expansion is not run


def _command_lines(page: Path) -> list[str]:
    """The shell commands of the page: every line of its bash/sh blocks, and the ``$ `` lines of its other blocks
    (console sessions, plain blocks), continuation lines joined, prompts removed."""
    commands = []
    for info, body in FENCE.findall(_text(page)):
        language = info.strip().split()[0] if info.strip() else ""
        if language.startswith("python"):
            continue
        joined = re.sub(r"\\\n\s*", " ", body)
        for line in joined.splitlines():
            line = line.strip()
            if line.startswith("$ "):
                line = line[2:].strip()
            elif language not in SHELL_FENCES or language == "console":
                continue  # output
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def _words(line: str) -> list[str]:
    words = shlex.split(line, comments=True)
    while words and re.match(r"[A-Za-z_][A-Za-z0-9_]*=", words[0]):  # VAR=value before the command
        words.pop(0)
    return words


def _editkit_arguments(words: list[str]) -> list[str] | None:
    """The arguments given to editkit (``editkit``, ``.venv/bin/editkit``, ``... -m editkit``), else None."""
    if words and Path(words[0]).name == "editkit" and words[0] in ("editkit", ".venv/bin/editkit"):
        return words[1:]
    for i in range(len(words) - 1):
        if words[i] == "-m" and words[i + 1] == "editkit":
            return words[i + 2:]
    return None


def _script(words: list[str]) -> str | None:
    """The repository script a command runs (``python benchmarks/x.py``, ``benchmarks/x.sh``), else None."""
    if len(words) > 1 and Path(words[0]).name in ("python", "python3") and words[1].endswith(".py"):
        return words[1]
    if words and words[0].endswith((".sh", ".py")) and "/" in words[0] and not words[0].startswith("/"):
        return words[0]
    return None


def _make_targets() -> set[str]:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*:(?!=)", makefile, re.M))
    for phony in re.findall(r"^\.PHONY:(.*)$", makefile, re.M):
        targets.update(phony.split())
    return targets


class _ParseError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    from editkit.cli.main import build_parser

    parser = build_parser()

    def fail(message: str) -> None:  # keep argparse from printing usage; say what was wrong
        raise _ParseError(message)

    stack = [parser]
    while stack:  # every subparser reports through fail(), not SystemExit
        p = stack.pop()
        p.error = fail  # type: ignore[method-assign]
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                stack.extend(action.choices.values())
    return parser


@pytest.fixture(scope="module")
def parser():
    return _parser()


@pytest.mark.parametrize("page", PAGES, ids=IDS)
def test_documented_commands_exist(page, parser):
    problems, skipped = [], []
    targets = _make_targets()
    for line in _command_lines(page):
        if any(mark in line for mark in PLACEHOLDERS):
            skipped.append(line)
            continue
        words = _words(line)
        if words[:1] == ["make"]:
            unknown = [w for w in words[1:] if not w.startswith("-") and "=" not in w and w not in targets]
            if unknown:
                problems.append(f"{line!r}: no Makefile target {unknown}")
            continue
        script = _script(words)
        if script is not None:
            if not (ROOT / script).is_file():
                problems.append(f"{line!r}: no such script {script}")
            continue
        arguments = _editkit_arguments(words)
        if arguments is None:
            continue
        try:
            parser.parse_args(arguments)
        except (_ParseError, SystemExit) as exc:
            problems.append(f"{line!r}: {exc}")
    assert not problems, f"{page.relative_to(ROOT)}: commands the CLI does not accept: {problems}"
    assert len(skipped) <= 3, f"{page.relative_to(ROOT)}: too many unchecked commands with placeholders: {skipped}"


def test_the_command_check_sees_the_commands():
    """The pages do show commands, and a wrong one would be caught."""
    seen = [w for page in PAGES for line in _command_lines(page)
            if not any(mark in line for mark in PLACEHOLDERS)
            if (w := _editkit_arguments(_words(line))) is not None]
    assert len(seen) >= 30
    assert any(w[:2] == ["stats", "export"] for w in seen) and any(w[:2] == ["stats", "import"] for w in seen)
    parser = _parser()
    with pytest.raises(_ParseError):
        parser.parse_args(["run", "--no-such-option"])
    with pytest.raises(_ParseError):
        parser.parse_args(["stats", "--out"])
    assert {"demo", "test", "models", "bench"} <= _make_targets()
    assert _script(_words("python benchmarks/seq_table.py runs/*")) == "benchmarks/seq_table.py"
    assert _script(_words("benchmarks/calibrate_smollm2.sh OUT")) == "benchmarks/calibrate_smollm2.sh"
    lines = _command_lines(README)
    assert any(line.startswith("make demo") for line in lines) and any(line.startswith("make test") for line in lines)
