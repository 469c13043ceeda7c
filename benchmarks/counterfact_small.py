"""CounterFact-small: a GPT-2-architecture model trained here, from scratch, on real CounterFact facts.

Real models cannot be downloaded here, so the paper's sequential-editing table is measured on a
model that *learned* real CounterFact facts. The data are the 1,134 CounterFact cases in the full
ROME/MEMIT record format under ``../shared/data/real/`` (``SOURCES.md`` §A; the union of four
files, by ``case_id``) and Wikipedia lead sections (§F). For every case the model is trained on

* the true object in the rewrite prompt and in the *first* paraphrase (the second is held out, so
  generalisation is measured on a paraphrase the model never saw);
* the true object in all ten neighbourhood prompts (what specificity asks it to keep);
* the *new* object in all ten attribute prompts (other subjects that really have it, so the new
  object is a natural answer of the relation, as in a real model);

plus Wikipedia text (the leads of 80% of the articles, chosen by a hash of the title) so that the
model writes English for the fluency metric. The other 20% of the articles are never trained on:
they are the key-statistics corpus (C0), general text in which any one subject is rare.

The first ``n_edit`` cases (by ``case_id``, default 1,000) are the edit requests
(``requests.json``, the records verbatim); the remaining cases are held out: their facts
(rewrite prompt and the trained paraphrase with the true object) are the retention probes
(``retention_probes.json``, ``[subject, prompt, object]``).

One command builds it (``python benchmarks/counterfact_small.py``), deterministically for a given
config, data and thread count, into ``$EDITKIT_CACHE/counterfact-small/<tag>`` (the tag hashes the
config, the input files' sha256 and the format version), atomically (a temporary directory renamed
into place, so an interrupted build never leaves a directory that looks complete); a later call finds
it and returns at once. ``build_report.json`` records what the model knows before any edit.

``--zsre`` builds the ZsRE variant from ``zsre_mend_eval_portability_gpt4.json`` (1,037 cases):
the true answer (``answers[0]``) to the question ``src`` (the ``rephrase`` is the generalisation
probe and is held out) and the ``loc`` questions (Natural Questions, verbatim) with ``loc_ans``. The
reference edits ZsRE towards ``answers[0]`` because real models mostly do not know it; a model that
was taught it would start at 100%, so the ZsRE table edits towards ``alt`` (``--dataset-option
target=alt``), a counterfactual answer, exactly as CounterFact edits towards ``target_new``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import torch
from editkit_world.batches import EpochPlan
from editkit_world.config import BuildConfig, ModelConfig, TrainConfig
from editkit_world.recall import score_probes
from editkit_world.tokenizer import train_tokenizer
from editkit_world.train import build_progress, new_model, torch_threads, train_on_plan

from editkit.helpers.atomic import write_directory_atomic, write_json_atomic
from editkit.helpers.cachedir import cache_root
from editkit.job.manifest import file_sha256

FORMAT_VERSION = 1
REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
COUNTERFACT_FILES = ("counterfact_portability_gpt4.json", "counterfact_distracting_neighbor.json",
                     "counterfact_subject_replace.json", "counterfact_sample.json")
ZSRE_FILE = "zsre_mend_eval_portability_gpt4.json"
WIKI_FILE = "wikipedia_vital_leads_en.jsonl"
REPORT_FILE = "build_report.json"


@attrs.frozen(kw_only=True)
class SmallConfig:
    """What a CounterFact-small (or ZsRE-small) build depends on besides the data files.

    Attributes:
        dataset: ``counterfact`` or ``zsre``.
        n_edit: the first cases (by id order) that are edit requests; the rest are held out.
        wiki_train_share: share of Wikipedia articles (by title hash) trained on; the rest is the
            key-statistics corpus.
        wiki_chunk_tokens: Wikipedia text is cut at sentence ends into chunks of at most this many tokens.
        wiki_per_epoch: Wikipedia chunks per epoch, as a multiple of the number of fact sentences.
        model, train: architecture and training (``editkit_world`` types; ``train.threads`` CPU threads).
    """

    dataset: str = attrs.field(default="counterfact", validator=attrs.validators.in_(("counterfact", "zsre")))
    n_edit: int = attrs.field(default=1000, validator=attrs.validators.ge(1))
    wiki_train_share: float = 0.8
    wiki_chunk_tokens: int = 64
    wiki_per_epoch: float = 0.25
    model: ModelConfig = attrs.field(factory=lambda: ModelConfig(
        n_layer=6, n_embd=192, n_inner=1024, n_head=6, n_positions=128, vocab_size=4096))
    train: TrainConfig = attrs.field(factory=lambda: TrainConfig(
        batch_size=64, lr=2e-3, warmup_steps=100, planned_epochs=18, max_epochs=22, stop_recall=0.95,
        eval_sample=1000, threads=2))
    seed: int = 0

    @classmethod
    def for_dataset(cls, dataset: str) -> SmallConfig:
        """The default build of ``dataset``. ZsRE has 2 facts a case instead of ~19, so an epoch is ~10x
        shorter: it gets a longer schedule in epochs; some Natural Questions answers run to ~300 tokens, so
        its context is 384."""
        if dataset == "zsre":
            return cls(dataset="zsre", wiki_per_epoch=0.5, model=attrs.evolve(cls().model, n_positions=384),
                       train=attrs.evolve(
                cls().train, batch_size=32, warmup_steps=100, planned_epochs=40, max_epochs=60))
        return cls(dataset=dataset)

    def build_config(self) -> BuildConfig:
        return BuildConfig(model=self.model, train=self.train)

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def tag(self, data_digest: str) -> str:
        blob = json.dumps({"config": self.to_dict(), "data": data_digest, "format": FORMAT_VERSION}, sort_keys=True)
        return f"{self.dataset}-v{FORMAT_VERSION}-s{self.seed}-{hashlib.sha256(blob.encode()).hexdigest()[:10]}"


@attrs.frozen(kw_only=True)
class Fact:
    """A sentence the model is trained on: ``prompt`` followed by `` object``."""

    subject: str
    prompt: str
    object: str


# -- data --------------------------------------------------------------------------------------------------------

def data_files(config: SmallConfig, data_dir: Path) -> list[Path]:
    names = COUNTERFACT_FILES if config.dataset == "counterfact" else (ZSRE_FILE,)
    paths = [data_dir / n for n in (*names, WIKI_FILE)]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"CounterFact-small needs the real data files (see ../shared/data/real/SOURCES.md); "
                                f"missing: {', '.join(missing)}")
    return paths


def counterfact_cases(data_dir: Path) -> list[dict[str, Any]]:
    """The CounterFact records of the full-format files, one per ``case_id`` (first file wins), by id."""
    cases: dict[int, dict[str, Any]] = {}
    for name in COUNTERFACT_FILES:
        for record in json.loads((data_dir / name).read_text(encoding="utf-8")):
            cases.setdefault(int(record["case_id"]), record)
    return [cases[k] for k in sorted(cases)]


def zsre_cases(data_dir: Path) -> list[dict[str, Any]]:
    return json.loads((data_dir / ZSRE_FILE).read_text(encoding="utf-8"))


def _counterfact_facts(cases: Sequence[dict[str, Any]]) -> list[Fact]:
    facts = []
    for case in cases:
        rw = case["requested_rewrite"]
        subject, true, new = rw["subject"], rw["target_true"]["str"], rw["target_new"]["str"]
        facts.append(Fact(subject=subject, prompt=rw["prompt"].format(subject), object=true))
        facts.append(Fact(subject=subject, prompt=case["paraphrase_prompts"][0], object=true))
        facts += [Fact(subject="", prompt=p, object=true) for p in case["neighborhood_prompts"]]
        facts += [Fact(subject="", prompt=p, object=new) for p in case["attribute_prompts"]]
    return facts


def _zsre_facts(cases: Sequence[dict[str, Any]]) -> list[Fact]:
    facts = []
    for case in cases:
        facts.append(Fact(subject=case["subject"], prompt=case["src"], object=case["answers"][0]))
        facts.append(Fact(subject="", prompt=case["loc"], object=case["loc_ans"]))  # verbatim, as the metric asks
    return facts


def training_facts(config: SmallConfig, cases: Sequence[dict[str, Any]]) -> tuple[list[Fact], int]:
    """Deduplicated training facts and how many prompts were dropped for asking for two objects."""
    raw = _counterfact_facts(cases) if config.dataset == "counterfact" else _zsre_facts(cases)
    by_prompt: dict[str, Fact] = {}
    conflicts: set[str] = set()
    for fact in raw:
        seen = by_prompt.setdefault(fact.prompt, fact)
        if seen.object != fact.object:
            conflicts.add(fact.prompt)
    return [f for p, f in by_prompt.items() if p not in conflicts], len(conflicts)


def retention_probes(config: SmallConfig, cases: Sequence[dict[str, Any]]) -> list[list[str]]:
    """``[subject, prompt, object]`` of the held-out cases' own trained facts (never edited)."""
    held = cases[config.n_edit:]
    if config.dataset == "counterfact":
        return [[f.subject, f.prompt, f.object] for f in _counterfact_facts(held) if f.subject]
    return [[c["subject"], c["src"], c["answers"][0]] for c in held]


def wiki_split(config: SmallConfig, data_dir: Path) -> tuple[list[str], list[dict[str, str]]]:
    """(training texts, key-statistics records): articles assigned by a hash of their title."""
    train, stats = [], []
    with (data_dir / WIKI_FILE).open(encoding="utf-8") as f:
        for line in f:
            article = json.loads(line)
            bucket = int(hashlib.sha256(f"{config.seed}:{article['title']}".encode()).hexdigest()[:8], 16) / 16**8
            (train if bucket < config.wiki_train_share else stats).append(article)
    return [a["text"] for a in train], [{"title": a["title"], "text": a["text"]} for a in stats]


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def wiki_chunks(texts: Sequence[str], tokenizer: Any, max_tokens: int) -> list[tuple[int, ...]]:
    """Token ids of ``texts`` cut at sentence ends into chunks of at most ``max_tokens`` (EOS excluded);
    a sentence longer than that keeps its first ``max_tokens`` tokens."""
    chunks: list[tuple[int, ...]] = []
    for text in texts:
        sentences = [s for s in _SENTENCE_END.split(text.strip()) if s]
        ids = tokenizer(sentences, add_special_tokens=False)["input_ids"] if sentences else []
        current: list[int] = []
        for sentence in ids:
            sentence = sentence[:max_tokens]  # the tail of a sentence longer than a chunk is dropped
            if current and len(current) + len(sentence) > max_tokens:
                chunks.append(tuple(current))
                current = []
            current += sentence
        if current:
            chunks.append(tuple(current))
    return chunks


# -- build -------------------------------------------------------------------------------------------------------

def _knowledge(model: Any, tokenizer: Any, config: SmallConfig, cases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """What the trained model knows before any edit, on the edit cases (greedy recall and, for
    CounterFact, the share of prompts where the true object beats the new one, as the metrics count)."""
    edit = cases[: config.n_edit]

    def both(prompts: list[str], true: list[str], new: list[str] | None = None) -> dict[str, float]:
        t = score_probes(model, tokenizer, prompts, [" " + o for o in true])
        out = {"recall": round(100 * t.recall, 2), "true_median_p": t.median_probability}
        if new is not None:
            n = score_probes(model, tokenizer, prompts, [" " + o for o in new])
            out["true_beats_new"] = round(100 * statistics.mean(a > b for a, b in zip(t.logprobs, n.logprobs)), 2)
            out["new_median_p"] = n.median_probability
        return out

    if config.dataset == "zsre":
        return {
            "question": both([c["src"] for c in edit], [c["answers"][0] for c in edit]),
            "rephrase (held out)": both([c["rephrase"] for c in edit], [c["answers"][0] for c in edit]),
        }
    rw = [c["requested_rewrite"] for c in edit]
    true, new = [r["target_true"]["str"] for r in rw], [r["target_new"]["str"] for r in rw]
    nb = [(p, t, n) for c, t, n in zip(edit, true, new) for p in c["neighborhood_prompts"]]
    return {
        "rewrite": both([r["prompt"].format(r["subject"]) for r in rw], true, new),
        "paraphrase (trained)": both([c["paraphrase_prompts"][0] for c in edit], true, new),
        "paraphrase (held out)": both([c["paraphrase_prompts"][1] for c in edit], true, new),
        "neighbourhood": both([p for p, _, _ in nb], [t for _, t, _ in nb], [n for _, _, n in nb]),
    }


@torch.inference_mode()
def _perplexity(model: Any, chunks: Sequence[tuple[int, ...]], pad_id: int) -> float:
    total, count = 0.0, 0
    for start in range(0, len(chunks), 64):
        rows = chunks[start : start + 64]
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        labels = ids.masked_fill(ids == pad_id, -100)
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                 labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
        total += float(loss)
        count += int((labels[:, 1:] != -100).sum())
    return float(torch.exp(torch.tensor(total / max(count, 1))))


def build(out: Path, config: SmallConfig, data_dir: Path, *, progress: bool = True) -> dict[str, Any]:
    """Train the model and write everything a benchmark run needs into ``out`` (see the module docstring)."""
    start = time.perf_counter()
    cases = counterfact_cases(data_dir) if config.dataset == "counterfact" else zsre_cases(data_dir)
    if len(cases) <= config.n_edit:
        raise ValueError(f"{len(cases)} cases leave none held out with n_edit {config.n_edit}")
    facts, conflicts = training_facts(config, cases)
    wiki_train, wiki_stats = wiki_split(config, data_dir)
    fact_texts = [f"{f.prompt} {f.object}." for f in facts]
    rng = random.Random(f"editkit-counterfact-small:{config.seed}")
    build_config = config.build_config()
    out.mkdir(parents=True, exist_ok=True)
    with torch_threads(config.train.threads), torch.random.fork_rng(devices=[]), build_progress(progress) as bar:
        tokenizer = train_tokenizer([*fact_texts, *wiki_train], vocab_size=config.model.vocab_size)
        fact_ids = tokenizer(fact_texts, add_special_tokens=False)["input_ids"]
        too_long = sum(len(ids) > config.model.n_positions for ids in fact_ids)
        if too_long:
            raise ValueError(f"{too_long} fact sentences exceed n_positions {config.model.n_positions}")
        chunks = wiki_chunks(wiki_train, tokenizer, config.wiki_chunk_tokens)
        held_chunks = wiki_chunks([r["text"] for r in wiki_stats[:300]], tokenizer, config.wiki_chunk_tokens)
        eos = tokenizer.eos_token_id
        plan = EpochPlan(
            fact_ids=tuple((tuple(ids),) for ids in fact_ids),
            filler_ids=tuple((*c, eos) for c in chunks),
            filler_per_epoch=min(len(chunks), round(config.wiki_per_epoch * len(fact_ids))),
            batch_size=config.train.batch_size, pad_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(config.seed)
        model = new_model(build_config, tokenizer)
        probes = [f for f in facts if f.subject]  # the cases' own facts (rewrite, paraphrase / question)
        sample = rng.sample(probes, min(config.train.eval_sample, len(probes)))
        run = train_on_plan(model, tokenizer, plan, build_config, rng, bar,
                            probe_prompts=[f.prompt for f in sample], probe_targets=[" " + f.object for f in sample])
        knowledge = _knowledge(model, tokenizer, config, cases)
        perplexity = _perplexity(model, held_chunks, tokenizer.pad_token_id)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    write_json_atomic(out / "requests.json", cases[: config.n_edit])
    write_json_atomic(out / "retention_probes.json", retention_probes(config, cases))
    with (out / "stats_corpus.jsonl").open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in wiki_stats)
    report = {
        "config": config.to_dict(),
        "cases": len(cases), "edit_cases": config.n_edit, "held_out_cases": len(cases) - config.n_edit,
        "training_facts": len(facts), "conflicting_prompts_dropped": conflicts,
        "wiki_train_articles": len(wiki_train), "wiki_stats_articles": len(wiki_stats),
        "wiki_chunks": len(chunks), "wiki_chunks_per_epoch": plan.filler_per_epoch,
        "n_params": sum(p.numel() for p in model.parameters()),
        "epochs": run["epochs"], "steps": run["steps"], "reached_target": run["reached_target"],
        "train_seconds": round(run["train_seconds"], 1),
        "history": [attrs.asdict(h) for h in run["history"]],
        "knowledge_before_edits": knowledge,
        "heldout_wiki_perplexity": round(perplexity, 2),
        "build_seconds": round(time.perf_counter() - start, 1),
        "environment": {"torch": torch.__version__, "threads": config.train.threads},
    }
    write_json_atomic(out / REPORT_FILE, report)
    return report


def ensure_built(config: SmallConfig | None = None, *, data_dir: Path = REAL_DATA, root: Path | None = None,
                 rebuild: bool = False, progress: bool = True) -> Path:
    """The cached build for ``config`` (default :class:`SmallConfig` ``()``), built first when missing."""
    config = config or SmallConfig()
    digest = hashlib.sha256("".join(file_sha256(p) for p in data_files(config, data_dir)).encode()).hexdigest()
    root = root or cache_root() / "counterfact-small"
    final = root / config.tag(digest)
    if (final / REPORT_FILE).is_file() and not rebuild:
        return final

    def fill(tmp: Path) -> dict[str, Any]:
        report = build(tmp, config, data_dir, progress=progress)
        (tmp / "data_sha256").write_text(digest + "\n", encoding="utf-8")
        return report

    report = write_directory_atomic(final, fill)
    print(json.dumps({k: report[k] for k in ("training_facts", "epochs", "build_seconds", "knowledge_before_edits",
                                            "heldout_wiki_perplexity")}, indent=1), file=sys.stderr)
    return final


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--zsre", action="store_true", help="build the ZsRE variant")
    parser.add_argument("--data", type=Path, default=REAL_DATA, help=f"real data directory (default {REAL_DATA})")
    parser.add_argument("--rebuild", action="store_true", help="build again even if cached")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")  # one line per epoch
    config = SmallConfig.for_dataset("zsre" if args.zsre else "counterfact")
    try:
        path = ensure_built(config, data_dir=args.data, rebuild=args.rebuild, progress=not args.quiet)
    except FileNotFoundError as error:
        print(f"counterfact_small: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
