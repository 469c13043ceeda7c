"""Which stored statistics a request may reuse, and why the others do not match.

A request is an identity (:func:`editkit.keystats.identity.site_identity`) with a token
budget ``max_tokens`` (None: every selected document). A stored file is reusable when every
field that decides the numbers is equal — model weights, config, tokenizer and parameter
dtype; module, layer and d_in; the corpus selection (content or source, samples, seed, text
field); the truncation length; the accumulation dtype; the format — and it holds at least the
tokens the request needs:

* budget N: the file holds N tokens or more (a larger collection over the same corpus
  selection is reused as it is, and the run records its real token count), or the file ran
  out of documents before its own budget (it is the whole selection: collecting again would
  give the same sums);
* budget ``all``: the file is the whole selection (its budget was ``all``, or it ran out of
  documents before reaching it).

Among reusable files, :func:`choose` takes one whose sums equal what collecting now would give
(the request's own key, or the whole selection when that is what the budget reads) before any
larger collection, so a run's C0 does not change when a larger collection is added to the store
later; a larger one serves only when no such file exists (the most tokens first).

The model's *name* and hub revision are labels, not keys: the same weights, config and
tokenizer under another path or name are the same model. Nothing here reads files or
imports torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

from editkit.keystats.identity import canonical_json

__all__ = ["Candidate", "Verdict", "choose", "closest", "judge", "same_sums"]

_HEX = re.compile(r"^[0-9a-f]{32,}$")
_MODEL_FIELDS = (("weights_sha256", "model weights"), ("config_sha256", "model config"),
                 ("tokenizer_sha256", "tokenizer"), ("param_dtype", "model dtype"))
_SITE_FIELDS = ("module", "layer", "d_in", "max_length", "dtype", "format")


@attrs.frozen(kw_only=True)
class Candidate:
    """A stored statistics file as its header describes it (no tensor read)."""

    path: Path = attrs.field(converter=Path)
    identity: dict[str, Any] = attrs.field(eq=False)
    count: int


@attrs.frozen(kw_only=True)
class Verdict:
    """Whether a stored file serves a request; if not, each differing key field, described."""

    candidate: Candidate
    differences: tuple[str, ...] = ()

    @property
    def reusable(self) -> bool:
        return not self.differences


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, str) and _HEX.match(value):
        return value[:12] + "…"
    return str(value)


def _differs(label: str, stored: Any, wanted: Any) -> str:
    return f"{label} (stored {_show(stored)}, this run {_show(wanted)})"


def _tokens(count: int, stored_budget: int | None, wanted_budget: int | None) -> str | None:
    whole_selection = stored_budget is None or count < stored_budget
    if whole_selection or (wanted_budget is not None and count >= wanted_budget):
        return None
    need = "every selected document" if wanted_budget is None else f"{wanted_budget:,}"
    return f"tokens (stored {count:,} of a {stored_budget:,}-token budget, this run needs {need})"


def judge(candidate: Candidate, wanted: Mapping[str, Any]) -> Verdict:
    """Compare one stored file with a request (see the module docstring)."""
    stored = candidate.identity
    out: list[str] = []
    stored_model, wanted_model = stored.get("model") or {}, wanted.get("model") or {}
    for key, label in _MODEL_FIELDS:
        if stored_model.get(key) != wanted_model.get(key):
            out.append(_differs(label, stored_model.get(key), wanted_model.get(key)))
    for key in _SITE_FIELDS:
        if stored.get(key) != wanted.get(key):
            out.append(_differs(key, stored.get(key), wanted.get(key)))
    stored_corpus, wanted_corpus = stored.get("corpus") or {}, wanted.get("corpus") or {}
    if canonical_json(stored_corpus) != canonical_json(wanted_corpus):
        keys = sorted(set(stored_corpus) | set(wanted_corpus))
        for key in keys:
            if stored_corpus.get(key) != wanted_corpus.get(key):
                label = "corpus content" if key == "sha256" else f"corpus {key}"
                out.append(_differs(label, stored_corpus.get(key), wanted_corpus.get(key)))
    tokens = _tokens(candidate.count, stored.get("max_tokens"), wanted.get("max_tokens"))
    if tokens is not None:
        out.append(tokens)
    return Verdict(candidate=candidate, differences=tuple(out))


def same_sums(candidate: Candidate, wanted: Mapping[str, Any]) -> bool:
    """Whether a reusable file holds exactly what collecting for ``wanted`` now would: its key is the
    request's, or it is the whole selection and the request's budget would read all of it."""
    if canonical_json(candidate.identity) == canonical_json(dict(wanted)):
        return True
    stored_budget, wanted_budget = candidate.identity.get("max_tokens"), wanted.get("max_tokens")
    whole_selection = stored_budget is None or candidate.count < stored_budget
    return whole_selection and (wanted_budget is None or candidate.count < wanted_budget)


def choose(candidates: Iterable[Candidate], wanted: Mapping[str, Any]) -> Candidate | None:
    """The reusable file with the same sums as a collection now (:func:`same_sums`), else the one
    with the most tokens; None when no file is reusable."""
    exact = canonical_json(dict(wanted))
    usable = [c for c in candidates if judge(c, wanted).reusable]
    if not usable:
        return None
    return max(usable, key=lambda c: (same_sums(c, wanted), c.count, canonical_json(c.identity) == exact,
                                      str(c.path)))


def closest(candidates: Iterable[Candidate], wanted: Mapping[str, Any]) -> Verdict | None:
    """The stored file that differs from the request in the fewest key fields (None: none stored)."""
    verdicts = [judge(c, wanted) for c in candidates]
    if not verdicts:
        return None
    return min(verdicts, key=lambda v: (len(v.differences), str(v.candidate.path)))
