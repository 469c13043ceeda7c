"""Facts a model is asked to recall: ``(subject, prompt, object)``, read from record files.

Two record forms are read (detected per record):

* CounterFact (``editkit run``'s requests): ``requested_rewrite.prompt`` (a ``{}`` template or the
  filled prompt), ``requested_rewrite.subject`` and ``requested_rewrite.target_true.str`` — the fact
  the model knows before any edit;
* ROME's known facts (``known_1000.json``): ``subject``, ``prompt`` (the filled prompt, which contains
  the subject) and ``attribute`` (the object).

A :class:`Fact` stores the filled prompt, where the subject starts in it, and the object with a
leading space (the continuation of the prompt, as :class:`~editkit.requests.EditRequest` does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from editkit.errors import InputError


def _nonblank(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name}: expected a non-empty string, got {value!r}")


def _leading_space(text: str) -> str:
    return text if text.startswith(" ") else " " + text


@attrs.frozen(kw_only=True)
class Fact:
    """``prompt`` (filled) is completed by ``object``; ``subject`` occurs in ``prompt`` at ``subject_start``.

    ``index`` is the record's position in its file (it names the record in messages and seeds any
    per-fact sampling, so a fact's result does not depend on which other facts are traced).
    """

    index: int = attrs.field(validator=attrs.validators.ge(0))
    subject: str = attrs.field(validator=_nonblank)
    prompt: str = attrs.field(validator=_nonblank)
    object: str = attrs.field(validator=_nonblank, converter=_leading_space)
    subject_start: int = attrs.field(validator=attrs.validators.ge(0))

    def __attrs_post_init__(self) -> None:
        if self.prompt[self.subject_start : self.subject_start + len(self.subject)] != self.subject:
            raise ValueError(f"subject: {self.subject!r} is not at character {self.subject_start} of {self.prompt!r}")

    @property
    def subject_end(self) -> int:
        """Character index just after the subject in ``prompt``."""
        return self.subject_start + len(self.subject)

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "subject": self.subject, "prompt": self.prompt, "object": self.object.strip()}


def _text(record: Mapping[str, Any], path: str) -> str:
    node: Any = record
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ValueError(f"{path}: required field is missing")
        node = node[part]
    if not isinstance(node, str) or not node.strip():
        raise ValueError(f"{path}: expected a non-empty string, got {node!r}")
    return node


def fact_from_record(record: Any, index: int) -> Fact:
    """One record (CounterFact or known-facts form) → :class:`Fact`; ``ValueError`` names the field."""
    if not isinstance(record, Mapping):
        raise ValueError(f"record: expected a JSON object, got {type(record).__name__}")
    if "_invalid" in record:  # a dataset loader's marker for a record it could not map
        raise ValueError(str(record["_invalid"]))
    if "requested_rewrite" in record:
        subject = _text(record, "requested_rewrite.subject")
        template = _text(record, "requested_rewrite.prompt")
        try:
            obj = _text(record, "requested_rewrite.target_true.str")
        except ValueError as exc:
            raise ValueError(f"{exc} (the true object: the fact the model knows)") from None
        if "{}" in template:
            if template.count("{}") != 1:
                raise ValueError(f"requested_rewrite.prompt: a template needs exactly one '{{}}', got {template!r}")
            start = template.index("{}")
            prompt = template.replace("{}", subject)
        else:
            start = template.find(subject)
            if start < 0:
                raise ValueError(f"requested_rewrite.prompt: the subject {subject!r} does not occur in {template!r}")
            prompt = template
        field, subject_field = "requested_rewrite.prompt", "requested_rewrite.subject"
    elif {"subject", "prompt", "attribute"} & set(record):
        subject, prompt, obj = _text(record, "subject"), _text(record, "prompt"), _text(record, "attribute")
        start = prompt.find(subject)
        if start < 0:
            raise ValueError(f"prompt: the subject {subject!r} does not occur in {prompt!r}")
        field, subject_field = "prompt", "subject"
    else:
        raise ValueError("record: unknown format: expected CounterFact fields (requested_rewrite with prompt, "
                         "subject, target_true) or known-facts fields (subject, prompt, attribute)")
    if subject.strip() != subject:
        raise ValueError(f"{subject_field}: leading or trailing whitespace in {subject!r}")
    if prompt.rstrip() != prompt:
        raise ValueError(f"{field}: {prompt!r} ends in whitespace (the object, with its leading space, continues it)")
    return Fact(index=index, subject=subject, prompt=prompt, object=obj, subject_start=start)


def facts_from_records(records: Sequence[Any], *, source: str,
                       skip_invalid: bool = False) -> tuple[list[Fact], list[str]]:
    """Every record as a :class:`Fact`: ``(facts, messages of skipped records)``.

    A bad record (its index, case id when it has one, the field and what was wrong) stops the
    reading with an :class:`InputError` naming every bad record, unless ``skip_invalid``.
    """
    facts: list[Fact] = []
    problems: list[str] = []
    for index, record in enumerate(records):
        try:
            facts.append(fact_from_record(record, index))
        except ValueError as exc:
            case = f" (case_id {record['case_id']})" if isinstance(record, Mapping) and "case_id" in record else ""
            problems.append(f"record {index}{case}: {exc}")
    if problems and not skip_invalid:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise InputError(f"{source}: {len(problems)} bad record(s) (--skip-invalid skips them):\n  {shown}{more}")
    if not facts:
        raise InputError(f"{source}: no usable fact among {len(records)} record(s)")
    return facts, problems
