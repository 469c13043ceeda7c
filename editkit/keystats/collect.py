"""One-pass collection of Σ k kᵀ for several modules at once, resumable and data-parallel.

The corpus is read in a fixed order and cut into *chunks* of consecutive documents (about
``chunk_tokens`` tokens each). Each document is tokenised alone, truncated to ``max_length``
and, under a token budget, the last one is cut so the total is exactly ``max_tokens``. In a
chunk the documents are sorted by length (longest first), dealt to the ranks round-robin,
and packed into right-padded batches of at most ``batch_tokens`` padded tokens. One forward
per batch captures the input of every requested module (``capture_inputs`` with
``stop_after_last``: the forward stops at the last of them, so later blocks and the LM head
never run), and every non-padding token's key ``k`` [d_in] is added to the module's sum.

The sum is accumulated as a *block upper triangle* (:func:`accumulate_gram`): for ``P`` row
panels, panel ``i`` adds ``K[:, i]ᵀ K[:, i:]``, i.e. (P+1)/2P of the full ``KᵀK`` flops;
:func:`symmetrize` fills the lower blocks at the end. Checkpoints (between chunks, every
``checkpoint_seconds``) store the partial sums, the document position and the token count;
resuming continues with the same chunks in the same order, so the result is bit-identical
to an uninterrupted run. Memory: the model, one ``d_in²`` accumulator per module and one batch.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import attrs
import torch

from editkit.errors import InputError
from editkit.helpers.tokens import pad_batch
from editkit.helpers.tracing import capture_inputs, run_until_stopped
from editkit.keystats.collection_progress import CollectionProgress
from editkit.keystats.distributed import DistContext

PANELS = 8
MAX_CHUNK_DOCUMENTS = 4096


def _panel_starts(d: int, panels: int) -> list[int]:
    step = -(-d // panels)
    return [*range(0, d, step), d]


def accumulate_gram(total: torch.Tensor, keys: torch.Tensor, panels: int = PANELS) -> None:
    """``total += keysᵀ keys`` on the block upper triangle (``keys`` [n, d], ``total`` [d, d])."""
    bounds = _panel_starts(keys.shape[1], panels)
    for start, end in itertools.pairwise(bounds):
        total[start:end, start:].addmm_(keys[:, start:end].T, keys[:, start:])  # [p, n] @ [n, d - start]


def symmetrize(total: torch.Tensor, panels: int = PANELS) -> torch.Tensor:
    """Fill the blocks below the panel diagonal from their transposes (in place)."""
    bounds = _panel_starts(total.shape[0], panels)
    for start, end in itertools.pairwise(bounds):
        total[start:end, :start] = total[:start, start:end].T
    return total


@attrs.frozen(kw_only=True)
class CollectionPlan:
    """What to collect and how; everything but ``batch_tokens``/``chunk_tokens`` changes the result."""

    modules: tuple[str, ...]
    d_in: Mapping[str, int]
    max_length: int
    max_tokens: int | None
    dtype: torch.dtype
    batch_tokens: int
    chunk_tokens: int
    panels: int = PANELS

    def layout(self) -> dict[str, Any]:
        """How partial sums are laid out: a checkpoint resumes only under the same layout."""
        return {"panels": self.panels}


@attrs.frozen(kw_only=True)
class CollectionResult:
    totals: dict[str, torch.Tensor] = attrs.field(eq=False, repr=False)  # module -> Σ k kᵀ [d_in, d_in]
    tokens: int
    documents: int
    resumed_from: int | None  # document position of the checkpoint resumed from, if any


@attrs.frozen(kw_only=True)
class ResumeState:
    totals: dict[str, torch.Tensor] = attrs.field(eq=False, repr=False)
    position: int
    tokens: int


CheckpointWriter = Callable[[dict[str, torch.Tensor], int, int], None]  # (totals, position, tokens)


def _token_lists(tokenizer: Any, texts: Iterable[str], max_length: int, group: int = 64) -> Iterator[list[int]]:
    """Token ids of each document (truncated to ``max_length``), tokenised ``group`` at a time."""
    it = iter(texts)
    while block := list(itertools.islice(it, group)):
        for ids in tokenizer(block, truncation=True, max_length=max_length)["input_ids"]:
            yield list(ids)


def _chunks(
    tokenizer: Any, documents: Iterable[str], plan: CollectionPlan, start_tokens: int
) -> Iterator[tuple[list[list[int]], int]]:
    """``(token lists, documents consumed)`` per chunk, honouring max_length and max_tokens."""
    budget = None if plan.max_tokens is None else plan.max_tokens - start_tokens
    if budget is not None and budget <= 0:
        return
    rows: list[list[int]] = []
    consumed = size = 0
    for ids in _token_lists(tokenizer, documents, plan.max_length):
        if budget is not None:
            ids = ids[:budget]
            budget -= len(ids)
        consumed += 1
        if ids:
            rows.append(ids)
            size += len(ids)
        done = budget is not None and budget <= 0
        if done or size >= plan.chunk_tokens or consumed >= MAX_CHUNK_DOCUMENTS:
            yield rows, consumed
            rows, consumed, size = [], 0, 0
            if done:
                return
    if consumed:
        yield rows, consumed


def _batches(rows: Sequence[Sequence[int]], batch_tokens: int) -> Iterator[list[Sequence[int]]]:
    """Pack rows sorted longest-first into batches of ≤ ``batch_tokens`` padded tokens."""
    batch: list[Sequence[int]] = []
    for row in rows:
        if batch and (len(batch) + 1) * len(batch[0]) > batch_tokens:
            yield batch
            batch = []
        batch.append(row)
    if batch:
        yield batch


class KeyCollector:
    """Runs the forward passes and owns the per-module accumulators."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, plan: CollectionPlan, dist: DistContext) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.plan = plan
        self.dist = dist
        first = next(model.parameters())
        self.device = first.device
        self.totals = {m: torch.zeros(plan.d_in[m], plan.d_in[m], dtype=plan.dtype, device=self.device)
                       for m in plan.modules}

    def add_batch(self, rows: Sequence[Sequence[int]]) -> int:
        """Forward one batch; add every non-padding key of every module. Returns the token count."""
        batch = pad_batch(self.tokenizer, rows, self.device)
        mask = batch.attention_mask.bool()  # [b, T]
        with torch.no_grad(), capture_inputs(self.model, self.plan.modules, stop_after_last=True) as captured:
            run_until_stopped(lambda: self.model(**batch.model_inputs(), use_cache=False))
            missing = [m for m in self.plan.modules if m not in captured]
            if missing:
                raise RuntimeError(f"the forward pass never reached {', '.join(missing)}")
            for module in self.plan.modules:
                keys = captured[module][mask].to(self.plan.dtype)  # [n, d_in]
                accumulate_gram(self.totals[module], keys, self.plan.panels)
        return int(mask.sum())

    def load(self, totals: Mapping[str, torch.Tensor]) -> None:
        for module, total in totals.items():
            self.totals[module].copy_(total.to(self.totals[module].device, self.plan.dtype))

    def zero_(self) -> None:
        for total in self.totals.values():
            total.zero_()

    def reduce_(self) -> None:
        for total in self.totals.values():
            self.dist.all_reduce_(total)


def collect(
    model: torch.nn.Module,
    tokenizer: Any,
    documents: Callable[[int], Iterable[str]],
    plan: CollectionPlan,
    *,
    dist: DistContext,
    resume: ResumeState | None = None,
    checkpoint: CheckpointWriter | None = None,
    checkpoint_seconds: float = 300.0,
    progress: CollectionProgress | None = None,
) -> CollectionResult:
    """Collect Σ k kᵀ over the corpus for every module in ``plan`` (see the module docstring).

    :param documents: ``documents(start)`` yields the corpus texts from index ``start`` on.
    :param resume: partial sums and position of a checkpoint (held by rank 0 only).
    :param checkpoint: called on rank 0 with the summed partial totals, the document position
        and the token count every ``checkpoint_seconds`` (between chunks).
    """
    collector = KeyCollector(model, tokenizer, plan, dist)
    position, tokens = 0, 0
    if resume is not None:
        position, tokens = resume.position, resume.tokens
        if dist.is_main:
            collector.load(resume.totals)
    state = torch.tensor([position, tokens], dtype=torch.long, device=collector.device)
    dist.broadcast_(state)  # every rank starts where rank 0's checkpoint says
    position, tokens = int(state[0]), int(state[1])
    last_checkpoint = time.monotonic()
    was_training = model.training
    model.eval()
    try:
        for rows, consumed in _chunks(tokenizer, documents(position), plan, tokens):
            rows.sort(key=len, reverse=True)
            mine = [rows[i] for i in dist.shard(len(rows))]
            chunk_tokens = sum(len(r) for r in rows)
            done = 0
            for batch in _batches(mine, plan.batch_tokens):
                done += collector.add_batch(batch)
                if progress is not None:  # this rank's share, scaled to all ranks; documents pro rata (approximate)
                    seen = min(done * dist.world_size, chunk_tokens)
                    progress.update(tokens=tokens + seen, documents=position + consumed * seen // max(chunk_tokens, 1))
            position += consumed
            tokens += chunk_tokens
            if progress is not None:
                progress.update(tokens=tokens, documents=position)
            if checkpoint is not None:
                due = time.monotonic() - last_checkpoint >= checkpoint_seconds
                flag = torch.tensor([int(due)], dtype=torch.long, device=collector.device)
                if int(dist.broadcast_(flag)[0]):  # rank 0's clock decides for everyone
                    collector.reduce_()
                    if dist.is_main:
                        checkpoint(collector.totals, position, tokens)
                    else:
                        collector.zero_()
                    last_checkpoint = time.monotonic()
    finally:
        model.train(was_training)
    if tokens == 0:
        raise InputError("the corpus yielded no tokens (every selected document is empty)")
    collector.reduce_()
    totals = {m: symmetrize(t, plan.panels).to("cpu") for m, t in collector.totals.items()}
    return CollectionResult(totals=totals, tokens=tokens, documents=position,
                            resumed_from=resume.position if resume is not None else None)
