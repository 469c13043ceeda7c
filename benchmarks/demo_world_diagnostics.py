"""Why AlphaEdit's null space does (not) protect the demo world: the figures behind the README's findings.

Prints, for the built demo model and its background corpus (C0 as `editkit run` computes it, 200,000 tokens):

* per edited layer: C0's eigenvalue spectrum (quantiles), how many directions fall below the null-space
  threshold, and the share of subject keys' energy in that "null space" (edited subjects and others alike);
* how many distinct last tokens the subjects have, and the centred cosine between the keys of subjects that
  share their last token and of subjects that do not;
* with ``--runs DIR [DIR ...]`` (``editkit run`` output directories on the demo model): for each written
  update Δ, ``tr(Δ C0 Δᵀ)`` — the mean squared change it makes to the MLP output of a corpus token.

Usage: ``python benchmarks/demo_world_diagnostics.py [--layers 1,2] [--threshold 2e-2] [--subjects 600]
[--runs runs/a runs/b]``. Needs the demo world (built on first use, ~4 minutes). Another model:
``--model NAME_OR_DIR --requests RECORDS.json --corpus SPEC`` (e.g. CounterFact-small's directory, its
``requests.json`` and ``stats_corpus.jsonl:text``: C0 computed in memory; or a registered model such as
``smollm2-135m`` with ``--store``: C0 read from, or written to, the statistics store that ``editkit run``
uses, so give the same ``--max-tokens`` as the runs' ``--stats-max-tokens``). ``--energy 0.01,0.05`` also
reports the null spaces chosen by a share of C0's energy (``--set nullspace.energy=...``). Each layer also
shows the RMS of the unedited MLP output over corpus tokens, ``sqrt(tr(W C0 Wᵀ))``, the scale against which
a written update's RMS change reads. ``--probes FILE`` (with ``--runs``) adds the RMS change each update makes
to the MLP output at the subject of the facts the model knew (``benchmarks/known_probes.py``'s output), in the
probes' own prompts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from editkit_memit.keys import collect_keys
from editkit_nullspace.projector import null_mask
from editkit_world import load_world
from editkit_world.plugin import DEMO
from safetensors.torch import load_file

from editkit.helpers.cachedir import cache_root
from editkit.keystats import KeyStatistics
from editkit.keystats.defaults import corpus_selection, default_stats_dir
from editkit.layout import resolve_layout
from editkit.modelsource.resolve import load_resolved, resolve_model
from editkit.requests import requests_from_records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", default="1,2")
    parser.add_argument("--threshold", type=float, default=2e-2)
    parser.add_argument("--subjects", type=int, default=600)
    parser.add_argument("--runs", nargs="*", type=Path, default=[])
    parser.add_argument("--model", help="a saved model instead of the demo world's (with --requests and --corpus)")
    parser.add_argument("--requests", type=Path, help="CounterFact-style records for --model")
    parser.add_argument("--probes", type=Path, help="retention probes ([subject, prompt, object], from "
                        "benchmarks/known_probes.py): with --runs, each update's RMS change of the MLP output at "
                        "the probes' subject (the facts the model knew)")
    parser.add_argument("--corpus", help="key-statistics corpus for --model, as `editkit run --corpus`")
    parser.add_argument("--max-tokens", type=int, default=200_000, help="C0's corpus tokens (default 200000)")
    parser.add_argument("--store", action="store_true", help="use the statistics store (as `editkit run` does)")
    parser.add_argument("--energy", default="", help="energy shares, e.g. 0.01,0.05 (nullspace.energy)")
    args = parser.parse_args()
    layers = [int(x) for x in args.layers.split(",")]
    if args.model:
        if not (args.requests and args.corpus):
            parser.error("--model needs --requests and --corpus")
        source = resolve_model(args.model)
        model, tok = load_resolved(source)
        model_id, stats_dir = source.location, default_stats_dir() if args.store else None
        records, corpus, name = json.loads(args.requests.read_text()), args.corpus, args.model
    else:
        model, tok, _, manifest = load_world()
        records, corpus, stats_dir, name = DEMO.load(), "demo", cache_root() / "stats", f"demo model {manifest.tag}"
        model_id = str(DEMO.model())
    model.eval()
    layout = resolve_layout(model)
    stats = KeyStatistics(model=model, tokenizer=tok, layout=layout,
                          corpus=corpus_selection(corpus, max_tokens=args.max_tokens),
                          stats_dir=str(stats_dir) if stats_dir is not None else None, max_length=None,
                          max_tokens=args.max_tokens, model_id=model_id, progress=False)
    stats.prepare([layout.site(layer) for layer in layers])  # one pass over the corpus for every layer
    shares = [float(x) for x in args.energy.split(",") if x.strip()]
    requests = requests_from_records(records)[: args.subjects]
    half = len(requests) // 2
    last = [tok.convert_ids_to_tokens(tok(r.subject).input_ids)[-1] for r in requests]
    print(f"{name}: {len(requests)} subjects, {len(set(last))} distinct last tokens")
    probes = []
    if args.probes:  # each probe's own prompt, the key at its subject's last token
        probes = requests_from_records([
            {"case_id": i, "requested_rewrite": {"prompt": prompt.replace(subject, "{}", 1), "subject": subject,
                                                 "target_new": {"str": " ?"}}}
            for i, (subject, prompt, _) in enumerate(json.loads(args.probes.read_text())) if subject in prompt])
    cpu = torch.device("cpu")
    for layer in layers:
        site = layout.site(layer)
        c0 = stats.second_moment(site).double()
        evals, evecs = torch.linalg.eigh(c0)
        q = torch.quantile(evals, torch.tensor([0.0, 0.05, 0.25, 0.5, 1.0], dtype=torch.float64))
        null = evecs[:, null_mask(evals, args.threshold, False)]
        keys = collect_keys(model, tok, site.module, requests, ["{}"], cpu).double()  # [d_in, n]
        energy = ((null.T @ keys).norm(dim=0) ** 2 / keys.norm(dim=0) ** 2)
        centred = torch.nn.functional.normalize(keys - keys.mean(1, keepdim=True), dim=0)
        cos = centred.T @ centred
        same = torch.tensor([[a == b for b in last] for a in last]) & ~torch.eye(len(last), dtype=torch.bool)
        shared = f"{float(cos[same].mean()):.3f}" if same.any() else "n/a (no shared last token)"
        print(f"layer {layer}: C0 eigenvalues min/5%/25%/50%/max " + " / ".join(f"{v:.2e}" for v in q.tolist()))
        print(f"  null space at {args.threshold:g}: {null.shape[1]}/{c0.shape[0]} directions; subject-key energy in "
              f"it: first half {float(energy[:half].mean()):.3f}, second half {float(energy[half:].mean()):.3f}")
        for share in shares:  # the null space `--set nullspace.energy=share` takes (the plugin's own rule)
            mask = null_mask(evals, args.threshold, False, energy=share)
            k, basis = int(mask.sum()), evecs[:, mask]
            kept = ((basis.T @ keys).norm(dim=0) ** 2 / keys.norm(dim=0) ** 2)
            print(f"  null space at energy {share:g}: {k}/{c0.shape[0]} directions (eigenvalues ≤ "
                  f"{float(evals[k - 1]) if k else 0.0:.2e}); subject-key energy in it {float(kept.mean()):.3f}")
        weight = dict(model.named_parameters())[site.module + ".weight"].detach().double()
        weight = weight.T if site.transposed else weight  # [d_out, d_in]
        print(f"  unedited MLP output RMS over corpus tokens sqrt(tr(W C0 Wᵀ)) "
              f"{float(torch.trace(weight @ c0 @ weight.T)) ** 0.5:.2f}")
        print(f"  centred key cosine: same last token {shared}, different {float(cos[~same].mean()):.3f} "
              f"(mean |cos| {float(cos[~same].abs().mean()):.3f})")
        probe_keys = collect_keys(model, tok, site.module, probes, ["{}"], cpu).double() if probes else None
        if probe_keys is not None:
            unedited = float((weight @ probe_keys).norm(dim=0).pow(2).mean()) ** 0.5
            print(f"  {len(probes)} probes: unedited MLP output RMS at their subject {unedited:.2f}")
        for run in args.runs:
            deltas = load_file(str(run / "deltas.safetensors"))
            delta = deltas[site.module].double()
            delta = delta.T if site.transposed else delta  # [d_out, d_in]
            leak = float(torch.trace(delta @ c0 @ delta.T))
            config = json.loads((run / "result.json").read_text())["run"]
            name = "+".join([config["editor"], *config["constraints"]])
            print(f"  {run} ({name}): ‖Δ‖_F {float(delta.norm()):.1f}, tr(Δ C0 Δᵀ) {leak:.2f} "
                  f"(RMS change of a corpus token's MLP output {leak ** 0.5:.2f})")
            if probe_keys is not None:
                moved = float((delta @ probe_keys).norm(dim=0).pow(2).mean()) ** 0.5
                print(f"    RMS change of the MLP output at the probes' subject {moved:.2f}")


if __name__ == "__main__":
    main()
