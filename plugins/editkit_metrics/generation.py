"""Edits judged by what the model generates, not by teacher-forced probabilities.

Teacher-forced figures (``counterfact``, ``zsre``) flatter: the model is handed the gold earlier tokens, or only
asked to prefer one object over another. Here every prompt is continued greedily and the text is judged.

**Decoding.** Greedy (top-1), from the prompt alone (no chat template), batched; ``N = tokens(expected) + 2``
new tokens, where ``tokens(expected)`` counts the longest expected answer with a leading space; the text is cut
at the first line break after it begins (an instruct model often answers a question on the next line). A prompt
whose continuation would run past the model's context gets the tokens that fit; one with no room left is skipped
and counted (``generation_skipped_prompts``), never a traceback.

**Judging.**

* *Begins with* (CounterFact-style: rewrite, paraphrase, neighbourhood prompts, known-fact probes): both texts
  are normalised — Unicode NFKC, casefolded, whitespace collapsed, leading spaces and quotes dropped — and the
  continuation must begin with the object followed by a word boundary (end, space or punctuation), so "Paris"
  does not match "Parisian". Any of the object's aliases counts (``aliases`` next to ``str`` in the record).
* *Exact match and token F1* (questions: ZsRE rewrite and paraphrase, locality, portability; as QAEdit,
  arXiv 2502.11177): the continuation is cut at the first clause boundary (``.``, ``,``, ``;``, ``?``, ``!``
  followed by a space or the end), then both sides get SQuAD's normalisation (lowercase, punctuation and the
  articles a/an/the removed, whitespace collapsed); EM = equality, F1 = harmonic mean of token precision and
  recall; the best over the answer's aliases.

**Figures** (percent; per record the mean over its prompts, then the mean over records):
``generation_efficacy`` (rewrite prompt → ``target_new``), ``generation_generalisation`` (paraphrases →
``target_new``), ``generation_specificity`` (neighbourhood prompts still → ``target_true``), for records with
ZsRE-style ``locality``: ``generation_zsre_em`` / ``generation_zsre_f1`` (rewrite and paraphrase questions →
``target_new``) and ``generation_locality_em`` (locality questions → their answers), ``generation_retention``
(known-fact probes ``context.extras["fact_probes"]`` whose subject was not edited → their object), and the
counts ``generation_prompts`` and ``generation_skipped_prompts`` (only when some were). Records without
paraphrases, neighbourhood prompts or locality are scored on what they have.

:func:`portability` scores the ``portability`` questions (CounterFact's ``{"New Question", "New Answer"}``;
ZsRE / KnowEdit's ``[{"prompt", "answer"}]``) both ways: ``portability_tf`` (teacher-forced share of answer
tokens that are the argmax, as ``zsre``) and ``portability_generation_em`` / ``portability_generation_f1``.
"""

from __future__ import annotations

import re
import string
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from editkit.api import continuation_scores, fitting, greedy_completions, max_positions, tokenize

EXTRA_TOKENS = 2  # new tokens beyond the expected answer's length
_QUOTES = "\"'“”‘’«»`"
_CLAUSE_END = re.compile(r"[.,;?!](\s|$)")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


# ---------------------------------------------------------------------------- judging


def normalise(text: str) -> str:
    """NFKC, casefolded, whitespace collapsed, leading spaces and quotes dropped."""
    text = " ".join(unicodedata.normalize("NFKC", text).casefold().split())
    return text.lstrip(_QUOTES + " ")


def begins_with(continuation: str, answers: Sequence[str]) -> bool:
    """Whether the normalised continuation begins with a normalised answer followed by a word boundary."""
    said = normalise(continuation)
    for answer in answers:
        expected = normalise(answer)
        if expected and said.startswith(expected):
            rest = said[len(expected):]
            if not rest or not (rest[0].isalnum() or rest[0] == "_"):
                return True
    return False


def squad_normalise(text: str) -> str:
    """SQuAD's answer normalisation: lowercase, punctuation and articles removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def first_clause(continuation: str) -> str:
    """The continuation up to its first clause boundary (``.,;?!`` then a space or the end)."""
    match = _CLAUSE_END.search(continuation)
    return continuation[: match.start()] if match else continuation


def exact_match(continuation: str, answers: Sequence[str]) -> bool:
    said = squad_normalise(first_clause(continuation))
    return any(said == squad_normalise(a) for a in answers if squad_normalise(a))


def token_f1(continuation: str, answers: Sequence[str]) -> float:
    """The best token F1 over the answers (0 for an empty side)."""
    said = squad_normalise(first_clause(continuation)).split()
    best = 0.0
    for answer in answers:
        gold = squad_normalise(answer).split()
        common = sum((Counter(said) & Counter(gold)).values())
        if common:
            precision, recall = common / len(said), common / len(gold)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


# ---------------------------------------------------------------------------- decoding


def continuations(context: Any, prompts: Sequence[str], answers: Sequence[Sequence[str]]) -> list[str | None]:
    """The greedy continuation of each prompt with ``tokens(longest answer) + 2`` new tokens (fewer where the
    model's context ends; None where no token fits)."""
    model, tokenizer = context.model, context.tokenizer
    limit = max_positions(model)
    budgets: list[int] = []
    for prompt, options in zip(prompts, answers):
        wanted = max((len(tokenize(tokenizer, " " + a.strip()).ids) for a in options), default=1) + EXTRA_TOKENS
        room = wanted if limit is None else min(wanted, limit - len(tokenize(tokenizer, prompt).ids))
        budgets.append(room)
    out: list[str | None] = [None] * len(prompts)
    for budget in sorted(set(b for b in budgets if b > 0)):
        chosen = [i for i, b in enumerate(budgets) if b == budget]
        texts = greedy_completions(model, tokenizer, [prompts[i] for i in chosen], device=context.device,
                                   max_new_tokens=budget, skip_leading_breaks=True)
        for i, text in zip(chosen, texts):
            out[i] = text
    return out


# ---------------------------------------------------------------------------- the metrics


def _answers(value: Any) -> list[str]:
    """``"x"``, ``{"str": "x", "aliases": [...]}``, ``["x", "y"]`` or nested lists → the non-empty strings."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, Mapping):
        return _answers(value.get("str")) + _answers(value.get("aliases", []))
    if isinstance(value, list):
        return [a for item in value for a in _answers(item)]
    return []


def _mean_of_means(per_record: Mapping[int, list[float]]) -> float:
    return 100.0 * sum(sum(v) / len(v) for v in per_record.values()) / len(per_record)


def generation_scores(context: Any) -> dict[str, float]:
    """The generation-based figures of the module docstring."""
    items: list[tuple[str, int, str, list[str], str]] = []  # (figure, record, prompt, answers, judge)
    edited = set()
    for i, record in enumerate(context.records):
        rewrite = record.get("requested_rewrite")
        if not isinstance(rewrite, Mapping):
            continue
        edited.add(rewrite.get("subject"))
        new, true = _answers(rewrite.get("target_new")), _answers(rewrite.get("target_true"))
        prompt = str(rewrite.get("prompt", "")).replace("{}", str(rewrite.get("subject", "")))
        paraphrases = [p for p in record.get("paraphrase_prompts") or [] if isinstance(p, str)]
        if "locality" in record:  # a question-answering record (ZsRE, KnowEdit)
            items += [("generation_zsre", i, q, new, "qa") for q in [prompt, *paraphrases]]
            items += [("generation_locality_em", i, loc["prompt"], _answers(loc.get("answer")), "em")
                      for loc in record.get("locality") or [] if _answers(loc.get("answer"))]
            continue
        items.append(("generation_efficacy", i, prompt, new, "begins"))
        items += [("generation_generalisation", i, p, new, "begins") for p in paraphrases]
        if true:
            items += [("generation_specificity", i, p, true, "begins")
                      for p in record.get("neighborhood_prompts") or [] if isinstance(p, str)]
    probes = context.extras.get("fact_probes") or []
    start = len(context.records)
    items += [("generation_retention", start + j, p, [o], "begins")
              for j, (s, p, o) in enumerate(probes) if s not in edited]
    if not items:
        return {}
    texts = continuations(context, [it[2] for it in items], [it[3] for it in items])
    per: dict[str, dict[int, list[float]]] = {}
    skipped = 0
    for (figure, record, _, answers, judge), text in zip(items, texts):
        if text is None:
            skipped += 1
            continue
        if judge == "begins":
            per.setdefault(figure, {}).setdefault(record, []).append(float(begins_with(text, answers)))
        elif judge == "em":
            per.setdefault(figure, {}).setdefault(record, []).append(float(exact_match(text, answers)))
        else:
            per.setdefault(f"{figure}_em", {}).setdefault(record, []).append(float(exact_match(text, answers)))
            per.setdefault(f"{figure}_f1", {}).setdefault(record, []).append(token_f1(text, answers))
    out = {figure: _mean_of_means(by_record) for figure, by_record in per.items()}
    out["generation_prompts"] = float(len(items) - skipped)
    if skipped:
        out["generation_skipped_prompts"] = float(skipped)
    return out


def _portability_items(record: Mapping[str, Any]) -> list[tuple[str, list[str]]]:
    value = record.get("portability")
    if isinstance(value, Mapping) and isinstance(value.get("New Question"), str):
        value = [{"prompt": value["New Question"], "answer": value.get("New Answer")}]
    if not isinstance(value, list):
        return []
    return [(q["prompt"], _answers(q.get("answer")))
            for q in value if isinstance(q, Mapping) and isinstance(q.get("prompt"), str) and _answers(q.get("answer"))]


def portability(context: Any) -> dict[str, float]:
    """Portability questions, teacher-forced and by generation (module docstring)."""
    items = [(i, prompt, answers) for i, record in enumerate(context.records)
             for prompt, answers in _portability_items(record)]
    if not items:
        return {}
    out: dict[str, float] = {"portability_questions": float(len(items))}
    targets = [" " + answers[0].strip() for _, _, answers in items]
    fits = fitting(context.model, context.tokenizer, [(p, (t,)) for (_, p, _), t in zip(items, targets)],
                   "portability")
    kept = [(item, target) for item, target, fit in zip(items, targets, fits) if fit]
    if kept:
        scores = continuation_scores(context.model, context.tokenizer, [it[1] for it, _ in kept],
                                     [t for _, t in kept], batch_size=context.batch_size, device=context.device)
        tf: dict[int, list[float]] = {}
        for ((i, _, _), _), (_, hits) in zip(kept, scores):
            tf.setdefault(i, []).append(float(hits.float().mean()))
        out["portability_tf"] = _mean_of_means(tf)
    texts = continuations(context, [p for _, p, _ in items], [a for _, _, a in items])
    em: dict[int, list[float]] = {}
    f1: dict[int, list[float]] = {}
    skipped = 0
    for (i, _, answers), text in zip(items, texts):
        if text is None:
            skipped += 1
            continue
        em.setdefault(i, []).append(float(exact_match(text, answers)))
        f1.setdefault(i, []).append(token_f1(text, answers))
    if em:
        out["portability_generation_em"] = _mean_of_means(em)
        out["portability_generation_f1"] = _mean_of_means(f1)
    if skipped or not all(fits):
        out["portability_skipped_questions"] = float(max(skipped, fits.count(False)))
    return out
