"""Retention (beyond the paper): greedy recall of facts the run did not edit.

``context.extras["fact_probes"]``: ``[(subject, prompt, object)]``; probes whose subject was edited
are left out, and so are probes that do not fit in the model's context (counted in
``retention_skipped_probes`` when there are any; see :func:`editkit.helpers.contextwindow.fitting`). A probe is
recalled when every token of the object is the argmax (teacher-forced).
"""

from __future__ import annotations

from typing import Any

from editkit.api import continuation_scores, fitting


def retention(context: Any) -> dict[str, float]:
    probes = context.extras.get("fact_probes")
    if not probes:
        return {}
    edited = {r["requested_rewrite"]["subject"] for r in context.records if "requested_rewrite" in r}
    kept = [(p, o if o.startswith(" ") else " " + o) for s, p, o in probes if s not in edited]
    fits = fitting(context.model, context.tokenizer, [(p, (o,)) for p, o in kept], "retention")
    skipped = {"retention_skipped_probes": float(fits.count(False))} if not all(fits) else {}
    kept = [probe for probe, fit in zip(kept, fits) if fit]
    if not kept:
        return skipped
    scores = continuation_scores(context.model, context.tokenizer, [p for p, _ in kept], [o for _, o in kept],
                                 batch_size=context.batch_size, device=context.device)
    return {"retention": 100.0 * sum(bool(hits.all()) for _, hits in scores) / len(scores),
            "retention_probes": float(len(scores)), **skipped}
