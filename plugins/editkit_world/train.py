"""Training the world model: a small GPT-2 that knows the demo world's facts.

:func:`build_world_model` generates the world, trains a byte-level BPE tokenizer on its
background corpus, initialises ``transformers.GPT2LMHeadModel`` from the seed and trains it
with AdamW and label-smoothed cross-entropy until the sampled recall of training facts
reaches the target (:class:`~editkit_world.config.TrainConfig`). It then measures recall of
every fact in every train template, held-out paraphrase recall and the probability of a
wrong object, and writes the model and tokenizer with ``save_pretrained`` plus
``build_report.json``, so ``AutoModelForCausalLM.from_pretrained(out_dir)`` and
``AutoTokenizer.from_pretrained(out_dir)`` load it.

Choices, measured on this project's two-core CPU machine (one thread per build):

* Width 128 (6 layers, d_mlp 512, 4 heads). On a 250-subject proxy world d_model 256 needed
  14 epochs against 16-18 for 128, but each epoch costs about 3x as much, so it cannot reach
  the recall target within five minutes; d_mlp 1024 did not need fewer epochs.
* Epochs to the recall target on the full world (single runs; other settings varied a little):
  GPT-2's initialisation (std 0.02, tied embeddings) 26; weights with std 0.08: 19; plus untied
  token embeddings with std 1.0 (subjects are distinct from the first step): 18; plus a cosine
  schedule planned over 20 epochs instead of 30: 15 (over 15 or 12 the decay stalls memorisation).
* Calibration (``small-model-calibration.md``, point 1): label smoothing 0.1, weight decay
  and the early stop keep the model from extreme margins, so a new edit target starts at a
  probability a gradient can move (median ~1e-3), not at ~1e-11.
* Right-padded batches are run without a padding mask (causal attention already hides the
  pads from real tokens), which is several times faster on CPU.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import platform
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import attrs
import torch
import transformers
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from editkit_world.batches import EpochPlan
from editkit_world.config import BuildConfig
from editkit_world.recall import score_probes, wrong_object_probabilities
from editkit_world.tokenizer import train_tokenizer
from editkit_world.world import World

__all__ = [
    "REPORT_FILE", "BuildReport", "EpochStats", "build_progress", "build_world_model", "new_model", "new_optimizer",
    "scheduled_lr", "torch_threads", "train_on_plan",
]

REPORT_FILE = "build_report.json"

logger = logging.getLogger(__name__)


@attrs.frozen(kw_only=True)
class EpochStats:
    """One training epoch: mean loss, sampled train-probe recall, seconds since training began."""

    epoch: int
    loss: float
    sampled_recall: float
    elapsed_s: float
    lr: float


@attrs.frozen(kw_only=True)
class BuildReport:
    """What a build produced and measured.

    Attributes:
        config: the :class:`BuildConfig` as a dict.
        world_fingerprint: :meth:`World.fingerprint` of the world trained on.
        n_params: model parameters.
        epochs: epochs trained; steps: optimiser steps.
        reached_target: whether the sampled recall reached ``train.stop_recall``.
        train_recall: greedy full-object recall over every fact × train template.
        heldout_recall: the same over the held-out (paraphrase) templates.
        true_object_median_prob: median probability of the true object (train templates).
        wrong_object_median_prob: median probability of a random wrong object of the same
            relation at a fact prompt (where an edit's new target starts).
        train_seconds: wall time of the training loop; build_seconds: of the whole build.
        history: per-epoch statistics.
        environment: torch / transformers versions, threads, platform.
    """

    config: dict[str, Any]
    world_fingerprint: str
    n_params: int
    epochs: int
    steps: int
    reached_target: bool
    train_recall: float
    heldout_recall: float
    true_object_median_prob: float
    wrong_object_median_prob: float
    train_seconds: float
    build_seconds: float
    history: tuple[EpochStats, ...] = attrs.field(repr=False)
    environment: dict[str, Any] = attrs.field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BuildReport:
        fields = dict(data)
        fields["history"] = tuple(EpochStats(**h) for h in data["history"])
        return cls(**fields)

    def summary(self) -> str:
        return (f"recall {self.train_recall:.3f} (held-out {self.heldout_recall:.3f}), "
                f"wrong-object median p {self.wrong_object_median_prob:.2e}, "
                f"{self.epochs} epochs, {self.build_seconds:.0f} s")


def new_model(config: BuildConfig, tokenizer: Any) -> transformers.GPT2LMHeadModel:
    m = config.model
    gpt2 = transformers.GPT2Config(
        vocab_size=len(tokenizer), n_positions=m.n_positions, n_embd=m.n_embd, n_layer=m.n_layer,
        n_head=m.n_head, n_inner=m.n_inner, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
        activation_function="gelu_pytorch_tanh",  # GPT-2's tanh GELU, as one fused kernel
        initializer_range=m.initializer_range,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=m.tie_word_embeddings,
    )
    model = transformers.GPT2LMHeadModel(gpt2)
    with torch.no_grad():
        cast(torch.Tensor, model.get_input_embeddings().weight).normal_(0.0, m.embedding_std)
    return model


def new_optimizer(model: torch.nn.Module, config: BuildConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on weight matrices (embeddings too if ``decay_embeddings``), not on biases and norms."""
    decay: list[torch.nn.Parameter] = []
    rest: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        embedding = ".wte." in f".{name}" or ".wpe." in f".{name}"
        decayed = param.dim() >= 2 and (config.train.decay_embeddings or not embedding)
        (decay if decayed else rest).append(param)
    groups = [{"params": decay, "weight_decay": config.train.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=config.train.lr, betas=(0.9, 0.95), fused=True)


def scheduled_lr(step: int, total: int, config: BuildConfig) -> float:
    t = config.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = min(1.0, (step - t.warmup_steps) / max(1, total - t.warmup_steps))
    floor = t.lr * t.final_lr_ratio
    return floor + (t.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def build_progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"), console=Console(stderr=True), disable=not enabled,
    )


def build_world_model(out_dir: str | Path, *, seed: int | None = None, progress: bool = True,
                      config: BuildConfig | None = None) -> BuildReport:
    """Generate the world, train the model and tokenizer, measure them and save them to ``out_dir``.

    ``seed`` (default: the config's, 0) seeds the world, the initialisation and the data
    order; ``config`` (default :class:`BuildConfig` ``()``) sets world size, architecture and
    training. Deterministic for a given config (``train.threads`` included) on a given
    machine. ``progress`` shows rich progress bars on stderr.
    """
    start = time.perf_counter()
    config = config or BuildConfig()
    if seed is not None and seed != config.seed:
        config = attrs.evolve(config, world=attrs.evolve(config.world, seed=seed))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the caller's torch RNG state and thread count are restored afterwards
    with torch_threads(config.train.threads), torch.random.fork_rng(devices=[]), build_progress(progress) as bar:
        world = World.generate(config.world)
        family_names = [subject.split()[-1] for subject in world.subjects]  # each subject's last token: its own
        tokenizer = train_tokenizer(world.background_corpus(), vocab_size=config.model.vocab_size,
                                    whole_words=family_names)
        torch.manual_seed(config.seed)
        model = new_model(config, tokenizer)
        rng = random.Random(f"editkit-world:train:{config.seed}")
        run = _train(model, tokenizer, world, config, rng, bar)
        measured = _measure(model, tokenizer, world, config, rng, bar)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    report = BuildReport(
        config=config.to_dict(),
        world_fingerprint=world.fingerprint(),
        n_params=sum(p.numel() for p in model.parameters()),
        **run,
        **measured,
        build_seconds=time.perf_counter() - start,
        environment={
            "torch": torch.__version__, "transformers": transformers.__version__,
            "threads": config.train.threads, "python": platform.python_version(), "machine": platform.machine(),
        },
    )
    (out / REPORT_FILE).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    return report


def _train(model: Any, tokenizer: Any, world: World, config: BuildConfig, rng: random.Random,
           bar: Progress) -> dict[str, Any]:
    """The training loop on the world's facts; returns the report's training fields."""
    plan = EpochPlan.from_world(world, tokenizer, batch_size=config.train.batch_size,
                                filler_fraction=config.train.filler_fraction)
    probes = world.fact_probes()
    sample = rng.sample(probes, min(config.train.eval_sample, len(probes)))
    return train_on_plan(model, tokenizer, plan, config, rng, bar,
                         probe_prompts=[p.prompt for p in sample], probe_targets=[p.target for p in sample])


def train_on_plan(model: Any, tokenizer: Any, plan: EpochPlan, config: BuildConfig, rng: random.Random,
                  bar: Progress, *, probe_prompts: list[str], probe_targets: list[str]) -> dict[str, Any]:
    """AdamW over ``plan``'s epochs until the greedy recall of the probes reaches ``train.stop_recall``
    (checked after each epoch) or ``train.max_epochs``; returns the report's training fields
    (``epochs``, ``steps``, ``reached_target``, ``train_seconds``, ``history``)."""
    t = config.train
    optimizer = new_optimizer(model, config)
    total = t.planned_epochs * plan.batches_per_epoch
    history: list[EpochStats] = []
    step, reached = 0, False
    task = bar.add_task("training", total=t.max_epochs * plan.batches_per_epoch, info="")
    train_start = time.perf_counter()
    model.train()
    for epoch in range(1, t.max_epochs + 1):
        losses = []
        for batch in plan.epoch(rng):
            lr = scheduled_lr(step, total, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            logits = model(**batch.model_inputs()).logits  # [b, T, V]
            loss = torch.nn.functional.cross_entropy(
                logits[:, :-1].reshape(-1, logits.shape[-1]), batch.labels[:, 1:].reshape(-1),
                ignore_index=-100, label_smoothing=t.label_smoothing,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            losses.append(float(loss.detach()))
            step += 1
            bar.update(task, advance=1)
        recall = score_probes(model, tokenizer, probe_prompts, probe_targets).recall
        elapsed = time.perf_counter() - train_start
        history.append(EpochStats(epoch=epoch, loss=sum(losses) / len(losses), sampled_recall=recall,
                                  elapsed_s=elapsed, lr=lr))
        bar.update(task, info=f"epoch {epoch} loss {history[-1].loss:.3f} recall {recall:.3f}")
        logger.info("%s", history[-1])
        if recall >= t.stop_recall:
            reached = True
            break
        if t.time_budget_s is not None and elapsed >= t.time_budget_s:
            break
    bar.update(task, total=step, completed=step)
    if not reached:
        logger.warning("training stopped after %d epochs below the recall target %.3f (sampled recall %.3f)",
                       len(history), t.stop_recall, history[-1].sampled_recall)
    model.eval()
    return {"epochs": len(history), "steps": step, "reached_target": reached,
            "train_seconds": time.perf_counter() - train_start, "history": tuple(history)}


def _measure(model: Any, tokenizer: Any, world: World, config: BuildConfig, rng: random.Random,
             bar: Progress) -> dict[str, Any]:
    """Recall over every train / held-out probe and a wrong object's probability."""
    probes, heldout = world.fact_probes(), world.heldout_probes()
    wrong_probes = rng.sample(probes, min(config.train.wrong_sample, len(probes)))
    task = bar.add_task("measuring", total=len(probes) + len(heldout), info="")

    def advance(n: int) -> None:
        bar.update(task, advance=n)

    train = score_probes(model, tokenizer, [p.prompt for p in probes], [p.target for p in probes],
                         on_batch=advance)
    held = score_probes(model, tokenizer, [p.prompt for p in heldout], [p.target for p in heldout],
                        on_batch=advance)
    wrong = wrong_object_probabilities(model, tokenizer, world, wrong_probes, seed=config.seed)
    return {"train_recall": train.recall, "heldout_recall": held.recall,
            "true_object_median_prob": train.median_probability,
            "wrong_object_median_prob": wrong.median_probability}
