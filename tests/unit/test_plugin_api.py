"""The declared plugin API (editkit.api): plugins (and the guide's example editor) import kernel names from it
alone, it stays torch-free, and the run a stage hook receives provides what the RunContext protocol declares — and
plugins use no more."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import editkit
from editkit import api

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
ALLOWED = "editkit.api"
TESTING = "editkit.testing"  # a plugin's own tests may use the testing kit as well


def _plugin_files(root: Path) -> list[Path]:
    """First-party plugins, the third-party example and the guide's example editor (docs/examples)."""
    files = [*(root / "plugins").rglob("*.py"), *(root / "docs" / "examples").rglob("*.py")]
    return sorted(p for p in files if ".venv" not in p.parts)


def private_imports(root: Path) -> list[str]:
    """``path:line: module.name`` for every import of a kernel name other than from ``editkit.api``."""
    found = []
    for path in _plugin_files(root):
        is_test = "tests" in path.relative_to(root).parts
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module is not None:
                modules = [(node.module, [a.name for a in node.names])]
            elif isinstance(node, ast.Import):
                modules = [(a.name, ["*"]) for a in node.names]
            else:
                continue
            for module, names in modules:
                if module != "editkit" and not module.startswith("editkit."):
                    continue
                if module == ALLOWED or (is_test and (module == TESTING or module.startswith(TESTING + "."))):
                    continue
                where = f"{path.relative_to(root)}:{node.lineno}"
                found += [f"{where}: {module}.{name}" for name in names]
    return found


def test_plugins_import_kernel_names_from_the_declared_api_only():
    found = private_imports(ROOT)
    assert not found, (
        "plugins must import kernel names from editkit.api only (add a name there if a method author needs it):\n"
        + "\n".join(found)
    )


def test_the_scan_sees_a_private_import(tmp_path):
    plugin = tmp_path / "plugins" / "editkit_x"
    plugin.mkdir(parents=True)
    (plugin / "a.py").write_text("from editkit.api import hookimpl\nfrom editkit.helpers.tokens import tokenize\n")
    (plugin / "b.py").write_text("def f():\n    import editkit.helpers.tracing\n    from editkit import hookimpl\n")
    assert private_imports(tmp_path) == [
        "plugins/editkit_x/a.py:2: editkit.helpers.tokens.tokenize",
        "plugins/editkit_x/b.py:2: editkit.helpers.tracing.*",
        "plugins/editkit_x/b.py:3: editkit.hookimpl",
    ]


def test_every_declared_name_resolves():
    assert len(set(api.__all__)) == len(api.__all__)
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        api.nothing_here  # noqa: B018


def test_importing_the_api_imports_no_torch():
    code = "import sys, editkit.api; print([m for m in ('torch', 'transformers') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_lazy_names_are_the_ones_typed_for_the_checker():
    """Each torch name is loaded lazily at run time and imported under TYPE_CHECKING for mypy: the same modules."""
    tree = ast.parse(Path(api.__file__).read_text(encoding="utf-8"))
    typed = {}
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for stmt in node.body:
                if isinstance(stmt, ast.ImportFrom):
                    typed.update({a.name: stmt.module for a in stmt.names})
    assert typed == api._LAZY


def test_the_hook_contract_types_are_exported():
    from editkit.updates import AccumulatedProposal

    assert api.AccumulatedProposal is AccumulatedProposal is editkit.AccumulatedProposal
    assert "AccumulatedProposal" in editkit.__all__


def _protocol_members(protocol: type) -> set[str]:
    return {n for n in vars(protocol) if not n.startswith("_")}


def _run_attributes_used_by_plugins() -> dict[str, str]:
    """``run.X`` in plugin code (hook implementations and the helpers they pass ``run`` to) → first place."""
    used: dict[str, str] = {}
    for path in _plugin_files(ROOT):
        if "tests" in path.relative_to(ROOT).parts:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "run":
                used.setdefault(node.attr, f"{path.relative_to(ROOT)}:{node.lineno}")
    return used


def test_plugins_use_only_what_run_context_declares():
    used = _run_attributes_used_by_plugins()
    assert used, "the scan found no run.X in plugins"
    undeclared = {name: where for name, where in used.items() if name not in _protocol_members(api.RunContext)}
    assert not undeclared, f"plugins use members of the run that editkit.api.RunContext does not declare: {undeclared}"


def test_the_kernel_run_is_a_run_context():
    import torch

    from editkit import EditRequest, EditRun, PluginHost, RunConfig
    from editkit.testing.fixed import fixed_editor_plugin
    from editkit.testing.moments import MomentsFromText
    from editkit.testing.tiny import tiny_model, tiny_texts, tiny_tokenizer

    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=2, d_model=16, d_mlp=32)
    host = PluginHost(plugins=[("fixed", fixed_editor_plugin([{1: torch.zeros(16, 32)}]))])
    stats = MomentsFromText(model=model, tokenizer=tok, texts=tiny_texts())
    run = EditRun(model=model, tokenizer=tok, host=host, config=RunConfig(editor="fixed"), key_statistics=stats)
    run.edit([EditRequest(case_id=0, subject="Paris", prompt="{} is in", target_new="France")])
    assert isinstance(run, api.RunContext)
    for name in _protocol_members(api.RunContext):
        assert hasattr(run, name), name
    assert isinstance(run.require_key_statistics(), api.KeyStatisticsView)
    site = run.sites[0]
    assert tuple(run.require_key_statistics().second_moment(site).shape) == (site.d_in, site.d_in)
