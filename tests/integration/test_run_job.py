"""`editkit.run_job`: the Python entry point runs exactly what `editkit run` runs, with one plugin
host per command, and resumes journals as they were written before the job existed."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from cli_harness import fast_run_args, tiny_setup
from safetensors.torch import load_file

import editkit.plugins
from editkit import RunJob, run_job
from editkit.cli.main import main
from editkit.cli.run import job_from_argv
from editkit.job.journal import Journal


@pytest.fixture(scope="module")
def paths(tmp_path_factory):
    return tiny_setup(tmp_path_factory.mktemp("runjob"))


@pytest.fixture
def store(paths, monkeypatch):
    """One statistics store for this module's runs (not the user's cache)."""
    monkeypatch.setenv("EDITKIT_STATS_DIR", str(paths["model"].parent / "stats"))


@pytest.fixture(scope="module")
def by_cli(paths):
    out = paths["model"].parent / "cli"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EDITKIT_STATS_DIR", str(paths["model"].parent / "stats"))
        assert main(fast_run_args(paths, out)) == 0
    return out


def without_timings(result: dict) -> dict:
    """``result.json`` less what measures this machine (seconds, memory) or this checkout (the manifest)."""
    data = json.loads(json.dumps(result))
    data["summary"].pop("edit_seconds")
    data["summary"].pop("peak_memory_mib")
    data["metrics"].pop("seconds")
    data.pop("manifest")
    for batch in [*data["batches"], *([data["final"]] if data["final"] else [])]:
        for key in ("seconds", "timings", "peak_memory_mib"):
            batch.pop(key)
    return data


def test_run_job_writes_what_the_command_writes(paths, by_cli, store):
    out = paths["model"].parent / "api"
    job = job_from_argv(fast_run_args(paths, out)[1:])
    result = run_job(job)
    assert result == json.loads((out / "result.json").read_text())  # returned as written
    assert without_timings(result) == without_timings(json.loads((by_cli / "result.json").read_text()))
    ours, theirs = load_file(out / "deltas.safetensors"), load_file(by_cli / "deltas.safetensors")
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert json.loads((out / "journal" / "manifest.json").read_text())["invocation"] == \
        json.loads((by_cli / "journal" / "manifest.json").read_text())["invocation"]


def test_editkit_run_builds_one_plugin_host(paths, monkeypatch):
    built = []
    original = editkit.plugins.PluginHost.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(editkit.plugins.PluginHost, "__init__", counting)
    assert main(fast_run_args(paths, paths["model"].parent / "one-host")) == 0
    assert len(built) == 1


@pytest.mark.parametrize("how", ["cli", "api"])
def test_a_journal_written_before_the_job_existed_resumes(paths, by_cli, store, tmp_path, how):
    out = tmp_path / "interrupted"
    shutil.copytree(by_cli, out)
    for name in ("result.json", "deltas.safetensors"):
        (out / name).unlink()
    shutil.rmtree(out / "journal" / "batch-00001")  # interrupted after its first of two batches
    manifest_path = out / "journal" / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["invocation"] = {  # exactly as `editkit run` journaled it before RunJob
        "dataset": None, "model": str(paths["model"]), "corpus": str(paths["corpus"]),
        "stats_dir": manifest["invocation"]["stats_dir"], "stats_max_length": None, "stats_max_tokens": 200000,
        "metrics": "none", "eval_every": 0, "generation_records": None, "metric_options": [], "completions": None,
        "retention_probes": None, "skip_invalid": False}
    manifest_path.write_text(json.dumps(manifest))
    assert len(Journal(out).entries()) == 1
    if how == "cli":
        assert main(["run", "--resume", str(out), "--quiet"]) == 0
    else:
        run_job(RunJob(resume=out, quiet=True))
    assert [e.index for e in Journal(out).entries()] == [0, 1]
    resumed, full = load_file(out / "deltas.safetensors"), load_file(by_cli / "deltas.safetensors")
    assert resumed.keys() == full.keys() and all(torch.equal(resumed[k], full[k]) for k in full)
    a, b = (json.loads((d / "result.json").read_text()) for d in (out, by_cli))
    assert [r["post"] for r in a["requests"]] == [r["post"] for r in b["requests"]]
    assert [bool(x.get("replayed")) for x in a["batches"]] == [True, False]
