"""The facts a model knows before editing: retention probes for sequential runs.

    .venv/bin/python benchmarks/known_probes.py --model smollm2-135m \\
        --facts ../shared/data/real/known_1000.json --out runs/seq-smollm2/known_probes.json

Reads ROME's known facts (or CounterFact records: their true objects), scores every fact on the
unedited model exactly as the ``retention`` metric does (teacher-forced; a fact is known when every
token of its object is the argmax), and writes the known ones as the ``[subject, prompt, object]``
list that ``editkit run --retention-probes`` takes, atomically. Retention on these probes starts at
100% by construction, so a run's retention is the share of what the model knew that it still knows.
Prints how many facts are known and the wall time; the model's identity and the input's sha256 go
into a sidecar ``.json.manifest`` next to the output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

from editkit.errors import EditkitError
from editkit.helpers.atomic import write_json_atomic
from editkit.helpers.scoring import continuation_scores
from editkit.job.facts import facts_from_records
from editkit.modelsource.resolve import load_model


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--facts", type=Path, required=True, help="known_1000.json or CounterFact records")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--batch-size", type=int, default=64)
    args = p.parse_args(argv)
    started = time.perf_counter()
    try:
        raw = args.facts.read_bytes()
        facts, _ = facts_from_records(json.loads(raw), source=str(args.facts))
        model, tokenizer = load_model(args.model)
    except (OSError, ValueError, EditkitError) as exc:
        print(f"known_probes: error: {exc}", file=sys.stderr)
        return 2
    scores = continuation_scores(model, tokenizer, [f.prompt for f in facts], [f.object for f in facts],
                                 batch_size=args.batch_size)
    known = [[f.subject, f.prompt, f.object.strip()] for f, (_, hits) in zip(facts, scores) if bool(hits.all())]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, known)
    write_json_atomic(args.out.with_name(args.out.name + ".manifest"), {
        "model": args.model, "facts": str(args.facts), "facts_sha256": hashlib.sha256(raw).hexdigest(),
        "facts_total": len(facts), "known": len(known), "seconds": round(time.perf_counter() - started, 1)})
    print(f"{len(known)} of {len(facts)} facts known by {args.model}; wrote {args.out} "
          f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
