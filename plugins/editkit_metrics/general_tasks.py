"""The eight general-capability tasks of the AlphaEdit paper's Fig. 4: prompts, candidates, labels, figure.

Each task file (``DIR/<task>.jsonl``, one JSON object a line, as in ``data/real/general``) holds items
that become a zero-shot prompt and the index of the right candidate continuation; the model's
answer is the candidate with the highest mean per-token log-probability after the prompt. The
prompts follow the AlphaEdit reference's ``glue_eval`` (described in SOURCES.md §G), with single
spaces where the reference glues words together; the candidates are the reference's. One
deliberate difference: RTE's label 0 means entailment (GLUE), so its right answer is " True"
(the reference scores label 1 as " True", i.e. inverted).

A malformed line raises :class:`~editkit.errors.InputError` naming the file, the line and the field.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from editkit.api import InputError

LETTERS = ("A", "B", "C", "D")


def _text(record: Mapping[str, Any], field: str) -> str:
    value = record.get(field)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field}: expected a non-empty string, got {value!r}")
    return value.strip()


def _choices(record: Mapping[str, Any], field: str) -> list[str]:
    value = record.get(field)
    if not isinstance(value, list) or len(value) != 4 or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"{field}: expected a list of 4 non-empty strings, got {value!r}")
    return [v.strip() for v in value]


def _label(record: Mapping[str, Any], field: str, values: Sequence[Any]) -> int:
    value = record.get(field)
    if isinstance(value, bool) or value not in values:
        raise ValueError(f"{field}: expected one of {', '.join(map(repr, values))}, got {value!r}")
    return list(values).index(value)


@attrs.frozen(kw_only=True)
class Task:
    """``read(record) -> (prompt, index of the right candidate)`` (``ValueError`` names the field);
    ``figure``: ``f1``, ``mcc`` or ``acc`` (see :mod:`editkit_metrics.classification`)."""

    name: str
    candidates: tuple[str, ...]
    read: Callable[[Mapping[str, Any]], tuple[str, int]]
    figure: str

    @property
    def file(self) -> str:
        return f"{self.name}.jsonl"


def _sst2(r: Mapping[str, Any]) -> tuple[str, int]:
    return f"Review : {_text(r, 'sentence')}\nSentiment :", _label(r, "label", (1, 0))


def _mrpc(r: Mapping[str, Any]) -> tuple[str, int]:
    prompt = (f"Are the sentences paraphrases of each other.\nSentence 1: {_text(r, 'sentence1')}\n"
              f"Sentence 2: {_text(r, 'sentence2')}\nAnswer:")
    return prompt, _label(r, "label", (1, 0))


def _cola(r: Mapping[str, Any]) -> tuple[str, int]:
    return (f"Is this sentence linguistically acceptable?\nSentence: {_text(r, 'sentence')}\nAnswer:",
            _label(r, "label", (1, 0)))


def _rte(r: Mapping[str, Any]) -> tuple[str, int]:
    prompt = f"{_text(r, 'sentence1')}\nquestion: {_text(r, 'sentence2')} True or False?\nanswer:"
    return prompt, _label(r, "label", (0, 1))  # 0: entailment → " True"


def _mmlu(r: Mapping[str, Any]) -> tuple[str, int]:
    choices = _choices(r, "choices")
    options = "".join(f"({letter}) {choice}\n" for letter, choice in zip(LETTERS, choices))
    return f"Question: {_text(r, 'question')}\n{options}Answer:", _label(r, "answer", (0, 1, 2, 3))


def _nli(r: Mapping[str, Any]) -> tuple[str, int]:
    prompt = f"{_text(r, 'sentence1')} entails the {_text(r, 'sentence2')} True or False? Answer:"
    return prompt, _label(r, "label", ("entailment", "not_entailment"))


def _sentiment(r: Mapping[str, Any]) -> tuple[str, int]:
    prompt = ("For each snippet of text, label the sentiment of the text as positive or negative. The answer should "
              f"be exact 'positive' or 'negative'. text: {_text(r, 'sentence')} answer:")
    return prompt, _label(r, "label", ("1", "0"))


def _dialogue(r: Mapping[str, Any]) -> tuple[str, int]:
    options = "".join(f"({letter}){option}\n" for letter, option in zip(LETTERS, _choices(r, "options")))
    prompt = f"Q: Given the following: {_text(r, 'article')}\nWhich choice is correct?\n{options}Answer:"
    return prompt, _label(r, "answers", LETTERS)


TASKS = {
    "sst2": Task(name="sst2", candidates=(" positive", " negative"), read=_sst2, figure="f1"),
    "mrpc": Task(name="mrpc", candidates=(" Yes", " No"), read=_mrpc, figure="f1"),
    "cola": Task(name="cola", candidates=(" Yes", " No"), read=_cola, figure="mcc"),
    "rte": Task(name="rte", candidates=(" True", " False"), read=_rte, figure="f1"),
    "mmlu": Task(name="mmlu", candidates=(" A", " B", " C", " D"), read=_mmlu, figure="acc"),
    "nli": Task(name="nli", candidates=(" True", " False"), read=_nli, figure="f1"),
    "sentiment_analysis": Task(name="sentiment_analysis", candidates=(" positive", " negative"), read=_sentiment,
                               figure="f1"),
    "dialogue": Task(name="dialogue", candidates=(" A", " B", " C", " D"), read=_dialogue, figure="f1"),
}


def read_task(directory: Path, task: Task, *, offset: int, limit: int) -> list[tuple[str, int]]:
    """The task's items ``(prompt, right candidate)``: lines ``offset+1 …`` of its file, at most ``limit`` (0: all).

    Every line up to the last one used is checked; a bad one raises :class:`InputError` naming file and line.
    """
    path = directory / task.file
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"general: {path}: no such file (the {task.name} task; --metric-option general.tasks=... "
                         "chooses tasks)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"general: {path}: cannot read ({exc})") from None
    items: list[tuple[str, int]] = []
    seen = 0
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"general: {path} line {number}: not a JSON object ({exc.msg})") from None
        try:
            if not isinstance(record, dict):
                raise ValueError(f"expected a JSON object, got {type(record).__name__}")
            item = task.read(record)
        except ValueError as exc:
            raise InputError(f"general: {path} line {number}: {exc}") from None
        seen += 1
        if seen > offset:
            items.append(item)
            if limit and len(items) == limit:
                break
    if not items:
        raise InputError(f"general: {path}: no items after the first {offset} (--metric-option general.offset)")
    return items
