"""Edit requests: construction-time validation with field names; record parsing names every bad record."""

from __future__ import annotations

import json

import pytest

from editkit.errors import InputError
from editkit.requests import EditRequest, load_requests, parse_records, requests_from_records


def record(case_id=0, **rewrite):
    base = {"prompt": "The mother tongue of {} is", "subject": "Danielle Darrieux",
            "target_new": {"str": "English"}, "target_true": {"str": "French"}}
    base.update(rewrite)
    return {"case_id": case_id, "requested_rewrite": base}


def test_valid_request_gets_leading_spaces():
    r = EditRequest(case_id=1, subject="Danielle Darrieux", prompt="The mother tongue of {} is", target_new="English")
    assert r.target_new == " English" and r.filled_prompt == "The mother tongue of Danielle Darrieux is"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"prompt": "no slot here"}, "prompt"),
        ({"prompt": "{} and {}"}, "prompt"),
        ({"target_new": "  "}, "target_new"),
        ({"subject": ""}, "subject"),
        ({"subject": " padded "}, "subject"),
        ({"target_new": "French", "target_true": " French"}, "target_new"),  # nothing to edit
    ],
)
def test_invalid_request_names_the_field(kwargs, field):
    args = {"case_id": 1, "subject": "S", "prompt": "{} is", "target_new": "x"} | kwargs
    with pytest.raises(ValueError, match=f"^{field}"):
        EditRequest(**args)


def test_filled_prompt_in_record_becomes_a_template():
    [r] = requests_from_records([record(prompt="The mother tongue of Danielle Darrieux is")])
    assert r.prompt == "The mother tongue of {} is"


def test_all_bad_records_are_named(tmp_path):
    records = [
        record(0),
        record(1, target_new={"str": ""}),
        {"case_id": 2, "requested_rewrite": {"prompt": "{} is", "subject": "X"}},
        record(0),
        record(4, prompt="Nothing to fill", subject="Nobody"),
    ]
    with pytest.raises(InputError) as err:
        requests_from_records(records)
    msg = str(err.value)
    assert "4 bad record(s)" in msg
    assert "record 1 (case_id 1): requested_rewrite.target_new.str" in msg
    assert "record 2 (case_id 2): requested_rewrite.target_new.str: required field is missing" in msg
    assert "record 3 (case_id 0): case_id: duplicate of record 0" in msg
    assert "record 4 (case_id 4): requested_rewrite.prompt" in msg
    path = tmp_path / "r.json"
    path.write_text("{not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_requests(path)
    path.write_text(json.dumps({"a": 1}))
    with pytest.raises(InputError, match="expected a JSON list"):
        load_requests(path)


def test_a_record_whose_new_target_is_its_true_target_is_a_bad_record():
    requests, problems = parse_records([record(0), record(1, target_new={"str": "French"})])
    assert [r.case_id for r in requests] == ["0"]
    assert problems == ["record 1 (case_id 1): requested_rewrite.target_new.str: 'French' is also target_true: "
                        "there is nothing to edit"]
