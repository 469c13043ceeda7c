"""docs/metrics.md defines every figure editkit reports.

* every registered metric has a section: a heading that names it in backticks;
* every figure key a metric module can return is in one of the page's tables, in backticks. The keys are read
  statically from the modules that ``plugins/editkit_metrics/__init__.py`` imports in its compute functions, so a
  key added later is caught without touching this file (see :func:`figure_keys`); a key built with an f-string
  must be matched by a documented pattern (``general_<task>_<figure>``) or by a documented key of that shape;
* every ``summary`` figure of ``result.json`` (``editkit/job/pipeline.py::_result``) is in a table as
  ``summary.<key>``, and every general-capability task's figure is listed by name;
* every editkit source the page cites (``plugins/...py::name``, ``editkit/...py::name``) exists.

A metric module that is registered but not written yet is skipped, and only then.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "metrics.md"
PLUGIN = ROOT / "plugins" / "editkit_metrics"
PIPELINE = ROOT / "editkit" / "job" / "pipeline.py"

KEY = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")
PLACEHOLDER = "<>"

# Strings the static reading finds in a key position that can never be reported as such (with why).
NOT_FIGURES = {
    "generation_zsre": "generation.py: the stem of generation_zsre_em / generation_zsre_f1 (the f-string "
                       "f'{figure}_em'); the plain per.setdefault(figure, ...) branch never sees it",
}


# --- the page ------------------------------------------------------------------------------------------------------


def _page() -> str:
    return PAGE.read_text(encoding="utf-8")


def _table_spans(text: str) -> set[str]:
    """The inline code spans of the page's table rows."""
    return {span for line in text.splitlines() if line.lstrip().startswith("|")
            for span in re.findall(r"`([^`\n]+)`", line)}


def _shape(pattern: str) -> str:
    """``general_<task>_<figure>`` → ``general_<>_<>``."""
    return re.sub(r"<[^<>]+>", PLACEHOLDER, pattern)


def _as_regex(shape: str) -> re.Pattern[str]:
    return re.compile("^" + "[a-z0-9_]+".join(re.escape(part) for part in shape.split(PLACEHOLDER)) + "$")


def documented(key: str, spans: set[str]) -> bool:
    """A literal key must be a span itself; a pattern (``<>`` for each f-string field) must be a documented
    pattern of that shape or be matched by a documented key."""
    if PLACEHOLDER not in key:
        return key in spans
    patterns = {_shape(s) for s in spans if "<" in s}
    return key in patterns or any(_as_regex(key).match(s) for s in spans if KEY.match(s))


# --- static reading of the metric modules --------------------------------------------------------------------------


def metric_entry_points() -> dict[str, list[str]]:
    """Module name → the functions that ``__init__.py``'s compute functions import from it."""
    tree = ast.parse((PLUGIN / "__init__.py").read_text(encoding="utf-8"))
    out: dict[str, list[str]] = {}
    for function in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)):
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("editkit_metrics."):
                module = node.module.split(".", 1)[1]
                out.setdefault(module, []).extend(alias.name for alias in node.names)
    return out


def _functions(tree: ast.Module) -> dict[str, ast.FunctionDef]:
    return {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}


def _reporting_functions(tree: ast.Module, entries: list[str]) -> list[ast.FunctionDef]:
    """The entry functions and the module's functions whose result they return or merge into theirs
    (``return f(...)``, ``out.update(f(...))``, ``{**f(...)}``), transitively."""
    defined = _functions(tree)
    seen: list[str] = []
    todo = [name for name in entries if name in defined]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.append(name)
        for node in ast.walk(defined[name]):
            calls = []
            if isinstance(node, ast.Return) and isinstance(node.value, ast.Call):
                calls.append(node.value)
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "update":
                calls += [a for a in node.args if isinstance(a, ast.Call)]
            elif isinstance(node, ast.Dict):
                calls += [v for k, v in zip(node.keys, node.values) if k is None and isinstance(v, ast.Call)]
            todo += [c.func.id for c in calls if isinstance(c.func, ast.Name) and c.func.id in defined]
    return [defined[name] for name in seen]


def _key_expressions(function: ast.FunctionDef) -> list[ast.expr]:
    """Expressions in key position: dict-literal and dict-comprehension keys, ``x[key] = ...`` and
    ``x.setdefault(key, ...)``."""
    found: list[ast.expr] = []
    for node in ast.walk(function):
        if isinstance(node, ast.Dict):
            found += [k for k in node.keys if k is not None]
        elif isinstance(node, ast.DictComp):
            found.append(node.key)
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Store):
            found.append(node.slice)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setdefault"
              and node.args):
            found.append(node.args[0])
    return found


def _positions(target: ast.expr, name: str) -> list[tuple[int, int]]:
    """Where ``name`` sits in an unpacking target: (length of its tuple, index), for each occurrence."""
    out = []
    for node in ast.walk(target):
        if isinstance(node, ast.Tuple):
            out += [(len(node.elts), i) for i, e in enumerate(node.elts) if isinstance(e, ast.Name) and e.id == name]
    return out


def _values_of(function: ast.FunctionDef, name: str) -> set[str]:
    """The string constants a variable used as a key may hold: ``name = "x"``, ``for name in ("x", "y")``, and,
    for a name unpacked from tuples (``for kind, p in kinds``), the constants at its position in the function's
    tuple literals of the same length (``("efficacy", prompt)``)."""
    targets: list[tuple[ast.expr, ast.expr | None]] = []
    for node in ast.walk(function):
        if isinstance(node, (ast.For, ast.comprehension)):
            targets.append((node.target, node.iter))
        elif isinstance(node, ast.Assign):
            targets += [(t, node.value) for t in node.targets]
    values: set[str] = set()
    shapes: set[tuple[int, int]] = set()
    for target, source in targets:
        if isinstance(target, ast.Name) and target.id == name:
            if isinstance(source, ast.Constant) and isinstance(source.value, str):
                values.add(source.value)
            elif isinstance(source, (ast.Tuple, ast.List, ast.Set)):
                values |= {e.value for e in source.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)}
        shapes |= set(_positions(target, name))
    for node in ast.walk(function):
        if isinstance(node, ast.Tuple) and isinstance(node.ctx, ast.Load):
            for length, index in shapes:
                if len(node.elts) == length:
                    element = node.elts[index]
                    if isinstance(element, ast.Constant) and isinstance(element.value, str):
                        values.add(element.value)
    return values


def _pattern(joined: ast.JoinedStr) -> str:
    return "".join(part.value if isinstance(part, ast.Constant) else PLACEHOLDER for part in joined.values)


def figure_keys(source: str, entries: list[str]) -> set[str]:
    """The figure keys the module's entry functions can return: literal keys, values of variables used as keys
    (see :func:`_values_of`), and f-string keys as patterns with ``<>`` for each field."""
    tree = ast.parse(source)
    keys: set[str] = set()
    for function in _reporting_functions(tree, entries):
        for expr in _key_expressions(function):
            if isinstance(expr, ast.Constant) and isinstance(expr.value, str):
                keys.add(expr.value)
            elif isinstance(expr, ast.JoinedStr):
                keys.add(_pattern(expr))
            elif isinstance(expr, ast.Name):
                keys |= _values_of(function, expr.id)
    return {k for k in keys if KEY.match(k.replace(PLACEHOLDER, "x")) and k not in NOT_FIGURES}


ENTRIES = metric_entry_points()


# --- (a) every registered metric has a section ---------------------------------------------------------------------


def test_every_registered_metric_has_a_section():
    from editkit.plugins import PluginHost

    names = list(PluginHost().catalog.entries["metrics"])
    assert names, "no metric registered"
    headings = [line for line in _page().splitlines() if re.match(r"#{2,4} ", line)]
    missing = [n for n in names if not any(f"`{n}`" in h for h in headings)]
    assert not missing, f"docs/metrics.md: no section (a heading naming it in backticks) for metrics {missing}"


# --- (b) every figure key is in a table ----------------------------------------------------------------------------


def test_the_reader_finds_the_modules_and_their_keys():
    assert {"counterfact", "zsre", "fluency", "retention", "general", "perplexity"} <= set(ENTRIES)
    counterfact = figure_keys((PLUGIN / "counterfact.py").read_text(encoding="utf-8"), ENTRIES["counterfact"])
    assert {"efficacy", "generalisation", "specificity", "<>_magnitude", "counterfact_skipped_prompts"} <= counterfact
    zsre = figure_keys((PLUGIN / "zsre.py").read_text(encoding="utf-8"), ENTRIES["zsre"])
    assert {"zsre_efficacy", "zsre_generalisation", "zsre_specificity", "zsre_skipped_prompts"} <= zsre
    general = figure_keys((PLUGIN / "general.py").read_text(encoding="utf-8"), ENTRIES["general"])
    assert {"general_<>_<>", "general_skipped_items"} <= general


def test_the_reader_catches_a_new_key():
    source = '''
def scores(context):
    items = [("alpha_rate", 1), ("beta_rate", 2)]
    out = {"base_count": 1.0}
    for kind, value in items:
        out[kind] = value
    out["new_figure"] = 2.0
    out[f"{context.name}_share"] = 3.0
    merged = {**_extra(context)}
    return out

def _extra(context):
    return {"extra_figure": 1.0}

def unrelated():
    return {"role": "user"}
'''
    keys = figure_keys(source, ["scores"])
    assert keys == {"alpha_rate", "beta_rate", "base_count", "new_figure", "<>_share", "extra_figure"}


def test_documented_patterns_match_fstring_keys():
    spans = {"general_<task>_<figure>", "efficacy_magnitude", "generation_zsre_em"}
    assert documented("general_<>_<>", spans)
    assert documented("<>_magnitude", spans)
    assert documented("<>_em", spans)
    assert not documented("<>_f1", spans)
    assert not documented("efficacy", spans)


@pytest.mark.parametrize("module", sorted(ENTRIES))
def test_every_figure_key_is_in_a_table(module):
    path = PLUGIN / f"{module}.py"
    if not path.exists():
        pytest.skip(f"{path.relative_to(ROOT)} is registered but not written yet")
    keys = figure_keys(path.read_text(encoding="utf-8"), ENTRIES[module])
    spans = _table_spans(_page())
    missing = sorted(k for k in keys if not documented(k, spans))
    assert not missing, (f"docs/metrics.md: figures of {path.relative_to(ROOT)} missing from the tables (as `key`; "
                         f"'<>' is an f-string field, documented as a pattern such as `general_<task>_<figure>` or by "
                         f"a key of that shape): {missing}")


def test_every_summary_figure_is_in_a_table():
    tree = ast.parse(PIPELINE.read_text(encoding="utf-8"))
    summary = [v for node in ast.walk(tree) if isinstance(node, ast.Dict)
               for k, v in zip(node.keys, node.values)
               if isinstance(k, ast.Constant) and k.value == "summary" and isinstance(v, ast.Dict)]
    assert summary, "editkit/job/pipeline.py: no 'summary' dict found"
    keys = {k.value for d in summary for k in d.keys if isinstance(k, ast.Constant)}
    assert {"efficacy_pre", "efficacy_post"} <= keys
    spans = _table_spans(_page())
    missing = sorted(k for k in keys if f"summary.{k}" not in spans)
    assert not missing, f"docs/metrics.md: summary figures missing from the tables (as `summary.key`): {missing}"


def test_every_general_task_figure_is_listed():
    tree = ast.parse((PLUGIN / "general_tasks.py").read_text(encoding="utf-8"))
    figures = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Task":
            kw = {k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)}
            figures.add(f"general_{kw['name']}_{kw['figure']}")
    assert len(figures) >= 8
    spans = _table_spans(_page())
    assert not sorted(figures - spans), f"docs/metrics.md: general figures not listed: {sorted(figures - spans)}"


# --- the page's editkit citations exist ----------------------------------------------------------------------------

CITATION = re.compile(r"^((?:editkit|plugins)/[\w/]+\.py)(?:::(\w+))?$")


def test_cited_editkit_sources_exist():
    absent_modules = {f"plugins/editkit_metrics/{m}.py" for m in ENTRIES if not (PLUGIN / f"{m}.py").exists()}
    broken = []
    for span in set(re.findall(r"`([^`\n]+)`", _page())):
        match = CITATION.match(span)
        if not match or match.group(1) in absent_modules:
            continue
        path, name = ROOT / match.group(1), match.group(2)
        if not path.exists():
            broken.append(f"{span} (no such file)")
        elif name:
            tree = ast.parse(path.read_text(encoding="utf-8"))
            defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
            if name not in defined:
                broken.append(f"{span} (no function or class {name})")
    assert not broken, f"docs/metrics.md cites editkit code that does not exist: {broken}"
