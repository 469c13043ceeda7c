"""Request files that used to crash or mislead ``editkit run``, and what an interrupted run says, through the CLI.

* request text with terminal escape codes is printed escaped (``\\x1b``), and kept as it is in result.json;
* a number where a target string belongs is a bad record (exit 2 naming it; skipped with --skip-invalid);
* an empty target is shown as it was given (``''``), a string where a list belongs is refused, not read
  character by character;
* Ctrl-C says how to go on: ``editkit run --resume DIR`` once a batch is journaled, else start again.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from cli_harness import SUBJECTS, assert_clean_failure, editkit, fast_run_args, snapshot, tiny_setup

from editkit.job.journal import Journal

CONTROL_CHARACTERS = ("\x1b", "\x9b", "\x07", "\x08")


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("robust-requests")


@pytest.fixture(scope="module")
def paths(root) -> dict[str, Path]:
    return tiny_setup(root, requests=8)


def rewrite(case_id, subject, new="English", true="French", prompt="The mother tongue of {}", **more):
    return {"case_id": case_id, "requested_rewrite": {"prompt": prompt, "subject": subject,
                                                      "target_new": {"str": new}, "target_true": {"str": true}},
            **more}


def run_args(paths: dict[str, Path], out: Path, records: list, where: Path) -> list[str]:
    """:func:`fast_run_args` on ``records`` (written to ``where/requests.json``)."""
    (where / "requests.json").write_text(json.dumps(records))
    args = fast_run_args(paths, out)
    args[args.index("--requests") + 1] = str(where / "requests.json")
    return args


# ------------------------------------------------------------------ (6) escape codes in request text


def test_escape_codes_in_request_text_are_printed_escaped(paths, tmp_path):
    """The reported case: target_new "Tamil \\u001b[31mRED" with --completions 2 turned the terminal red. Every
    request text the completions table shows (subject, targets, prompts) is printed with its control characters
    escaped; result.json keeps the text as it was."""
    records = [
        rewrite(0, SUBJECTS[0], new="Tamil \u001b[31mRED", paraphrase_prompts=[f"\u009b2J{SUBJECTS[0]} speaks"],
                neighborhood_prompts=[f"The mother tongue of {SUBJECTS[2]}\u0007"]),
        rewrite(1, SUBJECTS[1], true="Japa\bnese", prompt="\u001b]0;title\u0007The mother tongue of {}"),
    ]
    out = tmp_path / "out"
    proc = editkit(*run_args(paths, out, records, tmp_path), "--completions", "2", cwd=tmp_path,
                   env={"COLUMNS": "300"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    for char in CONTROL_CHARACTERS:
        assert char not in proc.stdout, f"{char!r} reached the terminal:\n{proc.stdout}"
        assert char not in proc.stderr, f"{char!r} reached the terminal:\n{proc.stderr}"
    for shown in (r"Tamil \x1b[31mRED", r"\x9b2J" + SUBJECTS[0], SUBJECTS[2] + r"\x07", r"Japa\x08nese",
                  r"\x1b]0;title\x07The mother tongue of " + SUBJECTS[1]):
        assert shown in proc.stdout, f"{shown!r} not in the completions table:\n{proc.stdout}"
    completions = json.loads((out / "result.json").read_text())["completions"]
    assert completions[0]["target_new"] == "Tamil \u001b[31mRED"  # the data is unchanged
    assert {c["prompt"] for c in completions} >= {f"\u009b2J{SUBJECTS[0]} speaks",
                                                  f"The mother tongue of {SUBJECTS[2]}\u0007"}


def test_escape_codes_in_an_error_message_are_printed_escaped(paths, tmp_path):
    """A bad record's case id is request text too: the error line shows it escaped."""
    records = [rewrite("7\u001b[2J\u001b[H", SUBJECTS[0], new="")]
    args = run_args(paths, tmp_path / "out", records, tmp_path)
    before = snapshot(tmp_path)
    proc = editkit(*args, cwd=tmp_path)
    assert_clean_failure(proc, mentions=(r"record 0 (case_id 7\x1b[2J\x1b[H): requested_rewrite.target_new.str",))
    assert "\x1b" not in proc.stderr
    assert snapshot(tmp_path) == before, "a failed run wrote files"


# ------------------------------------------------------------------ (7) a number for a target string


def test_a_number_for_a_target_is_a_bad_record(paths, tmp_path):
    """{"str": 42} used to end in AttributeError: 'int' object has no attribute 'startswith'."""
    records = [rewrite(0, SUBJECTS[0]), rewrite(1, SUBJECTS[1], new=42), rewrite(2, SUBJECTS[2], true=3.5)]
    args = run_args(paths, tmp_path / "out", records, tmp_path)
    before = snapshot(tmp_path)
    proc = editkit(*args, cwd=tmp_path)
    assert_clean_failure(proc, mentions=(
        "2 bad record(s)",
        "record 1 (case_id 1): requested_rewrite.target_new.str: expected a non-empty string, got 42",
        "record 2 (case_id 2): requested_rewrite.target_true.str: expected a non-empty string, got 3.5",
    ))
    assert snapshot(tmp_path) == before, "a failed run wrote files"


def test_skip_invalid_skips_a_record_with_a_number_for_a_target(paths, tmp_path):
    records = [rewrite(0, SUBJECTS[0]), rewrite(1, SUBJECTS[1], new=42), rewrite(2, SUBJECTS[2])]
    out = tmp_path / "out"
    proc = editkit(*run_args(paths, out, records, tmp_path), "--skip-invalid", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "skipped 1 bad record(s)" in proc.stderr
    result = json.loads((out / "result.json").read_text())
    assert [r["case_id"] for r in result["requests"]] == [0, 2]
    assert result["summary"]["skipped_records"] == 1
    assert result["manifest"]["skipped_records"] == [
        "record 1 (case_id 1): requested_rewrite.target_new.str: expected a non-empty string, got 42"]


# ------------------------------------------------------------------ (13) empty targets, strings for lists


def test_empty_targets_and_strings_for_lists_are_named_as_given(paths, tmp_path):
    """target_new "" was reported as got ' '; a string for neighborhood_prompts was validated character by
    character (and accepted, as one prompt per character)."""
    records = [
        rewrite(0, SUBJECTS[0], new=""),
        rewrite(1, SUBJECTS[1], neighborhood_prompts="abc"),
        rewrite(2, SUBJECTS[2], paraphrase_prompts="Edwin Hubble speaks"),
        rewrite(3, SUBJECTS[3], generation_prompts="Michael Jordan"),
        rewrite(4, "Lionel Messi", attribute_prompts="Messi"),
        rewrite(5, "Steve Jobs", locality="Where is Paris?"),
        rewrite(6, "Paris", portability="What is Paris known for?"),
    ]
    args = run_args(paths, tmp_path / "out", records, tmp_path)
    before = snapshot(tmp_path)
    proc = editkit(*args, cwd=tmp_path)
    assert_clean_failure(proc, mentions=(
        "7 bad record(s)",
        "record 0 (case_id 0): requested_rewrite.target_new.str: expected a non-empty string, got ''",
        "record 1 (case_id 1): neighborhood_prompts: expected a list of strings, got 'abc'",
        "record 2 (case_id 2): paraphrase_prompts: expected a list of strings, got 'Edwin Hubble speaks'",
        "record 3 (case_id 3): generation_prompts: expected a list of strings, got 'Michael Jordan'",
        "record 4 (case_id 4): attribute_prompts: expected a list of strings, got 'Messi'",
        'record 5 (case_id 5): locality: expected a list of {"prompt", "answer"} objects, got \'Where is Paris?\'',
        'record 6 (case_id 6): portability: expected a list of {"prompt", "answer"} objects',
    ))
    assert "got ' '" not in proc.stderr
    assert snapshot(tmp_path) == before, "a failed run wrote files"


# ------------------------------------------------------------------ (14) Ctrl-C


def _interrupting(monkeypatch, at_batch: int) -> None:
    """Ctrl-C (Python's KeyboardInterrupt, what SIGINT raises) when the run starts batch ``at_batch``: at a point
    the test chooses, not at one a timer hits."""
    from editkit.run import EditRun

    edit = EditRun.edit

    def interrupted(self, requests):
        if len(self.reports) == at_batch:
            raise KeyboardInterrupt
        return edit(self, requests)

    monkeypatch.setattr(EditRun, "edit", interrupted)


def _one_request_batches(paths: dict[str, Path], out: Path) -> list[str]:
    args = fast_run_args(paths, out)
    args[args.index("--batch-size") + 1] = "1"
    return args


def test_ctrl_c_after_a_journaled_batch_prints_the_resume_command(paths, tmp_path, monkeypatch, capsys):
    from editkit.cli.main import main

    out = tmp_path / "out dir"  # a space: the command printed must still be one to paste
    _interrupting(monkeypatch, at_batch=2)
    assert main(_one_request_batches(paths, out)) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and not (out / "result.json").exists()
    assert [e.index for e in Journal(out).entries()] == [0, 1]
    command = f"editkit run --resume {shlex.quote(str(out))}"
    [line] = [line for line in err.splitlines() if "interrupted" in line]
    assert line == f"editkit run: interrupted; its journaled batches are kept; continue it with: {command}"
    monkeypatch.undo()  # the printed command continues the run
    assert main([*shlex.split(line.rsplit(": ", 1)[1])[1:], "--quiet"]) == 0
    assert [e.index for e in Journal(out).entries()] == list(range(8)) and (out / "result.json").exists()


def test_ctrl_c_before_any_journaled_batch_says_to_start_again(paths, tmp_path, monkeypatch, capsys):
    from editkit.cli.main import main

    out = tmp_path / "out"
    _interrupting(monkeypatch, at_batch=0)
    assert main(_one_request_batches(paths, out)) == 130
    [line] = [line for line in capsys.readouterr().err.splitlines() if "interrupted" in line]
    assert "nothing was journaled" in line and "nothing to resume" in line and str(out) in line
    assert not Journal(out).has_complete_batch()
