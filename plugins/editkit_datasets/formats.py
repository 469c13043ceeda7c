"""Record formats of the real editing datasets, mapped to editkit's CounterFact record form.

Every converter returns a dict with ``case_id``, ``requested_rewrite`` (prompt template with
``{}``, subject, target_new, optional target_true) and the evaluation prompts the metrics read:
``paraphrase_prompts``, ``neighborhood_prompts`` (CounterFact), ``locality`` and ``portability``
(``[{"prompt", "answer"}]``, ZsRE and KnowEdit). A record that cannot be mapped raises
``ValueError`` whose message starts with the offending field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _first(value: Any) -> Any:
    """``"x"``, ``["x", ...]`` or ``[["x", alias...]]`` → ``"x"`` (KnowEdit's answer shapes)."""
    while isinstance(value, list):
        if not value:
            return None
        value = value[0]
    return value


def _text(record: Mapping[str, Any], field: str) -> str:
    if field not in record or record[field] is None:
        raise ValueError(f"{field}: required field is missing")
    value = _first(record[field])
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field}: expected a non-empty string, got {record[field]!r}")
    return value


def _template(prompt: str, subject: str, field: str) -> str:
    if "{}" in prompt:
        return prompt
    if subject not in prompt:
        raise ValueError(f"{field}: the subject {subject!r} does not occur in the prompt {prompt!r}")
    return prompt.replace(subject, "{}", 1)


def _pairs(groups: Any) -> list[dict[str, str]]:
    """KnowEdit ``{"Kind": [{"prompt", "ground_truth"}]}`` → ``[{"prompt", "answer", "kind"}]``."""
    out = []
    if isinstance(groups, Mapping):
        for kind, items in groups.items():
            for item in items or []:
                answer = _first(item.get("ground_truth"))
                if isinstance(item.get("prompt"), str) and isinstance(answer, str) and answer.strip():
                    out.append({"prompt": item["prompt"], "answer": answer, "kind": kind})
    return out


def detect(record: Mapping[str, Any]) -> str:
    """The format of one record, from its fields."""
    if "requested_rewrite" in record:
        return "counterfact"
    if "locality_prompt" in record and "ground_truth" in record:
        return "counterfact-easyedit"
    if "src" in record and ("answers" in record or "alt" in record):
        return "zsre"
    if "prompt" in record and "target_new" in record and ("locality" in record or "portability" in record):
        return "knowedit"
    raise ValueError("record: unknown format (expected CounterFact, EasyEdit CounterFact, ZsRE or KnowEdit fields)")


def from_counterfact(record: Mapping[str, Any], index: int) -> dict[str, Any]:
    return dict(record)


def from_easyedit(record: Mapping[str, Any], index: int) -> dict[str, Any]:
    subject = _text(record, "subject")
    return {
        "case_id": record.get("case_id", index),
        "requested_rewrite": {
            "prompt": _template(_text(record, "prompt"), subject, "prompt"),
            "subject": subject,
            "target_new": {"str": _text(record, "target_new")},
            "target_true": {"str": _text(record, "ground_truth")},
        },
        "paraphrase_prompts": [record["rephrase_prompt"]] if record.get("rephrase_prompt") else [],
        "neighborhood_prompts": [record["locality_prompt"]] if record.get("locality_prompt") else [],
    }


def from_zsre(record: Mapping[str, Any], index: int, *, target: str = "answers") -> dict[str, Any]:
    subject = _text(record, "subject")
    if target not in ("answers", "alt"):
        raise ValueError(f"target option must be 'answers' or 'alt', got {target!r}")
    loc = record.get("loc")
    out = {
        "case_id": record.get("case_id", index),
        "requested_rewrite": {
            "prompt": _template(_text(record, "src"), subject, "src"),
            "subject": subject,
            "target_new": {"str": _text(record, target)},
        },
        "paraphrase_prompts": [record["rephrase"]] if record.get("rephrase") else [],
        "locality": [{"prompt": loc, "answer": _text(record, "loc_ans")}] if loc else [],
    }
    if isinstance(record.get("portability"), Mapping) and record["portability"].get("New Question"):
        p = record["portability"]
        out["portability"] = [{"prompt": p["New Question"], "answer": p.get("New Answer", ""), "kind": "one_hop"}]
    return out


def from_knowedit(record: Mapping[str, Any], index: int) -> dict[str, Any]:
    subject = _text(record, "subject")
    rewrite: dict[str, Any] = {
        "prompt": _template(_text(record, "prompt"), subject, "prompt"),
        "subject": subject,
        "target_new": {"str": _text(record, "target_new")},
    }
    if _first(record.get("ground_truth")):
        truth = _text(record, "ground_truth")
        if truth.strip() != rewrite["target_new"]["str"].strip():
            # equal in KnowEdit's ZsRE: an edit inserting the true answer, scored by greedy recall
            rewrite["target_true"] = {"str": truth}
    rephrase = record.get("rephrase_prompt")
    return {
        "case_id": record.get("case_id", index),
        "requested_rewrite": rewrite,
        "paraphrase_prompts": [rephrase] if isinstance(rephrase, str) and rephrase else [],
        "locality": _pairs(record.get("locality")),
        "portability": _pairs(record.get("portability")),
    }


CONVERTERS = {
    "counterfact": from_counterfact,
    "counterfact-easyedit": from_easyedit,
    "zsre": from_zsre,
    "knowedit": from_knowedit,
}
