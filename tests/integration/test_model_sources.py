"""A dataset plugin's ``model()`` may name a registered model: ``editkit run`` loads it through the catalog.

A throwaway installed-looking plugin registers ``tiny-gguf`` (a tiny Llama ``.gguf``) and a dataset whose
``model()`` returns that name; ``editkit run --dataset`` converts the file once, edits the converted model,
and records the converted directory as the model (the name stays in the invocation, for ``--resume``).
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from cli_harness import editkit

pytest.importorskip("gguf")


@pytest.fixture
def plugin_env(tmp_path) -> dict[str, str]:
    from editkit.testing.gguf import write_tiny_gguf

    weights = tmp_path / "weights" / "tiny.gguf"
    weights.parent.mkdir()
    write_tiny_gguf(weights)
    site = tmp_path / "site"
    (site / "editkit_tiny_source").mkdir(parents=True)
    (site / "editkit_tiny_source" / "__init__.py").write_text(textwrap.dedent(f'''
        from editkit import DatasetSpec, ModelSpec, hookimpl
        from editkit.testing.tiny import tiny_texts

        WEIGHTS = {str(weights)!r}
        SUBJECTS = ["Danielle Darrieux", "Toko Yasuda", "Edwin Hubble", "Michael Jordan"]

        def load():
            return [{{"case_id": i, "requested_rewrite": {{"prompt": "The mother tongue of {{}}", "subject": s,
                     "target_new": {{"str": "English"}}, "target_true": {{"str": "French"}}}}}}
                    for i, s in enumerate(SUBJECTS)]

        @hookimpl
        def editkit_register_models(register):
            register(ModelSpec(name="tiny-gguf", summary="a tiny llama", licence="MIT", source="a test file",
                               size_bytes=1, install="pip install nothing", installed=lambda: True,
                               path=lambda: WEIGHTS))

        @hookimpl
        def editkit_register_datasets(register):
            register(DatasetSpec(name="tinyset", summary="four requests", load=load, corpus=tiny_texts,
                                 model=lambda: "tiny-gguf"))
    '''))
    dist = site / "editkit_tiny_source-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: editkit-tiny-source\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[editkit]\ntinysource = editkit_tiny_source\n")
    return {"PYTHONPATH": str(site)}


def test_a_dataset_model_that_is_a_registered_name_is_converted_and_edited(plugin_env, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    out = work / "out"
    proc = editkit("run", "--dataset", "tinyset", "--batch-size", "2", "--set", "v_steps=4", "--layers", "0",
                   "--metrics", "none", "--quiet", "--out", out, cwd=work, env=plugin_env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "converting tiny.gguf" in proc.stderr
    converted = sorted((work / ".cache" / "models").glob("gguf-*"))
    assert len(converted) == 1
    manifest = json.loads((out / "journal" / "manifest.json").read_text())
    assert manifest["invocation"]["model"] == "tiny-gguf"
    assert Path(manifest["model"]) == converted[0]
    result = json.loads((out / "result.json").read_text())
    assert result["manifest"]["model"]["name"] == str(converted[0])
    assert result["summary"]["requests"] == 4
