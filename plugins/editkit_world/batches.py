"""Training batches for the world model: which sentences an epoch holds, and how they are padded.

An epoch states every fact once, in a train template drawn at random for it, plus a random
share of the training filler. Filler sentences end with the end-of-text token (so the model
learns to stop); fact sentences end at their full stop, which saves a token per fact (about
8% of an epoch). Sentences
are grouped by length (within shuffled windows) so batches carry little padding, and batch
order is shuffled. Everything is drawn from one seeded ``random.Random``, so the batches of a
build are reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import torch

from editkit_world.world import World, fact_sentence

__all__ = ["Batch", "EpochPlan"]

_WINDOW = 64  # batches per length-sorting window


@attrs.frozen(kw_only=True)
class Batch:
    """A right-padded batch: ``input_ids``/``attention_mask`` ``[b, T]``, ``labels`` with -100 on padding.

    With right padding and causal attention no real token attends to a later pad, so the
    model can be run without the padding mask (:meth:`model_inputs`): the outputs at real
    positions are the same, and CPU attention is several times faster without a mask.
    """

    input_ids: torch.Tensor = attrs.field(eq=False, repr=lambda t: f"tensor{tuple(t.shape)}")
    attention_mask: torch.Tensor = attrs.field(eq=False, repr=False)
    labels: torch.Tensor = attrs.field(eq=False, repr=False)

    def model_inputs(self) -> dict[str, torch.Tensor]:
        """``input_ids`` and an all-ones mask (causal attention alone; see the class docstring)."""
        return {"input_ids": self.input_ids, "attention_mask": torch.ones_like(self.input_ids)}


@attrs.frozen(kw_only=True)
class EpochPlan:
    """Tokenised training sentences and the recipe for an epoch.

    Attributes:
        fact_ids: per fact, the token ids of its sentence in each train template.
        filler_ids: token ids of each training filler sentence (EOS appended).
        filler_per_epoch: filler sentences per epoch.
        batch_size: sentences per batch.
        pad_id: the padding token id.
    """

    fact_ids: tuple[tuple[tuple[int, ...], ...], ...] = attrs.field(repr=False)
    filler_ids: tuple[tuple[int, ...], ...] = attrs.field(repr=False)
    filler_per_epoch: int
    batch_size: int
    pad_id: int

    @classmethod
    def from_world(cls, world: World, tokenizer: Any, *, batch_size: int, filler_fraction: float) -> EpochPlan:
        eos = tokenizer.eos_token_id
        texts = [
            fact_sentence(t, f.subject, f.object)
            for f in world.facts
            for t in world.relation(f.relation_id).train_templates
        ]
        ids = [tuple(row) for row in tokenizer(texts, add_special_tokens=False)["input_ids"]]
        fact_ids, at = [], 0
        for f in world.facts:
            n = len(world.relation(f.relation_id).train_templates)
            fact_ids.append(tuple(ids[at : at + n]))
            at += n
        filler = tokenizer(list(world.filler), add_special_tokens=False)["input_ids"] if world.filler else []
        return cls(
            fact_ids=tuple(fact_ids),
            filler_ids=tuple((*row, eos) for row in filler),
            filler_per_epoch=min(len(filler), round(filler_fraction * len(fact_ids))),
            batch_size=batch_size,
            pad_id=tokenizer.pad_token_id,
        )

    @property
    def sentences_per_epoch(self) -> int:
        return len(self.fact_ids) + self.filler_per_epoch

    @property
    def batches_per_epoch(self) -> int:
        return -(-self.sentences_per_epoch // self.batch_size)

    def epoch(self, rng: random.Random) -> Iterator[Batch]:
        """The batches of one epoch, drawn with ``rng``."""
        rows = [rng.choice(variants) for variants in self.fact_ids]
        rows += rng.sample(self.filler_ids, self.filler_per_epoch)
        rng.shuffle(rows)
        batches: list[list[tuple[int, ...]]] = []
        window = self.batch_size * _WINDOW
        for start in range(0, len(rows), window):
            chunk = sorted(rows[start : start + window], key=len)
            batches += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(batches)
        for batch in batches:
            yield self.pad(batch)

    def pad(self, rows: Sequence[Sequence[int]]) -> Batch:
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
            mask[i, : len(row)] = 1
        return Batch(input_ids=ids, attention_mask=mask, labels=ids.masked_fill(mask == 0, -100))
