"""Batched v* vs one-at-a-time v*: wall time of a whole 100-request batch edit (issue #3).

Model: GPT-2 architecture, 6 layers, d_model 256, d_mlp 1024, random weights (unembedding
scaled ×20 so distributions are peaked), edited layers 1, 2; published v* settings (20 steps,
lr 0.5, clamp 0.75, KL 0.0625, weight decay 0.5). Both modes run in this one process, on the
same model state (each edit is undone before the next), alternating, and the script prints
medians and their ratio. Run: ``python benchmarks/bench_vstar.py [--repeats 3] [--requests 100]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from editkit import EditRequest, EditRun, RunConfig
from editkit.keystats import CorpusSpec, KeyStatistics
from editkit.testing.tiny import TINY_TEXT, tiny_model, tiny_tokenizer

WORDS = TINY_TEXT.replace(".", " ").split()


def make_requests(n: int, seed: int = 0) -> list[EditRequest]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        a, b, c = (WORDS[int(j)] for j in torch.randint(len(WORDS), (3,), generator=g))
        out.append(EditRequest(case_id=i, subject=f"{a} {b}{i}", prompt="The favourite word of {} is",
                               target_new=c, target_true="the"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()

    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=6, d_model=256, d_mlp=1024, logit_scale=20)
    requests = make_requests(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()) * 20)
        from editkit.layout import resolve_layout
        from editkit.plugins import PluginHost

        layout = resolve_layout(model, PluginHost().catalog.entries["architectures"])
        stats = KeyStatistics(model=model, tokenizer=tok, layout=layout, corpus=CorpusSpec.parse(str(corpus)),
                              max_length=64, model_id="bench-gpt2-6x256")
        common = {"v_steps": "20", "v_lr": "0.5", "clamp_norm": "0.75", "kl_factor": "0.0625",
                  "v_weight_decay": "0.5", "mom2_weight": "15000"}
        times: dict[str, list[float]] = {"batched": [], "one-at-a-time": []}
        stage: dict[str, dict[str, float]] = {}
        z: dict[str, torch.Tensor] = {}
        for _ in range(args.repeats):
            for mode, group in (("batched", "0"), ("one-at-a-time", "1")):
                run = EditRun(model=model, tokenizer=tok, key_statistics=stats,
                              config=RunConfig(layers=(1, 2), overrides={**common, "vstar_batch": group}.items()))
                start = time.perf_counter()
                report = run.edit(requests)
                times[mode].append(time.perf_counter() - start)
                stage[mode] = report.timings
                z[mode] = run.editor._targets[1].z
                run.undo_last()
    med = {mode: statistics.median(v) for mode, v in times.items()}
    rel = float(((z["batched"] - z["one-at-a-time"]).norm(dim=-1) / z["one-at-a-time"].norm(dim=-1)).max())
    print(f"threads: {torch.get_num_threads()}  requests: {args.requests}  repeats: {args.repeats}")
    print(f"{'mode':<16}{'median s':>10}   runs (s)                 stage times of the last run (s)")
    for mode in times:
        runs = ", ".join(f"{t:.2f}" for t in times[mode])
        stages = ", ".join(f"{k} {v:.2f}" for k, v in stage[mode].items())
        print(f"{mode:<16}{med[mode]:>10.2f}   {runs:<24} {stages}")
    print(f"speed-up (one-at-a-time / batched, medians): {med['one-at-a-time'] / med['batched']:.2f}x")
    print(f"max relative difference of z between modes: {rel:.2e}")


if __name__ == "__main__":
    main()
