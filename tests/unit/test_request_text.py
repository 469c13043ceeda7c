"""Request text as the command line shows it (control characters escaped), and record fields of the wrong type:
each named with the value as given, none crashing and none taken apart character by character."""

from __future__ import annotations

import pytest

from editkit.cli.completion_table import print_completions, short
from editkit.cli.run import resume_hint
from editkit.requests import EditRequest, parse_records, printable


def record(case_id=0, rewrite=None, **more):
    base = {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
            "target_new": {"str": "English"}, "target_true": {"str": "French"}}
    base.update(rewrite or {})
    return {"case_id": case_id, "requested_rewrite": base, **more}


def problem(rec) -> str:
    requests, problems = parse_records([rec])
    assert not requests
    [message] = problems
    return message


# ------------------------------------------------------------------ printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Tamil \x1b[31mRED", r"Tamil \x1b[31mRED"),
        ("a\x9b2Jb", r"a\x9b2Jb"),  # C1: CSI
        ("bell\x07 nul\x00 del\x7f", r"bell\x07 nul\x00 del\x7f"),
        ("line\nnext\tcell\rback", r"line\nnext\tcell\rback"),
        ("abc\u202eevil\u2066x\u2028", r"abc\u202eevil\u2066x\u2028"),
        ("Tamil தமிழ் Éire naïve 日本語 \u200d", "Tamil தமிழ் Éire naïve 日本語 \u200d"),  # text is left alone
        (42, "42"),
    ],
)
def test_printable_escapes_control_characters_only(text, shown):
    assert printable(text) == shown


def test_printable_keeps_the_lines_of_a_message():
    assert printable("2 bad record(s):\n  record 0 (case_id \x1b[2J)\tx\ry", lines=True) == \
        "2 bad record(s):\n  record 0 (case_id \\x1b[2J)\tx\\ry"


def test_the_completions_table_shows_request_text_escaped(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    records = [{"case_id": "1", "subject": "Danielle\x07 Darrieux", "kind": "rewrite",
                "prompt": "The mother tongue of \x1b]0;t\x07Danielle", "target_true": "Fr\x9bench",
                "target_new": "Tamil \x1b[31mRED", "before": "French\x1b[0m", "after": "Tamil\x1b[5m",
                "after_as_expected": True}]
    print_completions(records, 1)
    out = capsys.readouterr().out
    assert not set(out) & {"\x1b", "\x07", "\x9b"}, out
    for shown in (r"Danielle\x07 Darrieux: Fr\x9bench -> Tamil \x1b[31mRED", r"\x1b]0;t\x07Danielle",
                  r"French\x1b[0m", r"Tamil\x1b[5m"):
        assert shown in out, out
    cut = short("\x1b[31m" * 10)
    assert "\x1b" not in cut and cut.startswith(r"\x1b[31m") and len(cut) == 20


# ------------------------------------------------------------------ (7) a number for a target


@pytest.mark.parametrize(("field", "value"), [
    *[(field, value) for field in ("target_new", "target_true") for value in (42, 3.5, True, ["x"], {"en": "x"})],
    ("target_new", None),  # (a null target_true is no target_true)
])
def test_a_target_that_is_not_a_string_is_a_bad_record(field, value):
    message = problem(record(3, {field: {"str": value}}))
    assert message == (f"record 0 (case_id 3): requested_rewrite.{field}.str: expected a non-empty string, "
                       f"got {value!r}")


def test_a_target_that_is_not_a_string_fails_at_construction():
    with pytest.raises(ValueError, match=r"^target_new: expected a non-empty string, got 42$"):
        EditRequest(case_id=1, subject="S", prompt="{} is", target_new=42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"^target_true: expected a non-empty string, got 7$"):
        EditRequest(case_id=1, subject="S", prompt="{} is", target_new="x", target_true=7)  # type: ignore[arg-type]


def test_a_target_that_is_not_an_object_is_named():
    assert problem(record(0, {"target_new": "English"})) == (
        "record 0 (case_id 0): requested_rewrite.target_new: expected an object with a 'str' field, got 'English'")
    assert problem(record(0, {"target_true": "French"})) == (
        "record 0 (case_id 0): requested_rewrite.target_true: expected an object with a 'str' field, got 'French'")


# ------------------------------------------------------------------ (13) the value as given; strings for lists


@pytest.mark.parametrize("value", ["", "   "])
@pytest.mark.parametrize("field", ["target_new", "target_true"])
def test_a_blank_target_is_shown_as_given(field, value):
    message = problem(record(0, {field: {"str": value}}))
    assert message == f"record 0 (case_id 0): requested_rewrite.{field}.str: expected a non-empty string, got {value!r}"


@pytest.mark.parametrize("field", ["paraphrase_prompts", "neighborhood_prompts", "generation_prompts",
                                   "attribute_prompts", "dependancy_generation_prompts"])
@pytest.mark.parametrize("value", ["abc", {"a": "b"}, 5, None])
def test_a_string_list_field_that_is_not_a_list_is_refused(field, value):
    assert problem(record(0, **{field: value})) == (
        f"record 0 (case_id 0): {field}: expected a list of strings, got {value!r}")


@pytest.mark.parametrize("field", ["paraphrase_prompts", "neighborhood_prompts", "generation_prompts"])
def test_a_request_list_field_that_is_not_a_list_fails_at_construction(field):
    with pytest.raises(ValueError, match=f"^{field}: expected a list of strings, got 'abc'$"):
        EditRequest(case_id=1, subject="S", prompt="{} is", target_new="x", **{field: "abc"})
    request = EditRequest(case_id=1, subject="S", prompt="{} is", target_new="x", **{field: ["S is", "S was"]})
    assert getattr(request, field) == ("S is", "S was")


def test_items_of_string_lists_are_checked():
    assert problem(record(0, paraphrase_prompts=["ok", 5])) == (
        "record 0 (case_id 0): paraphrase_prompts[1]: expected a non-empty string, got 5")
    assert problem(record(0, attribute_prompts=["ok", ["nested"]])) == (
        "record 0 (case_id 0): attribute_prompts[1]: expected a string, got ['nested']")


@pytest.mark.parametrize("field", ["locality", "portability"])
def test_question_lists_are_checked(field):
    assert problem(record(0, **{field: "Where is Paris?"})) == (
        f'record 0 (case_id 0): {field}: expected a list of {{"prompt", "answer"}} objects, got \'Where is Paris?\'')
    assert problem(record(0, **{field: ["Where is Paris?"]})) == (
        f'record 0 (case_id 0): {field}[0]: expected a {{"prompt", "answer"}} object, got \'Where is Paris?\'')
    assert problem(record(0, **{field: [{"prompt": "Paris is in", "answer": 5}]})) == (
        f"record 0 (case_id 0): {field}[0].answer: expected a string, got 5")
    assert problem(record(0, **{field: [{"prompt": "", "answer": "France"}]})) == (
        f"record 0 (case_id 0): {field}[0].prompt: expected a non-empty string, got ''")
    good = [{"prompt": "Paris is in", "answer": "France", "kind": "one_hop"}]
    [request], problems = parse_records([record(0, **{field: good})])
    assert not problems and request.record is not None and request.record[field] == good


def test_an_upstream_portability_object_is_kept():
    """EasyEdit's CounterFact records carry portability as one object: no editkit code reads it; it is kept."""
    upstream = {"New Question": "What food is Paris known for?", "New Answer": "croissants"}
    [request], problems = parse_records([record(0, portability=upstream)])
    assert not problems and request.record is not None and request.record["portability"] == upstream
    assert problem(record(0, locality={"Relation_Specificity": []})).startswith(
        'record 0 (case_id 0): locality: expected a list of {"prompt", "answer"} objects, got {')


def test_a_long_value_is_cut_in_the_message():
    message = problem(record(0, neighborhood_prompts="x" * 500))
    assert message.endswith(" ...") and len(message) < 200


def test_a_case_id_is_shown_escaped_in_messages():
    assert problem(record("7\x1b[2J", {"target_new": {"str": ""}})).startswith(r"record 0 (case_id 7\x1b[2J): ")


# ------------------------------------------------------------------ (14) what an interrupted run leaves to do


def test_resume_hint(tmp_path):
    out = tmp_path / "run dir"
    assert resume_hint(out).startswith(f"nothing was journaled in '{out}'")
    (out / "journal" / "batch-00000").mkdir(parents=True)
    assert resume_hint(out).startswith("nothing was journaled")  # a batch without its entry.json is not complete
    (out / "journal" / "batch-00000" / "entry.json").write_text("{}")
    assert resume_hint(out) == f"its journaled batches are kept; continue it with: editkit run --resume '{out}'"
