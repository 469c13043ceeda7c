"""The command line: torch-free help, plugins listing, inspect, run, and exit codes on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from editkit.cli.main import main
from editkit.memory import SiteShape, run_memory
from editkit.testing.tiny import TINY_TEXT, tiny_model, tiny_tokenizer


def test_help_and_plugins_do_not_import_torch():
    code = (
        "import sys, io, contextlib\n"
        "from editkit.cli.main import main\n"
        "for argv in (['--help'], ['plugins'], ['plugins', '--json'], ['run', '--help']):\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main(argv)\n"
        "        except SystemExit:\n"
        "            pass\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("ok")


def test_plugins_json_lists_entry_point_plugins(capsys):
    assert main(["plugins", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert by_name["memit"]["distribution"] == "editkit"
    assert by_name["nullspace"]["provides"] == {"constraints": ["nullspace"]}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("model")
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=4, d_model=64, d_mlp=256, logit_scale=20)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    corpus = path.parent / "corpus.txt"
    corpus.write_text("\n".join(s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()))
    return path, corpus


def test_inspect_prints_the_sites(saved_model, capsys):
    path, _ = saved_model
    assert main(["inspect", "--model", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model_type"] == "gpt2" and info["d_mlp"] == 256 and info["mlp_out_transposed"] is True


def write_requests(path, records):
    path.write_text(json.dumps(records))
    return path


def good_records(n=4):
    subjects = ["Danielle Darrieux", "Toko Yasuda", "Edwin Hubble", "Michael Jordan"]
    return [{"case_id": i, "requested_rewrite": {"prompt": "The mother tongue of {}", "subject": subjects[i],
             "target_new": {"str": "English"}, "target_true": {"str": "French"}}} for i in range(n)]


def test_run_writes_result_and_deltas(saved_model, tmp_path):
    from safetensors.torch import load_file

    path, corpus = saved_model
    requests = write_requests(tmp_path / "r.json", good_records())
    out = tmp_path / "out"
    code = main(["run", "--model", str(path), "--requests", str(requests), "--editor", "memit",
                 "--constraint", "nullspace", "--corpus", str(corpus), "--batch-size", "2", "--quiet",
                 "--set", "v_steps=10", "--set", "clamp_norm=4", "--set", "nullspace.threshold=1e-3",
                 "--out", str(out)])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    assert result["summary"]["batches"] == 2 and len(result["requests"]) == 4
    assert result["run"]["constraints"] == ["nullspace"]
    assert result["batches"][0]["layers"]["1"]["nullspace.dim"] > 0
    assert result["manifest"]["config"]["overrides"]["nullspace.threshold"] == "1e-3"
    assert result["batches"][0]["peak_memory_mib"]["compute_residual"] > 0
    deltas = load_file(out / "deltas.safetensors")
    assert set(deltas) == {"transformer.h.1.mlp.c_proj"}
    assert tuple(deltas["transformer.h.1.mlp.c_proj"].shape) == (256, 64)  # Conv1D storage layout
    assert float(deltas["transformer.h.1.mlp.c_proj"].abs().sum()) > 0

    if sys.platform.startswith("linux"):  # the memory formula for this run, next to its measured stage peaks
        script = Path(__file__).resolve().parents[2] / "benchmarks" / "memory_of_run.py"
        figures = tmp_path / "memory.json"
        group = tmp_path / "group.json"
        done = subprocess.run([sys.executable, str(script), str(out), "--batch", "1", "--json", str(figures),
                               "--largest-group", str(group)], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        memory = json.loads(figures.read_text())
        # the largest v* group: batch 1's records (the stream's 3rd and 4th) that v* optimised together
        assert memory["largest_group"] and set(memory["largest_group"]) <= {0, 1}
        records = json.loads(group.read_text())
        assert [r["case_id"] for r in records] == [2 + i for i in memory["largest_group"]]
        assert memory["null_dims"] == [result["batches"][1]["layers"]["1"]["nullspace.dim"]]
        assert memory["held"]["weights"] == 4 * sum(
            t.numel() for t in load_file(path / "model.safetensors").values() if t.dtype.is_floating_point)
        assert memory["held"]["keys"] == 256 * 2 * 8 and memory["key_tokens"] > 0 and memory["vstar_bytes"] > 0
        stages = result["batches"][1]["peak_memory_mib"]
        pairs = {pair["formula"]: pair for pair in memory["pairs"]}
        assert pairs["commit Cp"]["measured_bytes"] == stages["commit_cp"] * 2**20  # Cp's growth has its stage
        assert pairs["v*"]["measured_bytes"] == stages["compute_targets"] * 2**20
        assert result["summary"]["peak_memory_mib"] >= max(max(b["peak_memory_mib"].values())
                                                           for b in result["batches"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--editor", "nope"], "unknown editor 'nope'; available: betaedit, emmet, encore, ft, lyaplock, memit, "
                               "prune, rect, rome"),
        (["--constraint", "nope"], "unknown constraint 'nope'; available: "),
        (["--set", "bogus=1"], "--set bogus: unknown hyperparameter"),
        (["--layers", "9"], "layers [9] out of range"),
    ],
)
def test_bad_usage_exits_2_and_writes_nothing(saved_model, tmp_path, capsys, argv, message):
    path, corpus = saved_model
    requests = write_requests(tmp_path / "r.json", good_records())
    out = tmp_path / "out"
    code = main(["run", "--model", str(path), "--requests", str(requests), "--corpus", str(corpus), "--quiet",
                 "--out", str(out), *argv])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_malformed_record_exits_2_naming_index_and_field(saved_model, tmp_path, capsys):
    path, _ = saved_model
    records = good_records()
    del records[2]["requested_rewrite"]["subject"]
    out = tmp_path / "out"
    code = main(["run", "--model", str(path), "--requests", str(write_requests(tmp_path / "r.json", records)),
                 "--quiet", "--out", str(out)])
    assert code == 2
    assert "record 2 (case_id 2): requested_rewrite.subject: required field is missing" in capsys.readouterr().err
    assert not out.exists()


def test_inspect_plan_sizes_state_from_the_config_alone(tmp_path, capsys):
    from transformers import LlamaConfig

    LlamaConfig(hidden_size=64, intermediate_size=224, num_hidden_layers=6, num_attention_heads=4,
                num_key_value_heads=2, vocab_size=100).save_pretrained(tmp_path)
    assert not list(tmp_path.glob("*.safetensors"))  # no weights anywhere
    assert main(["inspect", "--model", str(tmp_path), "--plan", "--layers", "1,2", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)["plan"]
    assert plan["layers"] == [1, 2] and plan["d_in"] == 224 and plan["d_out"] == 64
    alphaedit = plan["estimates"]["memit+nullspace"]["held"]
    assert alphaedit["Cp"] == 2 * 224 * 224 * 4 and alphaedit["C0 sums"] == 2 * 224 * 224 * 4
    assert plan["null_dim"] == 113 and alphaedit["null-space bases"] == 2 * 224 * 111 * 8  # complement stored
    shapes = [SiteShape(d_in=224, d_out=64, null=null) for null in range(225)]  # every null-space dimension
    worst = max(run_memory(weights=alphaedit["weights"], weight_element=4, sites=[s, s], edits=100,
                           background=False).peak for s in shapes)
    assert plan["estimates"]["memit+nullspace"]["peak_bytes"] == worst  # the plan is the worst case
    assert plan["estimates"]["memit"]["held"]["null-space bases"] == 0
    params = 100 * 64 * 2 + 6 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 224 + 2 * 64) + 64  # untied head
    assert alphaedit["weights"] == params * 4
    assert plan["estimates"]["memit+nullspace"]["peak_bytes"] > params * 4 + sum(
        v for k, v in alphaedit.items() if k not in ("weights", "baseline"))  # the peak adds a stage's transients
    assert plan["journal_bytes_per_batch"] == 2 * 224 * 64 * 8 + 2 * 224 * 100 * 8
    assert main(["inspect", "--model", str(tmp_path), "--plan", "--json"]) == 0  # the editor's default layers
    assert json.loads(capsys.readouterr().out)["plan"]["layers"] == [1, 2]


def test_dataset_file_with_bad_records_stops_or_skips(saved_model, tmp_path, capsys):
    path, corpus = saved_model
    good = good_records(3)
    bad = [{"case_id": 10, "requested_rewrite": {"prompt": "{} speaks", "subject": "Paris",
                                                  "target_new": {"str": ""}}},
           {"case_id": 1, "requested_rewrite": {"prompt": "{} speaks", "subject": "France",
                                                 "target_new": {"str": "English"}}}]
    data = write_requests(tmp_path / "mixed.json", good + bad)
    out = tmp_path / "out"
    common = ["run", "--model", str(path), "--dataset", str(data), "--corpus", str(corpus), "--quiet",
              "--metrics", "counterfact", "--set", "v_steps=4", "--batch-size", "3"]
    assert main([*common, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "2 bad record(s)" in err and "record 3 (case_id 10): requested_rewrite.target_new.str" in err
    assert "record 4 (case_id 1): case_id: duplicate of record 1" in err
    assert not out.exists()
    with pytest.warns(UserWarning, match="skipped 2 bad record"):
        assert main([*common, "--skip-invalid", "--out", str(out)]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["summary"]["skipped_records"] == 2 and result["summary"]["requests"] == 3
    assert len(result["manifest"]["skipped_records"]) == 2


def test_retention_probes_file_feeds_the_retention_metric(saved_model, tmp_path, capsys):
    path, corpus = saved_model
    requests = write_requests(tmp_path / "r.json", good_records(2))
    probes = tmp_path / "probes.json"
    probes.write_text(json.dumps([["Edwin Hubble", "The mother tongue of Edwin Hubble", "English"],
                                  ["Danielle Darrieux", "The mother tongue of Danielle Darrieux", "French"],
                                  ["Toko Yasuda", "Toko Yasuda speaks", "English"]]))
    out = tmp_path / "out"
    argv = ["run", "--model", str(path), "--requests", str(requests), "--corpus", str(corpus), "--quiet",
            "--metrics", "retention", "--set", "v_steps=2", "--out", str(out)]
    assert main([*argv, "--retention-probes", str(probes)]) == 0
    result = json.loads((out / "result.json").read_text())
    # the two edited subjects' probes are left out: one probe is scored, before and after
    assert result["metrics"]["pre"]["retention_probes"] == 1 == result["metrics"]["post"]["retention_probes"]

    probes.write_text(json.dumps([["Edwin Hubble", "The mother tongue of Edwin Hubble", "English"],
                                  ["Toko Yasuda", "", "English"], "not a triple"]))
    bad_out = tmp_path / "bad"
    assert main([*argv[:-1], str(bad_out), "--retention-probes", str(probes)]) == 2
    assert "entries [1, 2] are not [subject, prompt, object]" in capsys.readouterr().err
    assert not bad_out.exists()
