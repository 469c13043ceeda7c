"""Teacher-forced scoring (every evaluation metric's primitive) on a real model: before/after ratio.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_scoring.py --model smollm2-135m --cases 40 --repeats 3

Scores the CounterFact metric's pairs of the first N cases of counterfact_portability_gpt4.json (rewrite,
paraphrase and neighbourhood prompts, each with the new and the true object) two ways, alternately, in one
process: the previous implementation (the given order, batches of 64, logits and log-softmax over every
column) and :func:`editkit.helpers.scoring.continuation_scores` (rows sorted by length, the output head only where a
target token is predicted). Prints the median seconds of each, their ratio, and the largest log-probability
difference and argmax disagreements between them (float32; the differences are summation order only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from editkit.helpers.scoring import continuation_scores
from editkit.helpers.tokens import first_token_from, pad_batch, tokenize
from editkit.modelsource.resolve import load_model


@torch.no_grad()
def previous(model, tokenizer, prompts, targets, batch_size=64):
    rows = []
    for prompt, target in zip(prompts, targets):
        tok = tokenize(tokenizer, prompt + target)
        rows.append((list(tok.ids), first_token_from(tokenizer, prompt + target, len(prompt), tok)))
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = pad_batch(tokenizer, [ids[:-1] for ids, _ in chunk])
        logp = torch.log_softmax(model(**batch.model_inputs()).logits.float(), dim=-1)
        for r, (ids, first) in enumerate(chunk):
            cols = torch.tensor([batch.index(r, t - 1) for t in range(first, len(ids))])
            wanted = torch.tensor(ids[first:])
            row = logp[r, cols]
            out.append((row.gather(1, wanted[:, None])[:, 0], row.argmax(-1) == wanted))
    return out


def pairs(records):
    prompts, targets = [], []
    for record in records:
        rewrite = record["requested_rewrite"]
        subject = rewrite["subject"]
        texts = [rewrite["prompt"].replace("{}", subject), *record["paraphrase_prompts"],
                 *record["neighborhood_prompts"]]
        for text in texts:
            for obj in (rewrite["target_new"]["str"], rewrite["target_true"]["str"]):
                prompts.append(text)
                targets.append(" " + obj)
    return prompts, targets


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--requests", default="../shared/data/real/counterfact_portability_gpt4.json")
    p.add_argument("--cases", type=int, default=40)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    model, tokenizer = load_model(args.model)
    with open(args.requests) as f:
        prompts, targets = pairs(json.load(f)[: args.cases])
    times: dict[str, list[float]] = {"previous": [], "now": []}
    results = {}
    for _ in range(args.repeats):
        for name, fn in (("previous", previous), ("now", continuation_scores)):
            started = time.perf_counter()
            results[name] = fn(model, tokenizer, prompts, targets)
            times[name].append(time.perf_counter() - started)
    diff = max(float((a[0] - b[0]).abs().max()) for a, b in zip(results["previous"], results["now"]))
    flips = sum(not torch.equal(a[1], b[1]) for a, b in zip(results["previous"], results["now"]))
    before, after = statistics.median(times["previous"]), statistics.median(times["now"])
    print(f"{len(prompts)} pairs ({args.cases} cases), {torch.get_num_threads()} thread(s), "
          f"medians of {args.repeats}: previous {before:.2f} s, now {after:.2f} s, ratio {before / after:.2f}x; "
          f"largest log-prob difference {diff:.2e}, argmax flags differing in {flips} pair(s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
