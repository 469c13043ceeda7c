"""Edit requests: the value object, and parsing of CounterFact-style records into it.

An :class:`EditRequest` asks that ``prompt.format(subject)`` be completed by ``target_new``
("The mother tongue of {} is" / "Danielle Darrieux" / " English"). Invalid requests fail at
construction with a message naming the field.

Request text comes from files anyone may write: :func:`printable` is what the command line shows of it
(control characters escaped, so no text of a request can drive the terminal).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from editkit.converters import to_tuple
from editkit.errors import InputError


def _escape(code: int) -> str:
    named = {0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"}
    return named.get(code) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


# C0 controls, DEL, C1 controls (ESC and CSI start terminal escape sequences), the line and paragraph separators,
# and the bidirectional embeddings, overrides and isolates (they reorder what a terminal shows)
_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPE_ALL = {code: _escape(code) for code in _CONTROLS}
_ESCAPE_ALL_BUT_LINES = {code: text for code, text in _ESCAPE_ALL.items() if chr(code) not in "\n\t"}


def printable(value: Any, *, lines: bool = False) -> str:
    """``str(value)`` safe to print on a terminal: control characters shown as escapes (ESC as ``\\x1b``,
    U+202E as ``\\u202e``); with ``lines``, newlines and tabs are kept (a multi-line message)."""
    return str(value).translate(_ESCAPE_ALL_BUT_LINES if lines else _ESCAPE_ALL)


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)`` for a message, cut to about ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."


def _nonblank(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{attribute.name}: expected a non-empty string, got {_shown(value)}")


def _template(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{attribute.name}: expected a string, got {_shown(value)}")
    count = value.count("{}")
    if count != 1:
        raise ValueError(
            f"{attribute.name}: a template needs exactly one '{{}}' subject slot, found {count} in {value!r}"
        )


def _optional_nonblank(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if value is not None:
        _nonblank(instance, attribute, value)


def _is_list(value: Any) -> bool:
    """A list of items (a JSON array, or any sequence that is not a string, bytes or an object)."""
    return isinstance(value, Iterable) and not isinstance(value, (str, bytes, bytearray, Mapping))


def _list_as_tuple(value: Any) -> Any:
    """A list-valued field as a tuple; anything else (a string above all, which ``tuple`` would take apart into
    its characters) is left for :func:`_str_tuple` to refuse."""
    return tuple(value) if _is_list(value) else value


def _str_tuple(instance: Any, attribute: attrs.Attribute, value: Any) -> None:
    if not isinstance(value, tuple):
        raise ValueError(f"{attribute.name}: expected a list of strings, got {_shown(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise ValueError(f"{attribute.name}[{i}]: expected a non-empty string, got {_shown(item)}")


def _leading_space(text: Any) -> Any:
    if not isinstance(text, str) or not text.strip():
        return text  # left for the validator to name, as it was given
    return text if text.startswith(" ") else " " + text


@attrs.frozen(kw_only=True)
class EditRequest:
    """One fact to write.

    ``target_new`` / ``target_true`` are stored with a leading space (the continuation of
    the prompt), as the reference implementations do.
    """

    case_id: str = attrs.field(converter=str, validator=_nonblank)
    subject: str = attrs.field(validator=_nonblank)
    prompt: str = attrs.field(validator=_template)
    target_new: str = attrs.field(validator=_nonblank, converter=_leading_space)
    target_true: str | None = attrs.field(
        default=None, validator=_optional_nonblank, converter=attrs.converters.optional(_leading_space)
    )
    paraphrase_prompts: tuple[str, ...] = attrs.field(default=(), converter=_list_as_tuple, validator=_str_tuple)
    neighborhood_prompts: tuple[str, ...] = attrs.field(default=(), converter=_list_as_tuple, validator=_str_tuple)
    generation_prompts: tuple[str, ...] = attrs.field(default=(), converter=_list_as_tuple, validator=_str_tuple)
    record: Mapping[str, Any] | None = attrs.field(default=None, eq=False, repr=False)  # the source record

    def __attrs_post_init__(self) -> None:
        if self.subject.strip() != self.subject:
            raise ValueError(f"subject: leading or trailing whitespace in {self.subject!r}")
        if self.target_true is not None and self.target_new.strip() == self.target_true.strip():
            raise ValueError(f"target_new: {self.target_new.strip()!r} is also target_true: there is nothing to edit")
        filled = self.filled_prompt
        if self.subject not in filled:  # pragma: no cover - implied by the template check
            raise ValueError(f"subject: {self.subject!r} not in the filled prompt {filled!r}")

    @property
    def filled_prompt(self) -> str:
        return self.prompt.replace("{}", self.subject)

    def to_record(self) -> dict[str, Any]:
        """The source record if there is one, else the CounterFact record form."""
        if self.record is not None:
            return dict(self.record)
        rewrite: dict[str, Any] = {
            "prompt": self.prompt,
            "subject": self.subject,
            "target_new": {"str": self.target_new.strip()},
        }
        if self.target_true is not None:
            rewrite["target_true"] = {"str": self.target_true.strip()}
        return {
            "case_id": self.case_id,
            "requested_rewrite": rewrite,
            "paraphrase_prompts": list(self.paraphrase_prompts),
            "neighborhood_prompts": list(self.neighborhood_prompts),
            "generation_prompts": list(self.generation_prompts),
        }


def _field(record: Mapping[str, Any], path: str) -> Any:
    """The value at the dotted ``path``; ``KeyError`` where a key is missing, ``ValueError`` where a value on the
    way is not an object (``"target_new": "English"`` for ``{"str": "English"}``)."""
    node: Any = record
    parts = path.split(".")
    for depth, part in enumerate(parts):
        if not isinstance(node, Mapping):
            where = ".".join(parts[:depth])
            raise ValueError(f"{where}: expected an object with a {part!r} field, got {_shown(node)}")
        if part not in node:
            raise KeyError(path)
        node = node[part]
    return node


# fields of a record that metrics or datasets read from it (not parts of the request): lists of strings, and
# zsre's locality questions (a list of {"prompt", "answer"} objects, scored by the zsre metric)
RECORD_STRING_LISTS = ("attribute_prompts", "dependancy_generation_prompts")
RECORD_QUESTION_LISTS = ("locality",)
# portability questions: the loaders' list of {"prompt", "answer"} objects, or an upstream object kept as it is
# (EasyEdit's CounterFact: {"New Question", "New Answer", ...}); never a string
RECORD_QUESTIONS = ("portability",)
_QUESTIONS = '{"prompt", "answer"}'


def _check_questions(field: str, value: Any) -> None:
    if not _is_list(value):
        raise ValueError(f"{field}: expected a list of {_QUESTIONS} objects, got {_shown(value)}")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ValueError(f"{field}[{i}]: expected a {_QUESTIONS} object, got {_shown(item)}")
        for key in ("prompt", "answer"):
            text = item.get(key)
            if not isinstance(text, str) or (key == "prompt" and not text.strip()):
                what = "a non-empty string" if key == "prompt" else "a string"
                raise ValueError(f"{field}[{i}].{key}: expected {what}, got {_shown(text)}")


def _check_record_lists(record: Mapping[str, Any]) -> None:
    """Refuse a list-valued field of the record that is not a list of the right items (a string would be read
    character by character)."""
    for field in RECORD_STRING_LISTS:
        if field not in record:
            continue
        value = record[field]
        if not _is_list(value):
            raise ValueError(f"{field}: expected a list of strings, got {_shown(value)}")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"{field}[{i}]: expected a string, got {_shown(item)}")
    for field in RECORD_QUESTION_LISTS:
        if field in record:
            _check_questions(field, record[field])
    for field in RECORD_QUESTIONS:
        if field in record and not isinstance(record[field], Mapping):
            _check_questions(field, record[field])


def request_from_record(record: Any) -> EditRequest:
    """One CounterFact ``requested_rewrite`` record → :class:`EditRequest`.

    ``requested_rewrite.prompt`` may be a ``{}`` template or, as in some dumps, the filled
    prompt; then the first occurrence of the subject becomes the slot.
    Raises ``ValueError`` whose message starts with the offending field.
    """
    if not isinstance(record, Mapping):
        raise ValueError(f"record: expected a JSON object, got {type(record).__name__}")
    values = {}
    required = ("case_id", "requested_rewrite.prompt", "requested_rewrite.subject", "requested_rewrite.target_new.str")
    for path in required:
        try:
            values[path] = _field(record, path)
        except KeyError:
            raise ValueError(f"{path}: required field is missing") from None
    prompt, subject = values["requested_rewrite.prompt"], values["requested_rewrite.subject"]
    if isinstance(prompt, str) and "{}" not in prompt and isinstance(subject, str) and subject and subject in prompt:
        prompt = prompt.replace(subject, "{}", 1)
    try:
        target_true = _field(record, "requested_rewrite.target_true.str")
    except KeyError:
        target_true = None
    try:
        request = EditRequest(
            case_id=values["case_id"],
            subject=subject,
            prompt=prompt,
            target_new=values["requested_rewrite.target_new.str"],
            target_true=target_true,
            paraphrase_prompts=record.get("paraphrase_prompts", ()),
            neighborhood_prompts=record.get("neighborhood_prompts", ()),
            generation_prompts=record.get("generation_prompts", ()),
            record=record,
        )
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        field = msg.split(":", 1)[0]
        mapping = {
            "prompt": "requested_rewrite.prompt",
            "subject": "requested_rewrite.subject",
            "target_new": "requested_rewrite.target_new.str",
            "target_true": "requested_rewrite.target_true.str",
        }
        if field in mapping:
            msg = mapping[field] + msg[len(field) :]
        raise ValueError(msg) from None
    _check_record_lists(record)
    return request


def parse_records(records: Sequence[Any]) -> tuple[list[EditRequest], list[str]]:
    """Parse every record: the valid requests, and one message per bad record (index, case id
    and field). Duplicate case ids are bad records too; so are records a dataset loader marked
    ``_invalid``."""
    out: list[EditRequest] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for index, record in enumerate(records):
        case = printable(record.get("case_id", "?")) if isinstance(record, Mapping) else "?"  # shown in messages
        try:
            if isinstance(record, Mapping) and "_invalid" in record:
                raise ValueError(record["_invalid"])
            request = request_from_record(record)
        except ValueError as exc:
            problems.append(f"record {index} (case_id {case}): {exc}")
            continue
        if request.case_id in seen:
            problems.append(
                f"record {index} (case_id {case}): case_id: duplicate of record {seen[request.case_id]}"
            )
            continue
        seen[request.case_id] = index
        out.append(request)
    return out, problems


def requests_from_records(records: Sequence[Any], *, source: str = "requests") -> list[EditRequest]:
    """Parse every record; on any bad record raise :class:`InputError` naming *all* of them."""
    out, problems = parse_records(records)
    if problems:
        shown = "\n  ".join(problems[:50])
        more = f"\n  ... and {len(problems) - 50} more" if len(problems) > 50 else ""
        raise InputError(f"{source}: {len(problems)} bad record(s):\n  {shown}{more}")
    return out


def load_requests(path: str | Path) -> list[EditRequest]:
    """Read a JSON list of CounterFact-style records from ``path``."""
    return requests_from_records(read_json_records(path), source=str(path))


def read_json_records(path: str | Path) -> list[Any]:
    """The JSON list of records in ``path`` (clear errors for missing, unreadable or non-list files)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: no such requests file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read requests file: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    if not data:
        raise InputError(f"{path}: the requests file holds no records")
    return data


@attrs.frozen(kw_only=True)
class EditBatch:
    """One batch of requests (``u`` = ``len(requests)``), numbered from 0 within the run (the ``batch`` argument
    of the stage hooks)."""

    index: int
    requests: tuple[EditRequest, ...] = attrs.field(converter=to_tuple)

    def __attrs_post_init__(self) -> None:
        if not self.requests:
            raise ValueError("an edit batch needs at least one request")


def batched(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    if size < 1:
        raise ValueError(f"batch size must be >= 1, got {size}")
    for start in range(0, len(items), size):
        yield items[start : start + size]
