"""The code examples of docs/writing-a-plugin.md run as written: each block alone, with its own imports."""

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


def test_the_readme_python_example_runs_a_job(tmp_path, monkeypatch):
    """README "From Python": the block runs as written, on a tiny model and requests saved under the names it uses."""
    import json

    from editkit.testing.tiny import TINY_TEXT, tiny_model, tiny_tokenizer

    text = README.read_text(encoding="utf-8")
    section = text[text.index("### From Python"):]
    [block] = re.findall(r"```python\n(.*?)```", section[: section.index("\n### ", 1)], re.S)
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
