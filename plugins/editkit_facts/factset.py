"""A built-in set of well-known facts: CounterFact records to edit and probes to retain, shipped as JSON.

The file (e.g. ``smollm2_facts.json``) holds::

    {"model": "smollm2-135m",            # the model the set was checked on
     "check": "...",                     # how each fact was checked (in words)
     "edits": [CounterFact record, ...], # requested_rewrite {prompt, subject, target_true, target_new},
                                         # one paraphrase prompt, one neighbourhood prompt
     "retention": [[subject, prompt, object], ...]}   # other facts the model knows, never edited

Every fact was kept only if the model completes it right before editing (``benchmarks/smollm2_facts.py``
builds the file; :func:`editkit_facts.check.failures` re-checks it). The set is also *disjoint*: no edited
subject appears in another record's paraphrase or neighbourhood prompt, nor in a retention probe, so one
edit cannot count against another's specificity or the retention score. :func:`load_factset` checks the
format and the disjointness; nothing here imports torch.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from editkit.api import InputError, request_from_record


def _tuple(values: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(values)


@attrs.frozen(kw_only=True)
class FactSet:
    model: str
    check: str
    edits: tuple[Mapping[str, Any], ...] = attrs.field(converter=_tuple)
    retention: tuple[tuple[str, str, str], ...] = attrs.field(converter=_tuple)

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(json.dumps(r)) for r in self.edits]  # fresh copies

    def probes(self) -> list[tuple[str, str, str]]:
        return list(self.retention)


def load_factset(path: Path) -> FactSet:
    """Read and validate a fact set file; :class:`InputError` naming the file, entry and problem."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"fact set {path} cannot be read: {exc}") from None
    if not isinstance(data, dict):
        raise InputError(f"fact set {path}: expected a JSON object")
    for key, kind in (("model", str), ("check", str), ("edits", list), ("retention", list)):
        if not isinstance(data.get(key), kind):
            raise InputError(f"fact set {path}: field {key!r} must be a {kind.__name__}")
    problems = validate(data["edits"], data["retention"])
    if problems:
        raise InputError(f"fact set {path}: " + "; ".join(problems[:10]))
    return FactSet(model=data["model"], check=data["check"], edits=data["edits"],
                   retention=[tuple(p) for p in data["retention"]])


def validate(edits: Sequence[Any], retention: Sequence[Any]) -> list[str]:
    """Format and disjointness problems of a fact set, in words (empty: none)."""
    problems: list[str] = []
    subjects: dict[str, int] = {}
    for i, record in enumerate(edits):
        try:
            request = request_from_record(record)
        except ValueError as exc:
            problems.append(f"edit {i}: {exc}")
            continue
        if request.target_true is None:
            problems.append(f"edit {i}: requested_rewrite.target_true is missing")
        elif request.target_true == request.target_new:
            problems.append(f"edit {i}: target_new equals target_true")
        if len(request.paraphrase_prompts) != 1 or len(request.neighborhood_prompts) != 1:
            problems.append(f"edit {i}: expected exactly one paraphrase and one neighbourhood prompt")
        if request.subject in subjects:
            problems.append(f"edit {i}: subject {request.subject!r} is also edited by edit {subjects[request.subject]}")
        subjects.setdefault(request.subject, i)
        if str(request.case_id) != str(i):
            problems.append(f"edit {i}: case_id must be {i}")
    for i, probe in enumerate(retention):
        if not (isinstance(probe, list | tuple) and len(probe) == 3 and all(isinstance(x, str) and x for x in probe)):
            problems.append(f"retention {i}: expected [subject, prompt, object] of non-empty strings")
        elif probe[0] in subjects:
            problems.append(f"retention {i}: subject {probe[0]!r} is edited")
    for i, record in enumerate(edits):
        if not isinstance(record, dict):
            continue
        others = [*record.get("paraphrase_prompts", []), *record.get("neighborhood_prompts", [])]
        for subject, j in subjects.items():
            if j != i and any(_mentions(text, subject) for text in others):
                problems.append(f"edit {i}: a paraphrase or neighbourhood prompt mentions {subject!r}, edited by "
                                f"edit {j}")
    for i, probe in enumerate(retention):
        if isinstance(probe, list | tuple) and len(probe) == 3 and isinstance(probe[1], str):
            hit = next((s for s in subjects if _mentions(probe[1], s)), None)
            if hit is not None:
                problems.append(f"retention {i}: its prompt mentions {hit!r}, which is edited")
    return problems


def _mentions(text: str, subject: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(subject)}(?!\w)", text) is not None
