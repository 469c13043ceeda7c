"""The code examples of the documentation run as written: each block alone, with its own imports.

docs/writing-a-plugin.md's blocks, the README's "From Python" block (on a tiny model saved under the names it
uses), and every ```python block of the other pages (CONTRIBUTING.md, docs/*.md, docs/results/*.md). A block that
cannot run on its own (it needs a real model or data) is fenced ```python-norun: it must still compile.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOC = Path(__file__).resolve().parents[2] / "docs" / "writing-a-plugin.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)


def test_the_page_has_examples():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_each_block_runs_on_its_own(index):
    namespace: dict = {"__name__": f"doc_example_{index}"}
    exec(compile(BLOCKS[index], f"{DOC.name}[block {index}]", "exec"), namespace)


def _block_defining(name: str) -> dict:
    [source] = [b for b in BLOCKS if f"def {name}(" in b]
    namespace: dict = {"__name__": "doc_example"}
    exec(compile(source, DOC.name, "exec"), namespace)
    return namespace


def test_the_metric_example_computes_from_an_eval_context():
    from editkit.evaluation import EvalContext

    ns = _block_defining("_rewrite_length")
    records = [{"requested_rewrite": {"prompt": "abcd"}}, {"requested_rewrite": {"prompt": "ab"}}]
    context = EvalContext(model=None, tokenizer=None, records=records)
    assert ns["_rewrite_length"](context) == {"mean_prompt_chars": 3.0}
    assert ns["_rewrite_length"](EvalContext(model=None, tokenizer=None, records=[])) == {}


def test_the_constraint_example_measures_with_its_tolerance():
    ns = _block_defining("clamp_factor")
    weight = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    delta = 10 * weight
    factor = ns["clamp_factor"](delta, weight, 0.1)
    assert abs(factor - 0.01) < 1e-9
    stages = ns["NormclampStages"](ns["NormclampHParams"](ratio=0.1))

    class Run:  # the written weight, rounded to float32, as the kernel's run holds it after the update
        def weight(self, site):
            return (weight.double() + delta.double() * factor).float()

    measured = stages.editkit_measure_update(Run(), None, (delta * factor).float())
    assert measured["holds"], measured  # an exact `value <= ratio` would be at the mercy of float32 rounding


def test_the_editor_example_is_the_tested_file():
    """The "Writing an editor" code is docs/examples/editkit_sgdft.py, which tests/integration/test_example_editor.py
    runs through the conformance suite."""
    example = (DOC.parent / "examples" / "editkit_sgdft.py").read_text(encoding="utf-8")
    assert example in BLOCKS, "docs/writing-a-plugin.md must show docs/examples/editkit_sgdft.py unchanged"


README = DOC.parents[1] / "README.md"
ROOT = DOC.parents[1]
OTHER_PAGES = [p for p in [ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md")),
                           *sorted((ROOT / "docs" / "results").glob("*.md"))] if p != DOC]


def _blocks(page: Path, fence: str) -> list[str]:
    return re.findall(rf"^```{fence}\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)


PAGE_BLOCKS = [(page, i, block) for page in OTHER_PAGES for i, block in enumerate(_blocks(page, "python"))]


def _name(page: Path, index: int) -> str:
    return f"{page.relative_to(ROOT)}[block {index}]"


@pytest.mark.parametrize("page, index, block", PAGE_BLOCKS, ids=[_name(p, i) for p, i, _ in PAGE_BLOCKS])
def test_each_python_block_of_the_other_pages_runs(page, index, block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    namespace: dict = {"__name__": f"doc_example_{page.stem}_{index}"}
    exec(compile(block, _name(page, index), "exec"), namespace)


def test_the_moved_pages_have_runnable_examples():
    assert any(page.name == "cli.md" for page, _, _ in PAGE_BLOCKS)


def test_norun_blocks_compile():
    """Blocks fenced ```python-norun are shown, not run (they need a real model or data), but must be Python."""
    for page in [README, DOC, *OTHER_PAGES]:
        for index, block in enumerate(_blocks(page, "python-norun")):
            compile(block, _name(page, index), "exec")


def _from_python_block(text: str) -> str:
    """The one ```python block under the README's "From Python" heading (any level), before the next heading."""
    heading = re.search(r"^#+ From Python\s*$", text, re.M)
    assert heading, "README.md has a 'From Python' section"
    section = text[heading.end():]
    following = re.search(r"^#+ ", re.sub(r"^```.*?^```", lambda m: " " * len(m.group(0)), section, flags=re.S | re.M),
                          re.M)
    [block] = re.findall(r"^```python\n(.*?)^```", section[: following.start() if following else None], re.S | re.M)
    return block


def test_the_readme_python_example_runs_a_job(tmp_path, monkeypatch):
    """README "From Python": the block runs as written, on a tiny model and requests saved under the names it uses."""
    import json

    from editkit.testing.tiny import TINY_TEXT, tiny_model, tiny_tokenizer

    block = _from_python_block(README.read_text(encoding="utf-8"))
    tok = tiny_tokenizer()
    tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=64, d_mlp=256).save_pretrained(tmp_path / "my-model")
    tok.save_pretrained(tmp_path / "my-model")
    (tmp_path / "wiki.txt").write_text("\n".join(s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()))
    records = [{"case_id": i, "requested_rewrite": {"prompt": "The mother tongue of {}", "subject": s,
                "target_new": {"str": "English"}, "target_true": {"str": "French"}}}
               for i, s in enumerate(["Danielle Darrieux", "Edwin Hubble"])]
    (tmp_path / "edits.json").write_text(json.dumps(records))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(block, "README.md[From Python]", "exec"), namespace)
    result = namespace["result"]
    assert result == json.loads((tmp_path / "runs" / "py" / "result.json").read_text())
    assert result["run"]["constraints"] == ["nullspace"] and result["summary"]["requests"] == 2
