"""Third-party plugins and settings through ``editkit run``: a third-party ``memit`` never replaces the first-party
editor, the manifest names the distribution of every plugin used, a preset is complete, a dataset's calibrated
defaults apply only when it is edited, and stderr says where each hyperparameter came from."""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from cli_harness import assert_clean_failure, editkit, tiny_setup

DIST = "editkit-fake-thirdparty"
SETTINGS = {"early_stop_loss": "0.3", "v_lr": "1.0", "nullspace.threshold": "1e-3"}
MODEL_SETTINGS = {"layers": "1,2", "v_lr": "0.7", "nullspace.l2": "3"}


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    """A tiny model and its requests; an installed-looking distribution (first on the path) that registers the
    model as ``tiny-fake``, a dataset calibrated for it, the same model as ``tiny-fake-tuned`` with calibrated settings
    of its own, an editor entry point named ``memit`` and a second entry
    point of the first-party module ``editkit_nullspace``."""
    root = tmp_path_factory.mktemp("fake")
    paths = tiny_setup(root / "files")
    plugins = root / "plugins"
    plugins.mkdir()
    (plugins / "editkit_fake_models.py").write_text(textwrap.dedent(f'''
        import json
        import os
        from pathlib import Path

        from editkit.api import DatasetSpec, ModelSpec, hookimpl

        FILES = Path(os.environ["EDITKIT_FAKE_FILES"])

        @hookimpl
        def editkit_register_models(register):
            register(ModelSpec(name="tiny-fake", summary="a tiny GPT-2", licence="none", source="tests",
                               size_bytes=0, install="none", installed=lambda: True, path=lambda: FILES / "model"))
            register(ModelSpec(name="tiny-fake-tuned", summary="the same, calibrated", licence="none",
                               source="tests", size_bytes=0, install="none", installed=lambda: True,
                               path=lambda: FILES / "model", settings={MODEL_SETTINGS!r}))

        @hookimpl
        def editkit_register_datasets(register):
            register(DatasetSpec(
                name="tiny-fake-facts", summary="requests calibrated for tiny-fake",
                load=lambda **options: json.loads((FILES / "requests.json").read_text()),
                corpus=lambda **options: (FILES / "corpus.txt").read_text().splitlines(),
                model_name="tiny-fake", settings={SETTINGS!r}))
    '''))
    (plugins / "editkit_fake_memit.py").write_text(textwrap.dedent('''
        import attrs
        from editkit import hookimpl
        from editkit_memit import EDITOR

        @hookimpl
        def editkit_register_editors(register):
            register(attrs.evolve(EDITOR, summary="not the first-party MEMIT"))
    '''))
    dist = plugins / "editkit_fake_thirdparty-0.7.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.7\n")
    (dist / "entry_points.txt").write_text("[editkit]\nfakemodels = editkit_fake_models\nmemit = editkit_fake_memit\n"
                                           "nsalias = editkit_nullspace\n")
    env = {"PYTHONPATH": os.pathsep.join([str(plugins), os.environ.get("PYTHONPATH", "")]),
           "EDITKIT_FAKE_FILES": str(root / "files")}
    return paths, env


def origin(name, plugin, dist=DIST, version="0.7"):
    return {"name": name, "plugin": plugin, "distribution": dist, "version": version}


def test_a_preset_with_requests_on_a_calibrated_model_takes_none_of_the_datasets_settings(fake, tmp_path):
    paths, env = fake
    out = tmp_path / "out"
    proc = editkit("run", "--model", "tiny-fake", "--requests", paths["requests"], "--preset", "gpt2-xl",
                   "--layers", "1,2", "--constraint", "nullspace", "--batch-size", "2", "--set", "v_steps=4",
                   "--set", "nullspace.threshold=1e9", "--metrics", "none", "--out", out, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    lines = proc.stderr.splitlines()
    # the plugin warnings: one line each, both entry points and distributions named, advice that spares editkit's
    [memit] = [line for line in lines if "warning: plugin 'memit'" in line]
    assert f"from {DIST} 0.7 (editkit_fake_memit) is ignored" in memit and "(first-party) from editkit" in memit
    assert f"EDITKIT_DISABLE_PLUGINS={DIST}:memit" in memit
    [alias] = [line for line in lines if "warning: plugin 'nsalias'" in line]
    assert "already loaded as plugin 'nullspace' (first-party) from editkit" in alias and "{" not in alias
    assert "EDITKIT_DISABLE_PLUGINS=nsalias" in alias and "EDITKIT_DISABLE_PLUGINS=nullspace" not in alias
    # where each hyperparameter came from: no dataset default
    provenance = [line for line in lines if line.startswith("hyperparameters from")]
    assert provenance == ["hyperparameters from preset gpt2-xl: memit.mom2_weight=20000.0 memit.v_lr=0.5",
                          "hyperparameters from --layers: memit.layers=1,2",
                          "hyperparameters from --set: memit.v_steps=4 nullspace.threshold=1000000000.0"]
    assert "the null space at layer 1 is the whole space" in proc.stderr  # threshold 1e9 protects nothing
    result = json.loads((out / "result.json").read_text())
    assert result["run"]["hparams"]["memit"]["early_stop_loss"] == 0.05  # the preset's (the class's), not 0.3
    manifest = result["manifest"]
    assert manifest["config"]["defaults"] == {}
    assert manifest["hyperparameters"]["memit.v_lr"] == {"source": "preset gpt2-xl", "value": 0.5}
    assert manifest["hyperparameters"]["memit.layers"] == {"source": "--layers", "value": [1, 2]}
    plugins = manifest["plugins"]
    editkit_version = plugins["editor"]["version"]
    assert plugins["editor"] == origin("memit", "memit", "editkit", editkit_version)
    assert plugins["constraints"] == [origin("nullspace", "nullspace", "editkit", editkit_version)]
    assert plugins["model_source"] == origin("tiny-fake", "fakemodels")
    assert plugins["corpus"] == origin("tiny-fake-facts", "fakemodels")  # C0 from the model's dataset
    assert plugins["dataset"] is None and plugins["metrics"] == []


def test_the_dataset_built_for_the_model_gives_its_calibrated_settings_and_says_so(fake, tmp_path):
    _, env = fake
    out = tmp_path / "out"
    proc = editkit("run", "--model", "tiny-fake", "--layers", "1,2", "--constraint", "nullspace", "--batch-size",
                   "2", "--set", "v_steps=4", "--metrics", "counterfact", "--out", out, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    provenance = [line for line in proc.stderr.splitlines() if line.startswith("hyperparameters from")]
    assert provenance == [
        "hyperparameters from dataset default (tiny-fake-facts): memit.early_stop_loss=0.3 memit.v_lr=1.0 "
        "nullspace.threshold=0.001",
        "hyperparameters from --layers: memit.layers=1,2",
        "hyperparameters from --set: memit.v_steps=4"]
    manifest = json.loads((out / "result.json").read_text())["manifest"]
    assert manifest["config"]["defaults"] == SETTINGS
    assert manifest["hyperparameters"]["memit.early_stop_loss"] == {"source": "dataset default (tiny-fake-facts)",
                                                                    "value": 0.3}
    assert manifest["plugins"]["dataset"] == origin("tiny-fake-facts", "fakemodels")
    assert [m["distribution"] for m in manifest["plugins"]["metrics"]] == ["editkit"]


def test_a_registered_models_calibrated_settings_apply_to_requests_from_a_file(fake, tmp_path):
    paths, env = fake
    out = tmp_path / "out"
    proc = editkit("run", "--model", "tiny-fake-tuned", "--requests", paths["requests"], "--corpus", paths["corpus"],
                   "--constraint", "nullspace", "--batch-size", "2", "--set", "v_steps=4", "--metrics", "none",
                   "--out", out, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    provenance = [line for line in proc.stderr.splitlines() if line.startswith("hyperparameters from")]
    assert provenance == [
        "hyperparameters from model default (tiny-fake-tuned): memit.layers=1,2 memit.v_lr=0.7 nullspace.l2=3.0",
        "hyperparameters from --set: memit.v_steps=4"]
    result = json.loads((out / "result.json").read_text())
    assert result["run"]["hparams"]["memit"]["layers"] == [1, 2]
    manifest = result["manifest"]
    assert manifest["config"]["defaults"] == MODEL_SETTINGS
    assert manifest["hyperparameters"]["memit.v_lr"] == {"source": "model default (tiny-fake-tuned)", "value": 0.7}
    # with a preset the editor's come from the preset, the constraint's still from the model
    out2 = tmp_path / "out2"
    proc = editkit("run", "--model", "tiny-fake-tuned", "--requests", paths["requests"], "--corpus", paths["corpus"],
                   "--preset", "gpt2-xl", "--layers", "1", "--constraint", "nullspace", "--batch-size", "2", "--set",
                   "v_steps=4", "--metrics", "none", "--out", out2, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert "hyperparameters from model default (tiny-fake-tuned): nullspace.l2=3.0" in proc.stderr.splitlines()
    assert json.loads((out2 / "result.json").read_text())["run"]["hparams"]["memit"]["v_lr"] == 0.5


@pytest.mark.parametrize(("option", "value", "says"), [
    ("--set", "v_lr=inf", "memit.v_lr: cannot use 'inf' (expected a finite number)"),
    ("--set", "nullspace.mode=bogus", "nullspace.mode: expected one of 'auto', 'solve', 'project', 'joint', "
                                      "got 'bogus'"),
    ("--device", "cpu:1", "--device 'cpu:1': torch has one CPU device, cpu (also written cpu:0)"),
])
def test_settings_that_cannot_work_stop_before_any_work(fake, tmp_path, option, value, says):
    paths, _ = fake
    out = tmp_path / "out"
    proc = editkit("run", "--model", paths["model"], "--requests", paths["requests"], "--constraint", "nullspace",
                   "--corpus", paths["corpus"], "--metrics", "none", option, value, "--out", out, cwd=tmp_path)
    assert_clean_failure(proc, code=2, mentions=(says,))
    [error] = [line for line in proc.stderr.splitlines() if "error" in line]
    assert "Attribute(" not in error
    assert not (out / "result.json").exists()
