"""The run job: one frozen value for everything `editkit run` decides, its JSON, its journal form."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from editkit.cli.run import job_from_argv
from editkit.errors import InputError, UsageError
from editkit.job.runjob import RunJob, _journaled_job

FULL_ARGV = ["--model", "m", "--requests", "r.json", "--num-edits", "7", "--offset", "2", "--shuffle",
             "--skip-invalid", "--editor", "rect", "--constraint", "nullspace", "--constraint", "prune",
             "--layers", "1,3-4", "--batch-size", "5", "--seed", "3", "--preset", "gpt2-xl", "--set", "v_lr=0.5",
             "--set", "nullspace.l2=10", "--constrain-mode", "posthoc", "--stats-dir", "store",
             "--corpus", "c.jsonl:text", "--stats-max-tokens", "all", "--stats-max-length", "64",
             "--metrics", "counterfact,retention", "--retention-probes", "p.json", "--generation-records", "0",
             "--metric-option", "general.limit=3", "--completions", "2", "--eval-every", "2", "--out", "o",
             "--report", "--quiet", "--dataset-option", "target=alt"]

# the journal's `invocation` record since it was introduced: resuming reads exactly these
INVOCATION_KEYS = {"dataset", "model", "corpus", "stats_dir", "stats_max_length", "stats_max_tokens", "metrics",
                   "eval_every", "generation_records", "metric_options", "completions", "retention_probes",
                   "skip_invalid"}


def test_the_options_become_the_job_fields():
    job = job_from_argv(FULL_ARGV)
    assert job.layers == (1, 3, 4) and job.constraints == ("nullspace", "prune")
    assert job.overrides == (("nullspace.l2", "10"), ("v_lr", "0.5"))
    assert job.dataset_options == (("target", "alt"),)
    assert job.metrics == ("counterfact", "retention") and job.stats_max_tokens is None
    assert job.requests == Path("r.json") and job.out == Path("o") and job.report and job.quiet
    assert job.config().layers == (1, 3, 4) and job.config().overrides == job.overrides


def test_json_round_trip_is_exact():
    job = job_from_argv(FULL_ARGV)
    data = json.loads(json.dumps(job.to_json()))
    assert RunJob.from_json(data) == job
    assert RunJob.from_json(RunJob().to_json()) == RunJob()


def test_a_job_without_out_gets_one_when_built_from_the_command_line():
    job = job_from_argv(["--model", "m"])
    assert job.out is not None and job.out.parent == Path("runs") and job.out.name.startswith("run-")
    assert RunJob(model="m").out is None  # from Python: decided when it runs


def test_resume_takes_only_the_directory_and_the_display_options():
    job = job_from_argv(["--resume", "d", "--editor", "rect", "--quiet"])
    assert job == RunJob(resume=Path("d"), quiet=True)


@pytest.mark.parametrize("data, named", [
    ({"model": "m", "edits": 3}, "edits"),
    ({"batch_size": 0}, "--batch-size must be >= 1"),
    ({"layers": [1, 1]}, "layers"),
    ({"constrain_mode": "later"}, "constrain_mode"),
    ({"seed": "0"}, "seed"),
    ({"stats_store": False, "stats_dir": "x"}, "contradict"),
])
def test_bad_job_json_names_the_field(data, named):
    with pytest.raises(InputError, match=r"job\.json") as caught:
        RunJob.from_json(data, source="job.json")
    assert named in str(caught.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"batch_size": 0}, "--batch-size must be >= 1, got 0"),
    ({"eval_every": -1}, "--eval-every must be >= 0"),
    ({"completions": -1}, "--completions must be >= 0"),
    ({"generation_records": -2}, "--generation-records must be >= 0"),
    ({"offset": -1}, "--offset must be >= 0"),
    ({"num_edits": 0}, "--num-edits >= 1"),
    ({"stats_store": False, "stats_dir": "x"}, "--no-stats-store and --stats-dir contradict each other"),
])
def test_bad_values_are_usage_errors(kwargs, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        RunJob(**kwargs)


def test_the_journal_form_is_the_historical_one_and_reads_back():
    job = job_from_argv([*FULL_ARGV[:FULL_ARGV.index("--out")], "--dataset", "zsre"])
    invocation, config = job.invocation(), job.config().to_json()
    assert set(invocation) == INVOCATION_KEYS
    assert invocation["metrics"] == "counterfact,retention" and invocation["stats_dir"] == "store"
    back = RunJob.from_json(_journaled_job(json.loads(json.dumps(invocation)), json.loads(json.dumps(config))))
    kept = set(INVOCATION_KEYS | set(config)) - {"defaults"}
    for name in kept:
        assert getattr(back, name) == getattr(job, name), name
    assert back.hparam_defaults == ()  # journaled: fixed, not taken from the dataset again


def test_a_journal_as_written_before_the_job_reads_back():
    invocation = {"dataset": None, "model": "m", "corpus": None, "stats_dir": None, "stats_max_length": None,
                  "stats_max_tokens": 200000, "metrics": "none", "eval_every": 0, "generation_records": None,
                  "metric_options": [], "completions": None, "retention_probes": None, "skip_invalid": False}
    config = {"editor": "memit", "constraints": ["nullspace"], "layers": None, "batch_size": 2, "seed": 0,
              "device": "cpu", "preset": None, "overrides": {"v_steps": "4"}, "constrain_mode": None,
              "defaults": {"v_lr": "0.5"}}
    job = RunJob.from_json(_journaled_job(invocation, config))
    assert job.metrics == () and not job.stats_store and job.hparam_defaults == (("v_lr", "0.5"),)
    assert job.config().to_json() == config
    assert job.invocation() == invocation


def test_the_job_and_run_job_import_without_torch():
    code = ("import sys, editkit; editkit.RunJob; editkit.run_job; import editkit.cli.run; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
