"""Causal tracing and general-capability metrics through the command line: ``editkit trace`` on a saved model
(the per-layer table, ``--out`` JSON), ``editkit run --metrics general,perplexity`` with ``--metric-option``,
and bad input to both: exit 2, one message naming the input, nothing written. Each ``editkit`` call is a subprocess."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

try:  # rootdir-style test modules (no __init__.py): the sibling module is importable by name
    from cli_harness import SUBJECTS, assert_clean_failure, editkit, snapshot, tiny_setup
except ImportError:  # pragma: no cover - if tests/ become packages
    from .cli_harness import SUBJECTS, assert_clean_failure, editkit, snapshot, tiny_setup

RELATIONS = ("{} plays", "{} was born in", "The mother tongue of {} is", "{} is in", "{} was founded by")


@pytest.fixture(scope="module")
def paths(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    found = tiny_setup(root)
    found["known"] = root / "known.json"
    found["known"].write_text(json.dumps(greedy_facts(found["model"])))
    data = root / "general"
    data.mkdir()
    (data / "sst2.jsonl").write_text("".join(json.dumps({"sentence": s, "label": i % 2}) + "\n"
                                             for i, s in enumerate(["a good film", "a bad film", "Paris is nice"])))
    (data / "mmlu.jsonl").write_text("".join(json.dumps({"question": f"Who is {s}?", "choices": ["a", "b", "c", "d"],
                                                         "answer": i % 4}) + "\n" for i, s in enumerate(SUBJECTS)))
    found["general"] = data
    found["texts"] = root / "texts.jsonl"
    found["texts"].write_text("".join(json.dumps({"text": s}) + "\n" for s in ["Paris is the capital of France.",
                                                                               "Apple was founded by Steve Jobs."]))
    return found


def greedy_facts(model_dir: Path) -> list[dict[str, str]]:
    """Known facts of the saved model, as known_1000.json was made: the model's own greedy next word."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    facts = []
    for subject in SUBJECTS:
        for relation in RELATIONS:
            prompt = relation.format(subject)
            with torch.no_grad():
                top = int(model(input_ids=torch.tensor([tok(prompt)["input_ids"]])).logits[0, -1].argmax())
            word = tok.decode([top])
            if word.startswith(" ") and word.strip().isalpha():
                facts.append({"subject": subject, "prompt": prompt, "attribute": word.strip()})
    assert len(facts) >= 3, facts
    return facts


def test_trace_prints_a_table_per_layer_and_writes_json(paths, tmp_path):
    out = tmp_path / "trace.json"
    proc = editkit("trace", "--model", paths["model"], "--requests", paths["known"], "--num-facts", "3",
                   "--samples", "2", "--out", out, "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["facts"] == 3 and result["n_layers"] == 4
    assert [row["layer"] for row in result["layers"]] == [0, 1, 2, 3]
    for row in result["layers"]:
        assert set(row["mlp"]) == {"mean", "se"} and set(row["hidden"]) == {"mean", "se"}
    assert len(result["per_fact"]) == 3 and len(result["per_fact"][0]["mlp_restored"]) == 4
    assert result["settings"]["samples"] == 2 and result["noise"]["multiplier"] == 3.0
    lines = proc.stdout.splitlines()
    assert any(line.split()[:3] == ["layer", "mlp", "IE"] for line in lines), proc.stdout
    assert sum(1 for line in lines if line.split() and line.split()[0] in {"0", "1", "2", "3"}) == 4


def test_trace_bad_input_is_named_and_nothing_is_written(paths, tmp_path):
    bad = tmp_path / "facts.json"
    good = json.loads(paths["known"].read_text())[0]
    bad.write_text(json.dumps([good, {"subject": "Paris", "prompt": "Paris is in"}]))
    out = tmp_path / "out" / "trace.json"
    before = snapshot(tmp_path)
    proc = editkit("trace", "--model", paths["model"], "--requests", bad, "--out", out, "--quiet", cwd=tmp_path)
    assert_clean_failure(proc, mentions=(str(bad), "record 1", "attribute: required field is missing"))
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps([{**good, "attribute": "zebra"}]))
    proc = editkit("trace", "--model", paths["model"], "--requests", unknown, "--out", out, "--quiet", cwd=tmp_path)
    assert_clean_failure(proc, mentions=(str(unknown), "the model gets none of the 1 facts right"))
    assert snapshot(tmp_path) == {**before, "unknown.json": snapshot(tmp_path)["unknown.json"]}
    assert not out.parent.exists()
    proc = editkit("trace", "--model", paths["model"], "--requests", paths["known"], "--out", tmp_path, cwd=tmp_path)
    assert_clean_failure(proc, mentions=("--out", "is a directory"))
    proc = editkit("trace", "--model", paths["model"], "--requests", paths["known"], "--kinds", "mlp,attn",
                   cwd=tmp_path)
    assert_clean_failure(proc, mentions=("--kinds 'mlp,attn'",))


def run_args(paths: dict[str, Path], out: Path, *options: str) -> list[str]:
    return ["run", "--model", str(paths["model"]), "--requests", str(paths["requests"]), "--corpus",
            str(paths["corpus"]), "--batch-size", "2", "--num-edits", "2", "--set", "v_steps=2", "--no-stats-store",
            "--metrics", "general,perplexity", *options, "--quiet", "--out", str(out)]


def test_run_reports_general_and_perplexity_with_metric_options(paths, tmp_path):
    out = tmp_path / "run"
    proc = editkit(*run_args(paths, out, "--metric-option", f"general.data={paths['general']}",
                             "--metric-option", "general.tasks=sst2,mmlu", "--metric-option", "general.offset=0",
                             "--metric-option", "general.limit=3", "--metric-option",
                             f"perplexity.data={paths['texts']}"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((out / "result.json").read_text())
    for phase in ("pre", "post"):
        figures = result["metrics"][phase]
        assert {"general_sst2_f1", "general_mmlu_acc", "perplexity", "perplexity_tokens"} <= set(figures)
        assert figures["perplexity"] > 1
    manifest = json.loads((out / "journal" / "manifest.json").read_text())
    assert "general.limit=3" in manifest["invocation"]["metric_options"]  # --resume rebuilds them


def test_run_without_metric_data_warns_once_and_reports_nothing_for_it(paths, tmp_path):
    out = tmp_path / "run"
    proc = editkit(*run_args(paths, out), cwd=tmp_path, env={"EDITKIT_GENERAL_DATA": "",
                                                             "EDITKIT_PERPLEXITY_DATA": str(paths["texts"])})
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("general: no data") == 1, proc.stderr
    figures = json.loads((out / "result.json").read_text())["metrics"]["pre"]
    assert "perplexity" in figures and not any(k.startswith("general") for k in figures)


def test_bad_metric_option_or_data_stops_before_any_edit(paths, tmp_path):
    out = tmp_path / "run"
    proc = editkit(*run_args(paths, out, "--metric-option", "general.limt=3"), cwd=tmp_path)
    assert_clean_failure(proc, mentions=("--metric-option general.limt", "valid: general.data"))
    assert not out.exists()
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "sst2.jsonl").write_text('{"sentence": "fine", "label": 1}\n{"sentence": "", "label": 0}\n')
    proc = editkit(*run_args(paths, out, "--metric-option", f"general.data={broken}", "--metric-option",
                             "general.tasks=sst2", "--metric-option", "general.offset=0"), cwd=tmp_path)
    assert_clean_failure(proc, mentions=(f"{broken / 'sst2.jsonl'} line 2", "sentence: expected a non-empty string"))
    assert not (out / "result.json").exists() and not (out / "journal").exists()
