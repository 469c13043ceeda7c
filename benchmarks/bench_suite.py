"""editkit's performance suite: one command, ratios measured in this one process, medians.

1. **Batch edit** of ``--requests`` (100) requests on a GPT-2-architecture model (6 layers,
   d_model 256, d_mlp 1024, random weights with the unembedding scaled ×20 so distributions are
   peaked), edited layers 1, 2 (blocks 3–5 carry the subject to the prediction), 20 v* steps,
   lr 0.5, clamp 0.75, KL 0.0625, weight decay 0.5, AlphaEdit solve (L2 10, threshold 2e-2), in
   five modes: one-at-a-time full forward (the reference algorithm), batched full forward,
   batched from the edit layer up, batched over the columns from the subject on with the prefix's
   keys and values cached (and blocks 0..L skipped), and the default configuration (the same plus
   fused activation kernels, ``editkit.helpers.activations``; every other mode runs the model's own
   modules, as the reference code does). ``--modes`` picks a subset; the reference always runs.
   Each mode's edit is undone before the next; every stage's time is printed; z and Δ are
   compared with the reference mode.
2. **Solve time per layer**: editkit's solve against the straightforward formula (dense P,
   ``torch.linalg.solve`` of ``P(K Kᵀ + Cp) + αI``), same inputs, float64; and the same solve with the
   products of Cp and P's basis kept from the earlier batches and grown by the newest batch only.
3. **Key statistics**: see ``benchmarks/bench_stats.py`` (collection vs bare forward vs one pass
   per layer); run with ``--with-stats`` to include its table here.

Usage: ``python benchmarks/bench_suite.py [--repeats 3] [--requests 100] [--d-model 256 --d-mlp 1024
--layers 6] [--device cpu|cuda] [--with-stats]``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from editkit_memit.solve import PastProducts, solve_update

from editkit import EditRequest, EditRun, RunConfig
from editkit.keystats import CorpusSpec, KeyStatistics
from editkit.layout import resolve_layout
from editkit.plugins import PluginHost
from editkit.testing.tiny import TINY_TEXT, tiny_model, tiny_tokenizer

WORDS = TINY_TEXT.replace(".", " ").split()
OWN = {"fused_activations": "false"}  # the model's own activation modules, as the reference code
MODES = {
    "one-at-a-time, full forward (reference)": {"vstar_batch": "1", "vstar_forward": "full", **OWN},
    "batched, full forward": {"vstar_batch": "0", "vstar_forward": "full", **OWN},
    "batched, from the edit layer up": {"vstar_batch": "0", "vstar_forward": "upper", **OWN},
    "batched, suffix only (cached prefix)": {"vstar_batch": "0", "vstar_forward": "suffix", **OWN},
    "default": {},  # batched, suffix only, fused activations
}
REFERENCE = "one-at-a-time, full forward (reference)"  # the model's own modules, as the reference code
COMMON = {"v_steps": "20", "v_lr": "0.5", "clamp_norm": "0.75", "kl_factor": "0.0625", "v_weight_decay": "0.5",
          "nullspace.l2": "10", "nullspace.threshold": "2e-2"}


def make_requests(n: int, seed: int = 0) -> list[EditRequest]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        a, b, c = (WORDS[int(j)] for j in torch.randint(len(WORDS), (3,), generator=g))
        out.append(EditRequest(case_id=i, subject=f"{a} {b}{i}", prompt="The favourite word of {} is",
                               target_new=c, target_true="the"))
    return out


def edit_benchmark(args: argparse.Namespace) -> None:
    tok = tiny_tokenizer()
    model = tiny_model("gpt2", vocab_size=len(tok), n_layers=args.layers, d_model=args.d_model, d_mlp=args.d_mlp,
                       logit_scale=20).to(args.device)
    layout = resolve_layout(model, PluginHost().catalog.entries["architectures"])
    requests = make_requests(args.requests)
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.txt"
        corpus.write_text("\n".join(s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()) * 40)
        stats = KeyStatistics(model=model, tokenizer=tok, layout=layout, corpus=CorpusSpec.parse(str(corpus)),
                              max_length=64, model_id="bench-suite")
        modes = {m: MODES[m] for m in MODES if m == REFERENCE or not args.modes
                 or any(part.strip() and part.strip() in m for part in args.modes.split(","))}
        times: dict[str, list[float]] = {m: [] for m in modes}
        stages: dict[str, dict[str, float]] = {}
        results: dict[str, tuple[torch.Tensor, dict[str, torch.Tensor]]] = {}
        peak: dict[str, float] = {}
        for _ in range(args.repeats):
            for mode, extra in modes.items():
                run = EditRun(model=model, tokenizer=tok, key_statistics=stats,
                              config=RunConfig(layers=(1, 2), constraints=("nullspace",), device=args.device,
                                               overrides={**COMMON, **extra}.items()))
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                start = time.perf_counter()
                report = run.edit(requests)
                if args.device.startswith("cuda"):
                    torch.cuda.synchronize()
                times[mode].append(time.perf_counter() - start)
                stages[mode] = report.timings
                peak[mode] = max(report.peak_memory.values()) / 2**20
                results[mode] = (run.editor._targets[1].z, run.accumulated_deltas())
                run.undo_last()
    ref = REFERENCE
    med = {m: statistics.median(v) for m, v in times.items()}
    print(f"\n== batch edit: {args.requests} requests, GPT-2 arch {args.layers}x{args.d_model} (d_mlp {args.d_mlp}), "
          f"layers 1,2, device {args.device}, threads {torch.get_num_threads()}, repeats {args.repeats}")
    header = f"{'mode':<42}{'median s':>9}{'speed-up':>10}{'max rel dz':>12}{'max rel dW':>12}{'peak MiB':>10}"
    print(header + "   stages (s)")
    for mode in times:
        z, deltas = results[mode]
        z_ref, d_ref = results[ref]
        dz = float(((z - z_ref).norm(dim=-1) / z_ref.norm(dim=-1)).max())
        dw = max(float((deltas[k] - d_ref[k]).norm() / d_ref[k].norm().clamp_min(1e-30)) for k in d_ref)
        stage_text = ", ".join(f"{k} {v:.2f}" for k, v in stages[mode].items())
        print(f"{mode:<42}{med[mode]:>9.2f}{med[ref] / med[mode]:>9.1f}x{dz:>12.1e}{dw:>12.1e}{peak[mode]:>10.0f}   "
              f"{stage_text}")


def solve_benchmark(args: argparse.Namespace) -> None:
    g = torch.Generator().manual_seed(0)
    d_in, d_out, u = args.d_mlp, args.d_model, args.requests
    k = torch.randn(d_in, u, generator=g, dtype=torch.float64)
    r = torch.randn(d_out, u, generator=g, dtype=torch.float64)
    kp = torch.randn(d_in, 4 * u, generator=g, dtype=torch.float64)
    cp = kp @ kp.T
    x = torch.randn(d_in, 3 * d_in, generator=g, dtype=torch.float64)
    evals = torch.linspace(1e-4, 1.0, d_in, dtype=torch.float64) ** 3
    q, _ = torch.linalg.qr(x[:, :d_in])
    c0 = q @ torch.diag(evals) @ q.T
    w, v = torch.linalg.eigh(c0)
    from editkit_nullspace.projector import null_space

    sub = null_space(w, v, 2e-2, relative=False)
    p = sub.matrix()

    def naive() -> torch.Tensor:
        a = p @ (k @ k.T + cp) + 10.0 * torch.eye(d_in, dtype=torch.float64)
        return torch.linalg.solve(a, p @ k @ r.T).T

    def ours() -> torch.Tensor:
        return solve_update(k, r, [(1.0, cp)], 10.0, sub)

    # Cp from 4 earlier batches; the kept products are grown by the newest batch only (as in a run)
    past_batches = list(kp.split(u, dim=1))
    kept = PastProducts().update(sub.basis, past_batches[:-1])

    def ours_kept() -> torch.Tensor:
        products = copy.deepcopy(kept)
        return solve_update(k, r, [], 10.0, sub, (cp, products.update(sub.basis, past_batches)))

    timing = {}
    for name, fn in (("naive (dense P, LU)", naive), ("editkit (factored P, Cholesky)", ours),
                     ("editkit, Cp·P kept across batches", ours_kept)):
        fn()
        samples = []
        for _ in range(max(3, args.repeats)):
            t = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - t)
        timing[name] = statistics.median(samples)
    diff = max(float((f() - naive()).norm() / naive().norm()) for f in (ours, ours_kept))
    print(f"\n== solve per layer: d_in {d_in}, d_out {d_out}, u {u}, null space {sub.dim}/{d_in} "
          f"(stored as {sub.kind}, {sub.basis.shape[1]} vectors)")
    base = timing["naive (dense P, LU)"]
    for name, t in timing.items():
        print(f"{name:<42}{t * 1000:>9.1f} ms{base / t:>9.1f}x")
    print(f"{'relative difference':<42}{diff:>12.1e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--d-mlp", type=int, default=1024)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--modes", default="", help="comma list of substrings of mode names (default: all)")
    parser.add_argument("--with-stats", action="store_true", help="also run benchmarks/bench_stats.py")
    args = parser.parse_args()
    edit_benchmark(args)
    solve_benchmark(args)
    if args.with_stats:
        subprocess.run([sys.executable, str(Path(__file__).with_name("bench_stats.py"))], check=True)


if __name__ == "__main__":
    main()
