"""Bad option values and records, through the CLI.

Every bad input ends with exit 2, one message naming the input, no traceback and nothing written;
what used to succeed silently (an edit with nothing to change, an empty null space) now says so.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
import torch
from cli_harness import SUBJECTS, assert_clean_failure, editkit, fast_run_args, snapshot, tiny_setup

from editkit.testing.tiny import tiny_tokenizer


@pytest.fixture(scope="module")
def paths(tmp_path_factory) -> dict[str, Path]:
    """:func:`tiny_setup`'s files, plus ``model64``: a 64-position GPT-2 with 32 MLP keys (its C0 on the
    corpus has full rank, so a tiny null-space threshold leaves an empty null space)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    root = tmp_path_factory.mktemp("bad_input")
    out = tiny_setup(root)
    tok = tiny_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(tok), n_layer=3, n_embd=32, n_inner=32, n_head=4, n_positions=64,
                        pad_token_id=0, bos_token_id=1, eos_token_id=2)
    model = GPT2LMHeadModel(config).eval()
    model.save_pretrained(root / "model64")
    tok.save_pretrained(root / "model64")
    out["model64"] = root / "model64"
    return out


def rewrite(case_id, subject, new="English", true="French", prompt="The mother tongue of {}", **more):
    return {"case_id": case_id, "requested_rewrite": {"prompt": prompt, "subject": subject,
                                                      "target_new": {"str": new}, "target_true": {"str": true}},
            **more}


def requests_file(root: Path, records: list) -> Path:
    path = root / "requests.json"
    path.write_text(json.dumps(records))
    return path


def with_option(args: list[str], option: str, value: str) -> list[str]:
    """``args`` with ``option`` set to ``value`` (replaced where it is given already)."""
    args = list(args)
    if option in args:
        args[args.index(option) + 1] = value
        return args
    return [*args, option, value]


def fails_cleanly(tmp_path: Path, argv: list, mentions: tuple[str, ...]) -> None:
    before = snapshot(tmp_path)
    proc = editkit(*argv, cwd=tmp_path)
    assert_clean_failure(proc, code=2, mentions=mentions)
    assert snapshot(tmp_path) == before, "a failed run wrote files"


# ------------------------------------------------------------------ --out that cannot be written


def test_out_is_a_regular_file(paths, tmp_path):
    (tmp_path / "taken").write_text("mine")
    fails_cleanly(tmp_path, fast_run_args(paths, tmp_path / "taken"), (f"--out {tmp_path / 'taken'}", "is a file"))
    assert (tmp_path / "taken").read_text() == "mine"


def test_out_under_a_regular_file(paths, tmp_path):
    (tmp_path / "taken").write_text("mine")
    fails_cleanly(tmp_path, fast_run_args(paths, tmp_path / "taken" / "run"), (f"{tmp_path / 'taken'} is a file",))


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc")
def test_out_under_proc(paths, tmp_path):
    fails_cleanly(tmp_path, fast_run_args(paths, Path("/proc/editkit-run")),
                  ("--out /proc/editkit-run", "cannot create anything in /proc"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into a read-only directory")
def test_out_in_a_read_only_directory(paths, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        fails_cleanly(tmp_path, fast_run_args(paths, locked / "run"), (f"cannot create anything in {locked}",))
    finally:
        locked.chmod(0o755)


# ------------------------------------------------------------------ --layers, --device


@pytest.mark.parametrize(("layers", "says"), [
    ("-1", "layers count from 0"),
    ("1,1", "layer 1 is given twice"),
    ("", "no layer given"),
    ("3-1", "the range '3-1' is empty"),
])
def test_bad_layers(paths, tmp_path, layers, says):
    fails_cleanly(tmp_path, with_option(fast_run_args(paths, tmp_path / "out"), "--layers", layers),
                  (f"--layers {layers!r}", says))


def test_layers_beyond_the_model(paths, tmp_path):
    fails_cleanly(tmp_path, with_option(fast_run_args(paths, tmp_path / "out"), "--layers", "2,9"),
                  ("[9]", "the model has layers 0..3"))


def test_inspect_plan_with_bad_layers(paths, tmp_path):
    fails_cleanly(tmp_path, ["inspect", "--model", paths["model"], "--plan", "--layers", "-1"],
                  ("--layers '-1'", "layers count from 0"))


@pytest.mark.parametrize(("device", "says"), [
    ("gpu0", "not a torch device"),
    ("cuda:99", "cuda"),
    pytest.param("cuda", "no cuda device is available",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_bad_device(paths, tmp_path, device, says):
    fails_cleanly(tmp_path, with_option(fast_run_args(paths, tmp_path / "out"), "--device", device),
                  (f"--device {device!r}", says))


# ------------------------------------------------------------------ nothing to edit


def test_a_record_with_nothing_to_edit_is_a_bad_record(paths, tmp_path):
    records = [rewrite(0, SUBJECTS[0]), rewrite(7, SUBJECTS[1], new="French", true="French")]
    args = with_option(fast_run_args(paths, tmp_path / "out"), "--requests", str(requests_file(tmp_path, records)))
    fails_cleanly(tmp_path, args, ("record 1 (case_id 7)", "requested_rewrite.target_new.str", "is also target_true"))


# ------------------------------------------------------------------ longer than the model's context


def test_a_request_longer_than_the_context_is_a_bad_record(paths, tmp_path):
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 3 + "{} speaks"
    records = [rewrite(0, SUBJECTS[0]), rewrite(5, SUBJECTS[1], prompt=long_prompt)]
    args = with_option(fast_run_args(paths, tmp_path / "out"), "--requests", str(requests_file(tmp_path, records)))
    args = with_option(args, "--model", str(paths["model64"]))
    fails_cleanly(tmp_path, args, ("record 1 (case_id 5)", "requested_rewrite.prompt + target_",
                                   "longer than the model's context of 64 positions", "--skip-invalid"))


def test_skip_invalid_skips_over_long_requests_and_metrics_skip_over_long_prompts(paths, tmp_path):
    """One run: a request too long is skipped (listed in result.json); an evaluation prompt too long is skipped
    by the counterfact metric and counted; the files written have the ordinary mode."""
    long_text = "The quick brown fox jumps over the lazy dog. " * 4  # 80 tokens
    records = [rewrite(0, SUBJECTS[0], paraphrase_prompts=[f"{SUBJECTS[0]} speaks", long_text + SUBJECTS[0]],
                       neighborhood_prompts=[f"The mother tongue of {SUBJECTS[2]}"]),
               rewrite(1, SUBJECTS[1], prompt=long_text + "{} speaks"),
               rewrite(2, SUBJECTS[3], paraphrase_prompts=[f"{SUBJECTS[3]} speaks"], neighborhood_prompts=[long_text])]
    out = tmp_path / "out"
    args = with_option(fast_run_args(paths, out), "--requests", str(requests_file(tmp_path, records)))
    args = with_option(with_option(args, "--model", str(paths["model64"])), "--metrics", "counterfact")
    proc = editkit(*args, "--skip-invalid", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "skipped 1 record(s) too long for the model's context of 64 positions" in proc.stderr
    assert "counterfact: skipped 2 of" in proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert [r["case_id"] for r in result["requests"]] == [0, 2]  # the records' own type
    assert result["summary"]["skipped_records"] == 1
    assert result["manifest"]["skipped_records"][0].startswith("record 1 (case_id 1): requested_rewrite.prompt")
    for phase in ("pre", "post"):
        assert result["metrics"][phase]["counterfact_skipped_prompts"] == 2.0
        assert {"efficacy", "generalisation", "specificity"} <= set(result["metrics"][phase])
    umask = os.umask(0)
    os.umask(umask)
    for name in ("result.json", "deltas.safetensors", "journal/manifest.json", "journal/batch-00000/delta.safetensors"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o666 & ~umask, name


def test_real_counterfact_paraphrases_on_a_64_position_model(paths, tmp_path):
    """The reported case: CounterFact's paraphrases (with their long generated prefixes) run past a 64-position
    model's context; the counterfact metric used to end in an IndexError in the embedding."""
    from conftest import require_real_data

    sample = require_real_data("counterfact_sample.json")
    out = tmp_path / "out"
    args = with_option(with_option(fast_run_args(paths, out), "--requests", str(sample)), "--model",
                       str(paths["model64"]))
    proc = editkit(*with_option(args, "--metrics", "counterfact"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    post = json.loads((out / "result.json").read_text())["metrics"]["post"]
    assert post["counterfact_skipped_prompts"] >= 1 and "generalisation" in post


# ------------------------------------------------------------------ an empty null space


def test_an_empty_null_space_is_warned_and_noted(paths, tmp_path):
    out = tmp_path / "out"
    args = [("nullspace.threshold=1e-12" if a == "nullspace.threshold=1e-3" else a)
            for a in with_option(fast_run_args(paths, out), "--model", str(paths["model64"]))]
    args = [*args, "--layers", "1"]
    proc = editkit(*args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stderr.count("the null space at layer 1 is empty") == 1, proc.stderr
    assert "below the threshold 1e-12" in proc.stderr
    result = json.loads((out / "result.json").read_text())
    for batch in result["batches"]:
        assert batch["layers"]["1"]["nullspace.empty"]["threshold"] == 1e-12
